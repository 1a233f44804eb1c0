//! The send timeout on HTTP/2 (issue 15): a client that keeps a stream's flow-control
//! window at 0 never blocks the socket (its PINGs and other streams flow), so only the
//! response's own progress can tell it is stalled. The shared accept loop closes such a
//! connection at `send_timeout`, counted as a send timeout, while other viewers are served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashcdn_http::serve::{serve_listeners, ConnStats, Limits, Listener};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIG: usize = 4 << 20;
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// h2c (prior knowledge) server: `/big` is a 4 MiB body, anything else a short one.
async fn start(stats: Arc<ConnStats>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let body = Bytes::from(vec![7u8; BIG]);
    let svc = move |_peer: SocketAddr| {
        let body = body.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let body = body.clone();
            async move {
                let out = if req.uri().path() == "/big" {
                    body
                } else {
                    Bytes::from_static(b"small")
                };
                Ok::<_, Infallible>(Response::new(Full::new(out)))
            }
        })
    };
    let limits = Limits {
        send_timeout: SEND_TIMEOUT,
        drain_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let listener = Listener::plain(tcp).h2c(true);
    tokio::spawn(serve_listeners(vec![listener], limits, stats, svc, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `:method GET`, `:scheme http`, `:path /big` (literal), `:authority site.test`.
fn big_request_headers() -> Vec<u8> {
    let mut h = vec![0x82, 0x86, 0x04, 4];
    h.extend_from_slice(b"/big");
    h.extend_from_slice(&[0x41, 9]);
    h.extend_from_slice(b"site.test");
    h
}

/// What the zero-window client saw before the server ended its connection.
#[derive(Debug, Default)]
struct Seen {
    response_headers: bool,
    data_bytes: usize,
    closed_after: Option<Duration>,
}

/// Opens a stream for `/big` with SETTINGS_INITIAL_WINDOW_SIZE = 0 and never sends a
/// WINDOW_UPDATE; answers the server's SETTINGS and PINGs, and reads until the server
/// closes the connection or resets the stream (or 10 s pass).
async fn zero_window_client(addr: SocketAddr) -> Seen {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
    out.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    out.extend(frame(0x1, 0x5, 1, &big_request_headers()));
    tcp.write_all(&out).await.unwrap();
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut head = [0u8; 9];
    let read_all = async {
        loop {
            if tcp.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                break;
            }
            match kind {
                0x0 => seen.data_bytes += len,
                0x1 => seen.response_headers = true,
                // RST_STREAM or GOAWAY: the stream is given up.
                0x3 | 0x7 => break,
                0x4 if flags & 1 == 0 => {
                    let _ = tcp.write_all(&frame(0x4, 1, 0, &[])).await;
                }
                0x6 if flags & 1 == 0 => {
                    let _ = tcp.write_all(&frame(0x6, 1, 0, &payload)).await;
                }
                _ => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .is_ok()
    {
        seen.closed_after = Some(started.elapsed());
    }
    seen
}

#[tokio::test]
async fn a_stream_held_at_a_zero_window_is_ended_at_the_send_timeout() {
    let stats = Arc::new(ConnStats::default());
    let (addr, _stop) = start(Arc::clone(&stats)).await;
    let stalled = tokio::spawn(zero_window_client(addr));

    // Meanwhile a normal HTTP/2 client gets the same 4 MiB body, repeatedly.
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let begun = Instant::now();
    let mut served = 0;
    while begun.elapsed() < SEND_TIMEOUT * 2 {
        let req = Request::builder()
            .uri("http://site.test/big")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let t = Instant::now();
        let rsp = send.send_request(req).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), BIG);
        assert!(
            t.elapsed() < SEND_TIMEOUT,
            "a normal viewer waited {:?}",
            t.elapsed()
        );
        served += 1;
    }

    let seen = stalled.await.unwrap();
    assert!(
        seen.response_headers,
        "the server answered the stalled stream's head: {seen:?}"
    );
    assert_eq!(seen.data_bytes, 0, "no window, no DATA: {seen:?}");
    let after = seen
        .closed_after
        .expect("the server ends a stream held at a zero window");
    assert!(
        after >= SEND_TIMEOUT - Duration::from_millis(100) && after < SEND_TIMEOUT * 3,
        "ended after {after:?}, send timeout {SEND_TIMEOUT:?}"
    );
    assert_eq!(stats.send_timeout.load(Ordering::Relaxed), 1);
    assert!(served >= 2, "normal viewer served {served} times");
    // The normal client's connection was not touched by the other's timeout.
    assert_eq!(stats.open.load(Ordering::Relaxed), 1);
}
