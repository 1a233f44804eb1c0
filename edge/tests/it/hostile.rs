//! Hostile input: each gets its status, and the edge keeps serving afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::*;

const SEG: &str = "/vod/demo/v0/1.m4s";

async fn setup() -> (tempfile::TempDir, Origin, Edge) {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[1000]);
    let origin = Origin::start(dir.path()).await;
    let mut c = config("eu", &origin.url());
    c.max_header_bytes = 4096;
    c.max_uri_bytes = 1024;
    c.header_read_timeout_ms = 500;
    let edge = Edge::start(c).await;
    (dir, origin, edge)
}

async fn still_serving(edge: &Edge) {
    let r = edge.get(SEG).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_other_than_get_and_head_get_405() {
    let (_d, _o, edge) = setup().await;
    for m in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"] {
        let req = format!(
            "{m} {SEG} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let answer = raw(edge.addr, req.as_bytes()).await;
        assert_eq!(status_of(&answer), 405, "{m}: {answer}");
        assert!(answer
            .to_ascii_lowercase()
            .contains("allow: get, head, options"));
    }
    let answer = raw(
        edge.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 405, "{answer}");
    // CORS preflight is answered, not proxied.
    let answer = raw(
        edge.addr,
        format!("OPTIONS {SEG} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 204);
    still_serving(&edge).await;
}

/// A listener standing for "some other host": it must never be contacted.
async fn bystander() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while l.accept().await.is_ok() {
            n2.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_an_open_proxy() {
    let (_d, origin, edge) = setup().await;
    let (other, contacted) = bystander().await;
    // Absolute-form URI naming another host: served from the configured upstream.
    let req =
        format!("GET http://{other}{SEG} HTTP/1.1\r\nhost: {other}\r\nconnection: close\r\n\r\n");
    let answer = raw(edge.addr, req.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    // Host header naming another host.
    let req = format!(
        "GET /vod/demo/manifest.mpd HTTP/1.1\r\nhost: {other}\r\nconnection: close\r\n\r\n"
    );
    assert_eq!(status_of(&raw(edge.addr, req.as_bytes()).await), 200);
    // Absolute-form for a path the origin does not have.
    let req =
        format!("GET http://{other}/secret HTTP/1.1\r\nhost: {other}\r\nconnection: close\r\n\r\n");
    assert_eq!(status_of(&raw(edge.addr, req.as_bytes()).await), 404);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "another host was contacted"
    );
    assert_eq!(origin.segment_requests().await, 1);
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_bad_targets_get_400() {
    let (_d, origin, edge) = setup().await;
    for target in [
        "/vod/../../etc/passwd",
        "/vod/%2e%2e/%2e%2e/etc/passwd",
        "/vod/demo/./manifest.mpd",
        "/vod/a%00b",
        "/vod/a%2fb",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let answer = raw(edge.addr, req.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{target}: {answer}");
    }
    assert_eq!(origin.requests("other").await, 0, "nothing forwarded");
    // Not HTTP at all.
    let answer = raw(edge.addr, b"HELLO THERE\r\n\r\n").await;
    assert!(answer.is_empty() || status_of(&answer) == 400, "{answer}");
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_get_414_and_431() {
    let (_d, _o, edge) = setup().await;
    let long = format!("/vod/{}", "a".repeat(2000));
    let req = format!("GET {long} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(status_of(&raw(edge.addr, req.as_bytes()).await), 414);
    let req = format!(
        "GET {SEG} HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "b".repeat(8000)
    );
    assert_eq!(status_of(&raw(edge.addr, req.as_bytes()).await), 431);
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let req = format!("GET {SEG} HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    assert_eq!(status_of(&raw(edge.addr, req.as_bytes()).await), 431);
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed() {
    let (_d, _o, edge) = setup().await;
    // Trickles a head, never finishing it: closed after header_read_timeout (500 ms).
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for _ in 0..40 {
            if s.write_all(b"x-a: b\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slowloris connection still open");

    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("idle connection closed");
    assert!(n.map_or(true, |n| n == 0 || buf.starts_with(b"HTTP/1.1 408")));
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path(), &[1000]);
    let origin = Origin::start(dir.path()).await;
    let mut c = config("eu", &origin.url());
    c.max_connections = Some(3);
    c.max_connections_per_client = Some(3);
    c.header_read_timeout_ms = 5_000;
    let edge = Edge::start(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(edge.addr).await.unwrap());
    }
    // Let the edge accept all three (asking /_edge/stats would be a fourth).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = raw(
        edge.addr,
        format!("GET {SEG} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    let stats: serde_json::Value = {
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        edge.stats().await
    };
    assert!(stats["load"].as_f64().unwrap() > 0.0);
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ranges_and_conditionals_are_harmless() {
    let (_d, _o, edge) = setup().await;
    let c = client();
    for (range, status) in [
        ("bytes=5000-", 416),
        ("bytes=abc", 200),
        ("bytes=10-5", 200),
        ("bytes=0-0", 206),
        ("lines=1-2", 200),
        ("bytes=-0", 416),
        // A first-pos past the end, however large, is an unsatisfiable range (RFC 9110
        // §14.1.1), as the origin answers it (one Range implementation, dashcdn_http).
        ("bytes=99999999999999999999999-", 416),
    ] {
        let r = c
            .get(edge.url(SEG))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{range}");
    }
    let r = c
        .get(edge.url(SEG))
        .header("if-none-match", "garbage")
        .header("if-modified-since", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    still_serving(&edge).await;
}
