//! Test servers on 127.0.0.1:0: the real origin (in-process), a scriptable mock upstream,
//! and the edge itself, plus raw-socket helpers for the hostile-input tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dashcdn_edge::{EdgeConfig, UpstreamConfig};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// reqwest without any proxy from the environment: tests talk to loopback only.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Deterministic content for a synthetic segment.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + seed as u64 * 7) % 251) as u8)
        .collect()
}

/// A library laid out like the packager's, with synthetic segments:
/// `{dir}/demo/manifest.mpd`, `{dir}/demo/v0/{n}.m4s` of the given sizes (n from 1).
pub fn library(dir: &Path, sizes: &[usize]) {
    let rep = dir.join("demo").join("v0");
    std::fs::create_dir_all(&rep).unwrap();
    std::fs::write(dir.join("demo").join("manifest.mpd"), "<MPD/>").unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        std::fs::write(rep.join(format!("{}.m4s", i + 1)), content(len, i as u8)).unwrap();
    }
}

/// The real origin, served in-process on an ephemeral port.
pub struct Origin {
    pub addr: SocketAddr,
    /// The test kit's handle: stops the origin when dropped or killed.
    server: dashcdn_testkit::Server,
}

impl Origin {
    pub async fn start(library: &Path) -> Origin {
        Origin::start_with(library, 2).await
    }

