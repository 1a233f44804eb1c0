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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_purge_answers_no_request_gets_the_old_object() {
    let mock = Mock::start().await;
    let old = content(100_000, 1);
    mock.script(
        "/p.m4s",
        Script {
            chunk: Some(10_000),
            chunk_delay: std::time::Duration::from_millis(50),
            ..Script::ok(old.clone(), "max-age=60")
        },
    );
    let edge = Edge::start(config("eu", &mock.url())).await;
    // A fill of the old object is still streaming when the purge comes.
    let first = edge.get("/p.m4s").await;
    assert_eq!(x_cache(&first), "MISS");
    let reading = tokio::spawn(async move { first.bytes().await.unwrap() });
    let new = content(5_000, 2);
    mock.script("/p.m4s", Script::ok(new.clone(), "max-age=60"));
    let r = client()
        .post(edge.url("/_edge/purge?path=/p.m4s"))
        .bearer_auth("sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Not joined onto the old fill: a fresh fetch.
    let r = edge.get("/p.m4s").await;
    assert_ne!(x_cache(&r), "COALESCED");
    assert_eq!(r.bytes().await.unwrap(), new);
    // The old fill ends for its own viewer, and is not stored.
    assert_eq!(reading.await.unwrap(), old);
    edge.settled().await;
    let r = edge.get("/p.m4s").await;
    assert_eq!(x_cache(&r), "HIT");
    assert_eq!(r.bytes().await.unwrap(), new);
}
