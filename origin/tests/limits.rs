//! The origin's connection-level protection over real sockets: slowloris heads closed at
//! the header timeout, idle keep-alives at the idle timeout, slow readers at the send
//! timeout while other viewers are served, 503 beyond the connection and per-client caps,
//! and, run as a child process under `ulimit -n 256`, a normal request still served
//! with 300 idle connections open. Also the access log those connections leave: a line
//! per request with the client's address, `cut` when a client leaves mid-body.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dashcdn_origin::{run, ServeConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

const SEGMENT: &str = "/vod/demo/v0/1.m4s";
const BIG: &str = "/vod/demo/v0/2.m4s";
const BIG_LEN: usize = 24 * 1024 * 1024;

/// A library with a 2 KB segment and a 24 MiB one (streamed, never whole in memory).
fn library(dir: &Path) {
    let rep = dir.join("demo/v0");
    std::fs::create_dir_all(&rep).unwrap();
    std::fs::write(dir.join("demo/manifest.mpd"), "<MPD/>").unwrap();
    std::fs::write(rep.join("1.m4s"), vec![7u8; 2000]).unwrap();
    std::fs::write(rep.join("2.m4s"), vec![9u8; BIG_LEN]).unwrap();
}

struct Origin {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn spawn(tune: impl FnOnce(&mut ServeConfig)) -> Origin {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path());
    let mut config = ServeConfig::new(dir.path());
    tune(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(run(listener, config, async {
        let _ = rx.await;
    }));
    Origin {
        addr,
        _stop: tx,
        _dir: dir,
    }
}

/// A connection from `from` (any 127.0.0.0/8 address is loopback).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset); returns what came and
/// how long it took.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {within:?}"),
        }
    }
}

/// One GET over a fresh connection from `from`: the status line and the elapsed time.
async fn get_from(from: &str, to: SocketAddr, path: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = connect_from(from, to).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (reply, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&reply);
    let status = text.lines().next().unwrap_or("").to_owned();
    (status, started.elapsed())
}

async fn metric(origin: SocketAddr, line: &str) -> bool {
    let mut stream = connect_from("127.0.0.1", origin).await;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (reply, _) = until_closed(&mut stream, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&reply).contains(line)
}

#[tokio::test]
async fn slowloris_is_closed_at_the_header_timeout() {
    let origin = spawn(|c| c.limits.header_timeout = Duration::from_millis(600)).await;
    // Sends nothing at all.
    let mut silent = connect_from("127.0.0.1", origin.addr).await;
    // Trickles a head that never ends, a byte every 100 ms.
    let mut trickle = connect_from("127.0.0.1", origin.addr).await;
    let trickling = tokio::spawn(async move {
        let started = Instant::now();
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if trickle.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        panic!("the trickling connection was never closed");
    });
    let (_, after) = until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(500),
        "closed after {after:?}"
    );
    let after = trickling.await.unwrap();
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    // Meanwhile and afterwards, requests are served.
    let (status, _) = get_from("127.0.0.1", origin.addr, SEGMENT).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        metric(
            origin.addr,
            "dashcdn_origin_connections_total{event=\"header_timeout\"} 2"
        )
        .await
    );
}

