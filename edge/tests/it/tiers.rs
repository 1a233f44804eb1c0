//! Parent tiers ("shields") and upstream failover.

use dashcdn_edge::UpstreamConfig;

use crate::util::*;

const SEG: &str = "/vod/demo/v0/1.m4s";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_children_behind_a_shield_cost_the_origin_one_request() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[500_000, 500_000]);
    let origin = Origin::start(dir.path()).await;
    let shield = Edge::start(config("shield", &origin.url())).await;
    let child = |pop: &str| {
        let mut c = config(pop, &origin.url());
        c.upstreams = vec![
            UpstreamConfig::parent(format!("http://{}", shield.addr)),
            UpstreamConfig::origin(origin.url()),
        ];
        c
    };
    let eu = Edge::start(child("eu")).await;
    let us = Edge::start(child("us")).await;

    let a = eu.get(SEG).await;
    assert_eq!(x_cache(&a), "MISS");
    let via: Vec<_> = a
        .headers()
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(via, ["1.1 shield", "1.1 eu"]);
    let body_a = a.bytes().await.unwrap();
    let b = us.get(SEG).await;
    assert_eq!(x_cache(&b), "MISS", "cold in this region");
    let body_b = b.bytes().await.unwrap();
    assert!(body_a == body_b && body_a[..] == content(500_000, 0)[..]);
    assert_eq!(
        origin.segment_requests().await,
        1,
        "the shield filled both children"
    );

    // Both children cold at once for another object: still one origin request.
    let seg2 = "/vod/demo/v0/2.m4s";
    let (x, y) = tokio::join!(eu.get(seg2), us.get(seg2));
    assert_eq!((x.status().as_u16(), y.status().as_u16()), (200, 200));
    assert_eq!(origin.segment_requests().await, 2);
    assert_eq!(shield.stats().await["requests"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_parent_fails_over_to_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[1000]);
    let origin = Origin::start(dir.path()).await;
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap() // dropped: connection refused
    };
    let mut c = config("eu", &origin.url());
    c.upstreams = vec![
        UpstreamConfig::parent(format!("http://{dead}")),
        UpstreamConfig::origin(origin.url()),
    ];
    let edge = Edge::start(c).await;
    let r = edge.get(SEG).await;
    assert_eq!(r.status(), 200);
    assert_eq!(origin.segment_requests().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_loop_is_refused() {
    let mock = Mock::start().await;
    let edge = Edge::start(config("eu", &mock.url())).await;
    let r = client()
        .get(edge.url(SEG))
        .header("via", "1.1 shield, 1.1 eu")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 508);
    assert_eq!(mock.hits(SEG), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_mark_a_dead_parent_down() {
    let mock = Mock::start().await;
    mock.script(SEG, Script::ok("x", "max-age=60"));
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut c = config("eu", &mock.url());
    c.health_interval_ms = 50;
    c.health_fall = 2;
    c.upstreams = vec![
        UpstreamConfig::parent(format!("http://{dead}")),
        UpstreamConfig::origin(mock.url()),
    ];
    let edge = Edge::start(c).await;
    let mut states = serde_json::Value::Null;
    for _ in 0..200 {
        states = edge.stats().await["upstreams"].clone();
        if states[0]["healthy"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(states[0]["healthy"], false, "{states}");
    assert_eq!(states[0]["role"], "parent");
    assert_eq!(states[1]["healthy"], true, "{states}");
    assert_eq!(edge.get(SEG).await.status(), 200);
    assert!(edge.metrics().await.contains(&format!(
        "dashcdn_edge_upstream_healthy{{pop=\"eu\",upstream=\"http://{dead}\"}} 0"
    )));
}
