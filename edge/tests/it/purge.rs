//! POST /_edge/purge: needs the bearer token; removes a path or a prefix.

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_needs_the_token_and_removes_objects() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[1000, 1000, 1000]);
    let origin = Origin::start(dir.path()).await;
    let edge = Edge::start(config("eu", &origin.url())).await;
    for n in 1..=3 {
        assert_eq!(
            x_cache(&edge.get(&format!("/vod/demo/v0/{n}.m4s")).await),
            "MISS"
        );
    }
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/1.m4s").await), "HIT");
    let c = client();
    let purge = edge.url("/_edge/purge?path=/vod/demo/v0/1.m4s");

    let r = c.post(&purge).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = c.post(&purge).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        x_cache(&edge.get("/vod/demo/v0/1.m4s").await),
        "HIT",
        "nothing purged"
    );
    assert_eq!(c.get(&purge).send().await.unwrap().status(), 405);

    let r = c.post(&purge).bearer_auth("sesame").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["purged"], 1);
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/1.m4s").await), "MISS");
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/2.m4s").await), "HIT");

    // Prefix, as a JSON body.
    let r = c
        .post(edge.url("/_edge/purge"))
        .bearer_auth("sesame")
        .body(r#"{"prefix": "/vod/demo/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 3);
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/3.m4s").await), "MISS");
    assert_eq!(origin.segment_requests().await, 5);

    // A bad request body is a 400, and the edge keeps serving.
    let r = c
        .post(edge.url("/_edge/purge"))
        .bearer_auth("sesame")
        .body("{nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/3.m4s").await), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_without_a_configured_token_is_always_refused() {
    let mock = Mock::start().await;
    let mut c = config("eu", &mock.url());
    c.purge_token = None;
    let edge = Edge::start(c).await;
    let r = client()
        .post(edge.url("/_edge/purge?prefix=/"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
