//! The kit's own promises: servers come up on ephemeral ports, `join` stops them, and a
//! server that fails is re-raised in the test that started it rather than lost.

use std::time::Duration;

use dashcdn_testkit::{eventually, origin, spawn_edge, spawn_origin};

#[tokio::test]
async fn origin_and_edge_come_up_and_join() {
    let dir = tempfile::tempdir().unwrap();
    let o = spawn_origin(dir.path()).await;
    assert_eq!(o.get("/healthz").await.status(), 200);
    let e = spawn_edge().upstream(o.addr).pop("kit").await;
    let r = e.get("/_edge/healthz").await;
    assert_eq!(r.status(), 200);
    // The edge's metrics count what it served; the kit reads a family by prefix.
    eventually(
        "the edge counts requests",
        Duration::from_secs(5),
        || async { e.metric("dashcdn_edge_requests_total").await >= 1.0 },
    )
    .await;
    e.join().await;
    o.join().await;
}

#[tokio::test]
#[should_panic(expected = "origin failed")]
async fn a_failed_server_is_re_raised_by_join() {
    let missing = std::env::temp_dir().join("dashcdn-testkit-no-such-library");
    let o = origin(&missing).await;
    o.join().await;
}
