//! Request coalescing and streaming fill.

use std::time::Duration;

use bytes::Bytes;

use crate::util::*;

const SEG: &str = "/vod/demo/v0/1.m4s";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_cold_requests_make_one_origin_request() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[2_000_000]);
    let origin = Origin::start(dir.path()).await;
    let edge = Edge::start(config("eu", &origin.url())).await;
    let want = content(2_000_000, 0);

    let client = client();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (c, url) = (client.clone(), edge.url(SEG));
            tokio::spawn(async move {
                let r = c.get(url).send().await.unwrap();
                let status = r.status().as_u16();
                let cache = x_cache(&r);
                (status, cache, r.bytes().await.unwrap())
            })
        })
        .collect();
    let mut labels = std::collections::HashMap::new();
    for t in tasks {
        let (status, cache, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(body == want, "body differs ({} bytes)", body.len());
        *labels.entry(cache).or_insert(0) += 1;
    }
    assert_eq!(origin.segment_requests().await, 1, "labels: {labels:?}");
    assert_eq!(labels.get("MISS"), Some(&1), "{labels:?}");
    let others: usize = labels
        .iter()
        .filter(|(k, _)| *k == "COALESCED" || *k == "HIT")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(others, 99, "{labels:?}");
    // And the next one is a plain hit.
    let r = edge.get(SEG).await;
    assert_eq!(x_cache(&r), "HIT");
    assert_eq!(origin.segment_requests().await, 1);
}

/// A 2 MB object from a rate-limited upstream (64 KiB every 25 ms, ~0.8 s in all).
async fn slow_mock() -> (Mock, Bytes) {
    let mock = Mock::start().await;
    let body = Bytes::from(content(2_000_000, 9));
    mock.script(
        SEG,
        Script {
            chunk: Some(64 << 10),
            chunk_delay: Duration::from_millis(25),
            ..Script::ok(body.clone(), "public, max-age=3600")
        },
    );
    (mock, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_stream_from_the_fill_before_it_completes() {
    let (mock, body) = slow_mock().await;
    let edge = Edge::start(config("eu", &mock.url())).await;

    let mut first = edge.get(SEG).await;
    assert_eq!(x_cache(&first), "MISS");
    let chunk = first.chunk().await.unwrap().unwrap();
    assert!(!chunk.is_empty());
    // The fill is still running: the first viewer got bytes before the last one arrived.
    assert_eq!(edge.stats().await["fills_in_flight"], 1);

    let mut second = edge.get(SEG).await;
    assert_eq!(x_cache(&second), "COALESCED");
    let chunk2 = second.chunk().await.unwrap().unwrap();
    assert_eq!(chunk2[..], body[..chunk2.len()]);
    // ... and the waiter got its first bytes while the fill was still in flight.
    assert_eq!(edge.stats().await["fills_in_flight"], 1);

    let mut got = chunk.to_vec();
    while let Some(c) = first.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert!(got[..] == body[..]);
    let mut got2 = chunk2.to_vec();
    while let Some(c) = second.chunk().await.unwrap() {
        got2.extend_from_slice(&c);
    }
    assert!(got2[..] == body[..]);
    assert_eq!(mock.hits(SEG), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_viewer_hanging_up_neither_cancels_the_fill_nor_strands_waiters() {
    let (mock, body) = slow_mock().await;
    let edge = Edge::start(config("eu", &mock.url())).await;

    let mut first = edge.get(SEG).await;
    assert_eq!(x_cache(&first), "MISS");
    first.chunk().await.unwrap().unwrap();
    let second = edge.get(SEG).await;
    assert_eq!(x_cache(&second), "COALESCED");
    drop(first); // the viewer that started the fill goes away

    let got = second.bytes().await.unwrap();
    assert!(got == body, "waiter got {} bytes", got.len());
    // The fill finished and stored the object; nobody fetched it again.
    let r = edge.get(SEG).await;
    assert_eq!(x_cache(&r), "HIT");
    assert!(r.bytes().await.unwrap() == body);
    assert_eq!(mock.hits(SEG), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_on_a_miss_fetches_the_whole_object_once() {
    let (mock, body) = slow_mock().await;
    let edge = Edge::start(config("eu", &mock.url())).await;
    let c = client();
    let r = c
        .get(edge.url(SEG))
        .header("range", "bytes=1000000-1000099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        "bytes 1000000-1000099/2000000"
    );
    assert!(r.bytes().await.unwrap()[..] == body[1_000_000..1_000_100]);
    let r = c
        .get(edge.url(SEG))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == body[body.len() - 10..]);
    assert_eq!(mock.hits(SEG), 1, "no Range was forwarded; one full fetch");
    let last = mock.last_headers.lock().unwrap()[SEG].clone();
    assert!(last.get("range").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_fetches_the_next_segments() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[1000, 1000, 1000, 1000]);
    let origin = Origin::start(dir.path()).await;
    let mut cfg = config("eu", &origin.url());
    cfg.prefetch_segments = 2;
    let edge = Edge::start(cfg).await;
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/1.m4s").await), "MISS");
    // Segments 2 and 3 arrive in the background; wait for them (bounded).
    for _ in 0..100 {
        if edge.stats().await["cache_entries"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/2.m4s").await), "HIT");
    assert_eq!(x_cache(&edge.get("/vod/demo/v0/3.m4s").await), "HIT");
    assert!(edge
        .metrics()
        .await
        .contains("dashcdn_edge_prefetches_total{pop=\"eu\"} "));
}