    pub async fn start_with(library: &Path, mpd_max_age_secs: u32) -> Origin {
        let server = dashcdn_testkit::origin(library)
            .config(|c| c.mpd_max_age_secs = mpd_max_age_secs)
            .await;
        Origin {
            addr: server.addr,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests the origin answered for segments (any status), from its /metrics.
    pub async fn segment_requests(&self) -> u64 {
        self.requests("segment").await
    }

    pub async fn requests(&self, route: &str) -> u64 {
        let text = client()
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let needle = format!("dashcdn_origin_http_requests_total{{route=\"{route}\"");
        text.lines()
            .filter(|l| l.starts_with(&needle))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    /// Stops the origin: afterwards its port refuses connections.
    pub async fn kill(self) {
        self.server.join().await;
    }
}

/// An edge served in-process.
pub struct Edge {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), dashcdn_edge::EdgeError>>>,
}

/// A config for tests: small cache, short timeouts, one origin upstream.
pub fn config(pop: &str, upstream: &str) -> EdgeConfig {
    EdgeConfig {
        pop: pop.into(),
        cache_size: dashcdn_edge::ByteSize(64 << 20),
        upstreams: vec![UpstreamConfig::origin(upstream)],
        connect_timeout_ms: 500,
        first_byte_timeout_ms: 2_000,
        read_timeout_ms: 2_000,
        header_read_timeout_ms: 2_000,
        health_interval_ms: 60_000,
        purge_token: Some("sesame".into()),
        ..EdgeConfig::default()
    }
}

impl Edge {
    pub async fn start(config: EdgeConfig) -> Edge {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(dashcdn_edge::run(listener, config, async move {
            let _ = rx.await;
        }));
        Edge {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        client().get(self.url(path)).send().await.unwrap()
    }

    pub async fn stats(&self) -> serde_json::Value {
        self.get("/_edge/stats").await.json().await.unwrap()
    }

    /// Waits (at most 5 s) until no fill is in flight: an object just answered as MISS is
    /// stored by then, so the next request is a HIT rather than COALESCED onto the fill
    /// still finishing behind the answer.
    pub async fn settled(&self) {
        for _ in 0..500 {
            if self.stats().await["fills_in_flight"] == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("fills still in flight after 5 s");
    }

    pub async fn metrics(&self) -> String {
        self.get("/_edge/metrics").await.text().await.unwrap()
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

pub fn x_cache(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Body of a test response: a channel, so the mock can stream slowly.
pub struct ChanBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// What the mock answers for one path.
#[derive(Clone, Default)]
pub struct Script {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Sent in chunks of this size with `chunk_delay` between them (a rate-limited origin).
    pub chunk: Option<usize>,
    pub chunk_delay: Duration,
    /// Answer 304 when If-None-Match matches this ETag.
    pub etag: Option<String>,
}

impl Script {
    pub fn ok(body: impl Into<Bytes>, cache_control: &str) -> Script {
        Script {
            status: 200,
            headers: vec![("cache-control", cache_control.to_string())],
            body: body.into(),
            ..Script::default()
        }
    }

    /// With `Age: secs`: a response already that old when it arrives, so one with a
    /// smaller max-age is stale at once (no sleeping for it to expire). A 304 answer
    /// carries no `Age`, so a revalidated entry is fresh again.
    pub fn aged(mut self, secs: u64) -> Script {
        self.headers.push(("age", secs.to_string()));
        self
    }
}

pub const SERVE: u8 = 0;
pub const HANG: u8 = 1;
pub const FAIL: u8 = 2;

/// A scriptable upstream that counts requests per path and can hang or fail on demand.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    pub mode: Arc<AtomicU8>,
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Request headers of the last request per path.
    pub last_headers: Arc<Mutex<HashMap<String, http::HeaderMap>>>,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = Mock {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(SERVE)),
            scripts: Default::default(),
            hits: Default::default(),
            last_headers: Default::default(),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let m = m.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let m = m.clone();
                        async move { Ok::<_, Infallible>(m.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self, path: &str, s: Script) {
        self.scripts.lock().unwrap().insert(path.to_string(), s);
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.hits.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<ChanBody> {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        if path == "/healthz" {
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(Bytes::from_static(b"ok"));
            return Response::new(ChanBody(rx));
        }
        *self.hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
        self.last_headers
            .lock()
            .unwrap()
            .insert(path.clone(), req.headers().clone());
        match self.mode.load(Ordering::SeqCst) {
            HANG => std::future::pending::<()>().await,
            FAIL => {
                let (_tx, rx) = mpsc::channel(1);
                let mut r = Response::new(ChanBody(rx));
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return r;
            }
            _ => {}
        }
        let script = self.scripts.lock().unwrap().get(&path).cloned();
        let Some(s) = script else {
            let (_tx, rx) = mpsc::channel(1);
            let mut r = Response::new(ChanBody(rx));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r.headers_mut()
                .insert("content-length", http::HeaderValue::from_static("0"));
            return r;
        };
        let not_modified = s.etag.as_ref().is_some_and(|e| {
            req.headers()
                .get("if-none-match")
                .is_some_and(|v| v.to_str().unwrap() == e)
        });
        let (tx, rx) = mpsc::channel(4);
        let mut r = Response::new(ChanBody(rx));
        *r.status_mut() = if not_modified {
            http::StatusCode::NOT_MODIFIED
        } else {
            http::StatusCode::from_u16(s.status).unwrap()
        };
        for (k, v) in &s.headers {
            if not_modified && *k == "age" {
                continue; // a fresh validation (see `Script::aged`)
            }
            r.headers_mut()
                .append(*k, http::HeaderValue::from_str(v).unwrap());
        }
        if let Some(e) = &s.etag {
            r.headers_mut()
                .insert("etag", http::HeaderValue::from_str(e).unwrap());
        }
        if not_modified {
            return r;
        }
        r.headers_mut()
            .insert("content-length", http::HeaderValue::from(s.body.len()));
        tokio::spawn(async move {
            match s.chunk {
                None => {
                    let _ = tx.send(s.body).await;
                }
                Some(n) => {
                    let mut off = 0;
                    while off < s.body.len() {
                        let end = (off + n).min(s.body.len());
                        if tx.send(s.body.slice(off..end)).await.is_err() {
                            return;
                        }
                        off = end;
                        tokio::time::sleep(s.chunk_delay).await;
                    }
                }
            }
        });
        r
    }
}

/// A listener that accepts and never answers: the hung origin.
pub async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// Sends raw bytes and reads until the edge closes the connection (or 10 s pass).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer.
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}