#[tokio::test]
async fn idle_keep_alive_is_closed_but_a_slow_head_is_not_idle() {
    let origin = spawn(|c| {
        c.limits.idle_timeout = Duration::from_millis(500);
        c.limits.header_timeout = Duration::from_secs(5);
    })
    .await;
    let mut stream = connect_from("127.0.0.1", origin.addr).await;
    let request = format!("GET {SEGMENT} HTTP/1.1\r\nHost: o\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 64];
    stream.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let (_, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    assert!(
        metric(
            origin.addr,
            "dashcdn_origin_connections_total{event=\"idle_timeout\"} 1"
        )
        .await
    );
}

#[tokio::test]
async fn beyond_the_caps_a_connection_gets_503() {
    let origin = spawn(|c| {
        c.limits.max_connections = Some(4);
        c.limits.max_connections_per_client = Some(2);
    })
    .await;
    // Two idle connections from one address fill its share.
    let _a1 = connect_from("127.0.0.1", origin.addr).await;
    let _a2 = connect_from("127.0.0.1", origin.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get_from("127.0.0.1", origin.addr, SEGMENT).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    // Another client still gets in, up to the total cap.
    let _b1 = connect_from("127.0.0.2", origin.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get_from("127.0.0.3", origin.addr, SEGMENT).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let _c1 = connect_from("127.0.0.3", origin.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get_from("127.0.0.4", origin.addr, SEGMENT).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
}

#[tokio::test]
async fn a_slow_reader_is_dropped_while_viewers_are_served() {
    let origin = spawn(|c| c.limits.send_timeout = Duration::from_millis(800)).await;
    // A small receive buffer, and nothing read: the server's writes stall at once.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(origin.addr).await.unwrap();
    let request = format!("GET {BIG} HTTP/1.1\r\nHost: o\r\n\r\n");
    slow.write_all(request.as_bytes()).await.unwrap();
    // Viewers meanwhile are answered quickly (the median, so that a loaded test machine's
    // scheduling hiccup does not fail the test; the bound is issue 12's 100 ms).
    let mut took = Vec::new();
    for _ in 0..10 {
        let (status, t) = get_from("127.0.0.2", origin.addr, SEGMENT).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        took.push(t);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    took.sort();
    assert!(
        took[5] < Duration::from_millis(100),
        "viewers took {took:?}"
    );
    // The slow reader's connection is gone: draining it ends well short of the body.
    let mut deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if metric(
            origin.addr,
            "dashcdn_origin_connections_total{event=\"send_timeout\"} 1",
        )
        .await
        {
            break;
        }
        assert!(Instant::now() < deadline, "no send timeout recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    deadline = Instant::now() + Duration::from_secs(10);
    let (got, _) = until_closed(&mut slow, deadline - Instant::now()).await;
    assert!(
        got.len() < BIG_LEN,
        "the whole body arrived ({} bytes)",
        got.len()
    );
}

#[tokio::test]
async fn http1_without_host_or_with_two_is_400() {
    let origin = spawn(|_| {}).await;
    for request in [
        "GET /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut stream = connect_from("127.0.0.1", origin.addr).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let (reply, _) = until_closed(&mut stream, Duration::from_secs(5)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 400"), "{request:?} → {reply}");
    }
    // HTTP/1.0 needs no Host.
    let mut stream = connect_from("127.0.0.1", origin.addr).await;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let (reply, _) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(reply.starts_with(b"HTTP/1.0 200") || reply.starts_with(b"HTTP/1.1 200"));
}

/// Env var naming the library the child origin serves; set only by the test below.
const CHILD_LIBRARY: &str = "DASHCDN_TEST_CHILD_ORIGIN_LIBRARY";

/// Not a test: the origin run as a child process by
/// `under_a_256_fd_limit_300_idle_connections_leave_room_for_a_viewer`. It prints its
/// port and serves until its stdin closes.
#[tokio::test]
#[ignore = "helper: runs only as the child process of the fd-limit test"]
async fn child_origin() {
    let Ok(library) = std::env::var(CHILD_LIBRARY) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT={}", listener.local_addr().unwrap().port());
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    run(listener, ServeConfig::new(library), stdin_closed)
        .await
        .unwrap();
}

#[tokio::test]
async fn under_a_256_fd_limit_300_idle_connections_leave_room_for_a_viewer() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" child_origin --exact --ignored --nocapture")
        .arg(&exe)
        .env(CHILD_LIBRARY, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("child origin printed its port")
            .unwrap()
            .expect("child origin exited early");
        if let Some(port) = line.strip_prefix("PORT=") {
            break port.parse().unwrap();
        }
    };
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from("127.0.0.1", addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let (status, took) = get_from("127.0.0.2", addr, SEGMENT).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
    drop(idle);
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

/// One request over a fresh connection from `from` with extra header lines; the reply.
async fn request_from(from: &str, to: SocketAddr, head: &str) -> String {
    let mut stream = connect_from(from, to).await;
    let request = format!("{head}\r\nHost: origin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (reply, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_a_line_per_request_and_says_when_a_client_left_mid_body() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let origin = spawn(|c| c.access_log_file = Some(path.clone())).await;
    for (head, status) in [
        (
            format!("GET {SEGMENT} HTTP/1.1\r\nVia: 1.1 shield, 1.1 us-west"),
            "200",
        ),
        (format!("HEAD {SEGMENT} HTTP/1.1"), "200"),
        (
            format!("GET {SEGMENT} HTTP/1.1\r\nRange: bytes=0-99"),
            "206",
        ),
        ("GET /vod/demo/v0/9.m4s HTTP/1.1".to_owned(), "404"),
    ] {
        let reply = request_from("127.0.0.5", origin.addr, &head).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
    }
    // A client that reads 64 KiB of the 24 MiB segment and leaves.
    let mut leaver = connect_from("127.0.0.6", origin.addr).await;
    leaver
        .write_all(format!("GET {BIG} HTTP/1.1\r\nHost: origin\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = vec![0u8; 64 * 1024];
    leaver.read_exact(&mut got).await.unwrap();
    drop(leaver);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= 5 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let line = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {lines:#?}"))
            .clone()
    };
    // date (an HTTP date: "Tue, 01 Dec 2026 11:20:08 GMT"), client, method, target, status,
    // bytes, complete|cut, ms to head and to end, Via.
    let get = line(&format!(" GET {SEGMENT} 200 "));
    assert!(get.ends_with(" 1.1 shield, 1.1 us-west"), "{get}");
    assert!(get.contains(" 127.0.0.5:"), "{get}");
    assert!(get.contains(" 200 2000 complete "), "{get}");
    assert!(get.contains(" GMT 127.0.0.5:"), "{get}");
    assert!(line(&format!(" HEAD {SEGMENT} 200 ")).contains(" 200 0 complete "));
    assert!(line(" 206 ").contains(" 206 100 complete "));
    assert!(line("/vod/demo/v0/9.m4s 404 ").contains(" complete "));
    let cut = line(&format!(" GET {BIG} 200 "));
    assert!(cut.contains(" 127.0.0.6:"), "{cut}");
    let fields: Vec<&str> = cut.split(' ').collect();
    let cut_at = fields.iter().position(|f| *f == "cut").expect("cut");
    let bytes: usize = fields[cut_at - 1].parse().unwrap();
    assert!((64 * 1024..BIG_LEN).contains(&bytes), "{cut}");
    assert!(
        metric(
            origin.addr,
            "dashcdn_origin_access_log_dropped_lines_total 0"
        )
        .await,
        "the dropped-lines counter is exported"
    );
}
