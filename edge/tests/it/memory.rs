//! Memory bounds and what is never stored: the fill budget, short segments, slow readers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_beyond_max_fill_bytes_stream_through_uncached() {
    let mock = Mock::start().await;
    let big = content(2 << 20, 3);
    mock.script("/big.bin", Script::ok(big.clone(), "max-age=60"));
    mock.script("/small.bin", Script::ok(content(1000, 4), "max-age=60"));
    let mut c = config("eu", &mock.url());
    c.max_fill_bytes = Some(dashcdn_edge::ByteSize(1 << 20));
    let edge = Edge::start(c).await;
    for _ in 0..2 {
        let r = edge.get("/big.bin").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            x_cache(&r),
            "PASS",
            "2 MiB does not fit a 1 MiB fill budget"
        );
        assert_eq!(r.bytes().await.unwrap(), big, "the whole body, streamed");
    }
    edge.settled().await;
    assert_eq!(edge.stats().await["cache_entries"], 0);
    // Within the budget, objects are cached as usual (and the budget was given back).
    assert_eq!(x_cache(&edge.get("/small.bin").await), "MISS");
    edge.settled().await;
    assert_eq!(x_cache(&edge.get("/small.bin").await), "HIT");
}

/// `styp` + an `mdat` that declares `declared` payload bytes but carries `carried`.
fn segment(declared: u32, carried: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 16];
    b.extend_from_slice(b"stypiso6\0\0\0\0");
    b.extend_from_slice(&(declared + 8).to_be_bytes());
    b.extend_from_slice(b"mdat");
    b.extend(content(carried, 5));
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_cut_short_is_served_but_never_cached() {
    let mock = Mock::start().await;
    // Content-Length matches the cut body: HTTP alone cannot tell it from a whole one.
    let cut = segment(1000, 500);
    mock.script("/v0/1.m4s", Script::ok(cut.clone(), "max-age=60"));
    mock.script("/v0/2.m4s", Script::ok(segment(500, 500), "max-age=60"));
    let edge = Edge::start(config("eu", &mock.url())).await;
    for _ in 0..2 {
        let r = edge.get("/v0/1.m4s").await;
        assert_eq!(x_cache(&r), "MISS", "never stored, so never a HIT");
        assert_eq!(r.bytes().await.unwrap(), cut);
        edge.settled().await;
    }
    assert_eq!(mock.hits("/v0/1.m4s"), 2);
    // A whole segment is stored.
    assert_eq!(x_cache(&edge.get("/v0/2.m4s").await), "MISS");
    edge.settled().await;
    assert_eq!(x_cache(&edge.get("/v0/2.m4s").await), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_is_dropped_at_send_timeout() {
    let mock = Mock::start().await;
    let len = 32 << 20;
    mock.script("/huge.bin", Script::ok(content(len, 6), "max-age=60"));
    let mut c = config("eu", &mock.url());
    c.send_timeout_ms = 300;
    let edge = Edge::start(c).await;
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Read nothing: the socket buffers fill and the edge can send no more.
    let mut dropped = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if edge
            .metrics()
            .await
            .lines()
            .any(|l| l.contains("connection_timeouts_total") && l.contains("send_timeout"))
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "no send_timeout in the metrics");
    // The connection was closed before the whole body went out.
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the edge closed the connection")
        .ok();
    assert!(got.len() < len, "got {} bytes of {len}", got.len());
    // And it keeps serving.
    assert_eq!(edge.get("/_edge/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_in_one_process_count_apart() {
    let mock = Mock::start().await;
    mock.script("/a.bin", Script::ok(content(10_000, 7), "max-age=60"));
    let a = Edge::start(config("a", &mock.url())).await;
    let b = Edge::start(config("b", &mock.url())).await;
    assert_eq!(a.get("/a.bin").await.bytes().await.unwrap().len(), 10_000);
    a.settled().await;
    let (sa, sb) = (a.stats().await, b.stats().await);
    assert_eq!(sa["live_body_bytes"], 10_000, "{sa}");
    assert_eq!(sb["live_body_bytes"], 0, "{sb}");
    assert_eq!(sb["requests"], 0, "{sb}");
    assert!(!b.metrics().await.contains("cache=\"miss\"} 1"));
}
