//! Origin and edge share one HTTP layer (`dashcdn-http`), so they answer the same request
//! the same way: the same request matrix — Range in its edge cases, every precondition of
//! RFC 9110 §13, HEAD, a CORS preflight — is sent to an origin and to an edge in front of
//! it (cold, then warm), and each answer's status, body and range headers must agree.

use std::collections::BTreeMap;

use dashcdn_testkit::{client, packaged, spawn_edge, spawn_origin, Server, Spec};
use reqwest::Method;

/// A probe: its name, the method, the request headers.
type Probe = (&'static str, Method, Vec<(&'static str, String)>);

/// What a probe's answer is compared on.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: BTreeMap<&'static str, String>,
    body: Vec<u8>,
}

/// Headers that must agree when present. `Content-Type` is compared only with its
/// multipart boundary replaced, which each server picks for itself.
const COMPARED: [&str; 7] = [
    "content-range",
    "content-length",
    "etag",
    "accept-ranges",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "content-type",
];

async fn ask(server: &Server, method: &Method, path: &str, headers: &[(&str, String)]) -> Answer {
    let mut req = client().request(method.clone(), server.url(path));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let mut boundary = None;
    let mut out = BTreeMap::new();
    for name in COMPARED {
        if let Some(v) = resp.headers().get(name) {
            let mut v = v.to_str().unwrap_or("<binary>").to_string();
            if name == "content-type" {
                if let Some(i) = v.find("boundary=") {
                    boundary = Some(v[i + 9..].trim_matches('"').to_string());
                    v = format!("{}boundary=B", &v[..i]);
                }
            }
            out.insert(name, v);
        }
    }
    let mut body = resp.bytes().await.expect("body").to_vec();
    if let Some(b) = boundary {
        body = String::from_utf8_lossy(&body).replace(&b, "B").into_bytes();
        // The length of a multipart body depends on the boundary's length.
        out.remove("content-length");
    }
    Answer {
        status,
        headers: out,
        body,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_and_edge_answer_the_same_request_the_same_way() {
    let fx = packaged(Spec::new("agree"));
    let rep = std::fs::read_dir(fx.library.join(&fx.asset))
        .unwrap()
        .flatten()
        .find(|e| e.path().join("1.m4s").exists())
        .expect("a representation folder with 1.m4s")
        .file_name();
    let path = format!("/vod/{}/{}/1.m4s", fx.asset, rep.to_string_lossy());

    let origin = spawn_origin(&fx.library).await;
    let edge = spawn_edge().upstream(origin.addr).pop("agree").await;

    let first = origin.get(&path).await;
    assert_eq!(first.status(), 200, "GET {path} at the origin");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let last_modified = first
        .headers()
        .get("last-modified")
        .map(|v| v.to_str().unwrap().to_string());
    let len = first.bytes().await.unwrap().len();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    let weak = format!("W/{etag}");
    let old_date = "Sun, 06 Nov 1994 08:49:37 GMT".to_string();

    let get = Method::GET;
    let mut probes: Vec<Probe> = vec![
        ("plain GET", get.clone(), vec![]),
        ("HEAD", Method::HEAD, vec![]),
        ("range", get.clone(), vec![("range", "bytes=0-99".into())]),
        (
            "range unit case",
            get.clone(),
            vec![("range", "Bytes=0-99".into())],
        ),
        (
            "range trailing comma",
            get.clone(),
            vec![("range", "bytes=0-99,".into())],
        ),
        (
            "suffix range",
            get.clone(),
            vec![("range", "bytes=-100".into())],
        ),
        (
            "open range",
            get.clone(),
            vec![("range", format!("bytes={}-", len - 10))],
        ),
        (
            "multi-range",
            get.clone(),
            vec![("range", "bytes=0-9,20-29".into())],
        ),
        (
            "unsatisfiable range",
            get.clone(),
            vec![("range", format!("bytes={}-", len + 10))],
        ),
        (
            "malformed range",
            get.clone(),
            vec![("range", "bytes=abc".into())],
        ),
        (
            "If-Match wrong",
            get.clone(),
            vec![("if-match", "\"nope\"".into())],
        ),
        (
            "If-Match right",
            get.clone(),
            vec![("if-match", etag.clone())],
        ),
        (
            "If-Match weak",
            get.clone(),
            vec![("if-match", weak.clone())],
        ),
        ("If-Match *", get.clone(), vec![("if-match", "*".into())]),
        (
            "If-Unmodified-Since old",
            get.clone(),
            vec![("if-unmodified-since", old_date.clone())],
        ),
        (
            "If-None-Match same",
            get.clone(),
            vec![("if-none-match", etag.clone())],
        ),
        (
            "If-None-Match weak",
            get.clone(),
            vec![("if-none-match", weak.clone())],
        ),
        (
            "If-None-Match *",
            get.clone(),
            vec![("if-none-match", "*".into())],
        ),
        (
            "If-None-Match other",
            get.clone(),
            vec![("if-none-match", "\"other\"".into())],
        ),
        (
            "If-Modified-Since old",
            get.clone(),
            vec![("if-modified-since", old_date.clone())],
        ),
        (
            "If-Range stale ETag",
            get.clone(),
            vec![
                ("range", "bytes=0-99".into()),
                ("if-range", "\"stale\"".into()),
            ],
        ),
        (
            "If-Range current ETag",
            get.clone(),
            vec![("range", "bytes=0-99".into()), ("if-range", etag.clone())],
        ),
        (
            "If-Range weak ETag",
            get.clone(),
            vec![("range", "bytes=0-99".into()), ("if-range", weak.clone())],
        ),
        (
            "If-Match wrong beats Range",
            get.clone(),
            vec![
                ("range", "bytes=0-99".into()),
                ("if-match", "\"nope\"".into()),
            ],
        ),
        (
            "CORS preflight",
            Method::OPTIONS,
            vec![
                ("origin", "http://player.example".into()),
                ("access-control-request-method", "GET".into()),
            ],
        ),
        (
            "CORS GET",
            get.clone(),
            vec![("origin", "http://player.example".into())],
        ),
    ];
    if let Some(lm) = &last_modified {
        probes.push((
            "If-Modified-Since current",
            get.clone(),
            vec![("if-modified-since", lm.clone())],
        ));
        probes.push((
            "If-Range date",
            get.clone(),
            vec![("range", "bytes=0-99".into()), ("if-range", lm.clone())],
        ));
    }

    let mut disagreements = Vec::new();
    for pass in ["cold", "warm"] {
        for (name, method, headers) in &probes {
            let at_origin = ask(&origin, method, &path, headers).await;
            let at_edge = ask(&edge, method, &path, headers).await;
            if at_origin != at_edge {
                disagreements.push(format!(
                    "{name} ({pass} edge): origin {} {:?} ({} B), edge {} {:?} ({} B)",
                    at_origin.status,
                    at_origin.headers,
                    at_origin.body.len(),
                    at_edge.status,
                    at_edge.headers,
                    at_edge.body.len()
                ));
            }
        }
    }
    // The matrix means something only if the answers differ between probes.
    let statuses: std::collections::BTreeSet<u16> = {
        let mut s = std::collections::BTreeSet::new();
        for (_, method, headers) in &probes {
            s.insert(ask(&origin, method, &path, headers).await.status);
        }
        s
    };
    for expected in [200, 206, 304, 412, 416] {
        assert!(
            statuses.contains(&expected),
            "no probe got {expected}: {statuses:?}"
        );
    }
    assert!(
        disagreements.is_empty(),
        "origin and edge disagree on {} probe(s):\n  {}",
        disagreements.len(),
        disagreements.join("\n  ")
    );
    edge.join().await;
    origin.join().await;
}

/// The same connection-level tests, run against both servers: they share one accept loop
/// (`dashcdn_http::serve`), configured from each server's own config.
mod connections {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use dashcdn_testkit::{origin, spawn_edge, Server};

    /// An origin and an edge in front of it, both with a 2-connection cap and a 300 ms
    /// header timeout.
    async fn both(library: &std::path::Path) -> (Server, Server) {
        let o = origin(library)
            .config(|c| {
                c.limits.max_connections = Some(2);
                c.limits.max_connections_per_client = Some(2);
                c.limits.header_timeout = Duration::from_millis(300);
            })
            .await;
        let e = spawn_edge()
            .upstream(o.addr)
            .config(|c| {
                c.max_connections = Some(2);
                c.max_connections_per_client = Some(2);
                c.header_read_timeout_ms = 300;
            })
            .await;
        (o, e)
    }

    /// Sends half a request head and returns how long the server took to close.
    fn slowloris(addr: SocketAddr) -> Duration {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    }

    /// Opens connections until the cap, then one more; returns the extra one's answer.
    fn beyond_the_cap(addr: SocketAddr) -> String {
        let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        let _ = extra.read_to_string(&mut answer);
        drop(held);
        answer
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn both_close_slowloris_at_the_header_timeout_and_refuse_beyond_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (o, e) = both(dir.path()).await;
        for (name, addr) in [("origin", o.addr), ("edge", e.addr)] {
            let took = tokio::task::spawn_blocking(move || slowloris(addr))
                .await
                .unwrap();
            assert!(
                took >= Duration::from_millis(200) && took < Duration::from_secs(4),
                "{name}: a half head was closed after {took:?} (header timeout 300 ms)"
            );
            let answer = tokio::task::spawn_blocking(move || beyond_the_cap(addr))
                .await
                .unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 503"),
                "{name}: the connection beyond the cap got {answer:?}"
            );
        }
        e.join().await;
        o.join().await;
    }
}
