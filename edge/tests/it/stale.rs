//! Stale content when the origin is down, failing, hanging or slow (RFC 5861).

use std::time::Duration;

use crate::util::*;

const MPD: &str = "/vod/demo/manifest.mpd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_killed_stale_copy_is_served() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[1000]);
    // MPD max-age=0: stored, but stale at once (no sleep needed for it to expire).
    let origin = Origin::start_with(dir.path(), 0).await;
    let edge = Edge::start(config("eu", &origin.url())).await;
    let r = edge.get(MPD).await;
    assert_eq!(x_cache(&r), "MISS");
    assert_eq!(r.text().await.unwrap(), "<MPD/>");

    edge.settled().await;
    origin.kill().await;

    let r = edge.get(MPD).await;
    assert_eq!(r.status(), 200);
    assert_eq!(x_cache(&r), "STALE");
    assert!(r.headers()["age"].to_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(r.text().await.unwrap(), "<MPD/>");
    // Never cached: nothing to fall back on.
    let r = edge.get("/vod/demo/v0/1.m4s").await;
    assert_eq!(r.status(), 502);
    // Still serving.
    assert_eq!(edge.get("/_edge/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_origin_times_out_with_504_never_hangs() {
    let hole = black_hole().await;
    let mut c = config("eu", &format!("http://{hole}"));
    c.first_byte_timeout_ms = 300;
    let edge = Edge::start(c).await;
    let r = tokio::time::timeout(Duration::from_secs(10), edge.get("/vod/demo/v0/1.m4s"))
        .await
        .expect("the edge must answer, not hang");
    assert_eq!(r.status(), 504);
    assert_eq!(edge.get("/_edge/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_or_failing_origin_with_a_stale_copy_serves_it() {
    let mock = Mock::start().await;
    mock.script(MPD, Script::ok("v1", "max-age=60").aged(100));
    let mut c = config("eu", &mock.url());
    c.first_byte_timeout_ms = 300;
    let edge = Edge::start(c).await;
    assert_eq!(x_cache(&edge.get(MPD).await), "MISS");
    edge.settled().await;

    mock.set_mode(HANG);
    let r = tokio::time::timeout(Duration::from_secs(10), edge.get(MPD))
        .await
        .expect("never hangs");
    assert_eq!(x_cache(&r), "STALE");
    assert_eq!(r.text().await.unwrap(), "v1");

    mock.set_mode(FAIL);
    let r = edge.get(MPD).await;
    assert_eq!((r.status().as_u16(), x_cache(&r)), (200, "STALE".into()));

    // stale-if-error=0 from the origin: the copy may not stand in.
    mock.set_mode(SERVE);
    mock.script(
        "/strict",
        Script::ok("s", "max-age=60, stale-if-error=0").aged(100),
    );
    assert_eq!(edge.get("/strict").await.status(), 200);
    edge.settled().await;
    mock.set_mode(FAIL);
    // No stand-in: the upstream's own error reaches the viewer.
    assert_eq!(edge.get("/strict").await.status(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_background() {
    let mock = Mock::start().await;
    mock.script(
        MPD,
        Script {
            etag: Some("\"v1\"".into()),
            ..Script::ok("v1", "max-age=60, stale-while-revalidate=30").aged(70)
        },
    );
    let edge = Edge::start(config("eu", &mock.url())).await;
    assert_eq!(x_cache(&edge.get(MPD).await), "MISS");
    edge.settled().await;
    let r = edge.get(MPD).await;
    assert_eq!(x_cache(&r), "STALE");
    // The background revalidation gets a 304 and refreshes the entry.
    for _ in 0..100 {
        if mock.hits(MPD) == 2 && x_cache(&edge.get(MPD).await) == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(x_cache(&edge.get(MPD).await), "HIT");
    assert_eq!(mock.hits(MPD), 2);
    let sent = mock.last_headers.lock().unwrap()[MPD].clone();
    assert_eq!(sent["if-none-match"], "\"v1\"");
}
