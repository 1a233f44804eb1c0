//! `dashcdn origin serve` over a real socket: a fake library in a tempdir, the server
//! started with [`run`] on `127.0.0.1:0`, and requests from reqwest or, for paths an HTTP
//! client would normalise, raw bytes over a `TcpStream`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dashcdn_origin::run;
use dashcdn_origin::ServeConfig;
use dashcdn_origin::{AssetSummary, RepresentationSummary};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &str = "TOP-SECRET-do-not-serve";
const MPD: &str = "<?xml version=\"1.0\"?><MPD type=\"static\"/>";
const INIT: &[u8] = b"\0\0\0\x18ftypiso6";

fn segment() -> Vec<u8> {
    (0..2000u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// A running origin over a fake library, and the things beside it it must not serve.
struct Origin {
    addr: SocketAddr,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// Holds `secret.txt`, `outside/` and `library/`; deleted on drop.
    _base: tempfile::TempDir,
}

/// Lays out `{base}/library` with asset `demo` (video `v0`, audio `audio`), a packaging
/// temp dir, symlinks leading out, and secrets beside the library; then starts `run`.
async fn spawn_origin() -> Origin {
    let base = tempfile::tempdir().unwrap();
    let lib = base.path().join("library");
    write(&base.path().join("secret.txt"), SECRET.as_bytes());
    write(&base.path().join("outside/manifest.mpd"), SECRET.as_bytes());
    write(&lib.join("demo/manifest.mpd"), MPD.as_bytes());
    for rep in ["v0", "audio"] {
        write(&lib.join("demo").join(rep).join("init.mp4"), INIT);
        write(&lib.join("demo").join(rep).join("1.m4s"), &segment());
    }
    AssetSummary {
        name: "demo".into(),
        duration_secs: 2.0,
        representations: vec![
            RepresentationSummary {
                id: "v0".into(),
                kind: "video".into(),
                codecs: "avc1.64001f".into(),
                bandwidth: 1_000_000,
                width: Some(640),
                height: Some(360),
                sample_rate: None,
            },
            RepresentationSummary {
                id: "audio".into(),
                kind: "audio".into(),
                codecs: "mp4a.40.2".into(),
                bandwidth: 128_000,
                width: None,
                height: None,
                sample_rate: Some(48_000),
            },
        ],
    }
    .write_to(&lib.join("demo"))
    .unwrap();
    // An asset still being packaged.
    write(&lib.join(".tmp-x/manifest.mpd"), SECRET.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(base.path().join("outside"), lib.join("leak")).unwrap();
        symlink(base.path().join("secret.txt"), lib.join("demo/v0/9.m4s")).unwrap();
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let config = ServeConfig::new(&lib);
    let task = tokio::spawn(run(listener, config, async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    Origin {
        addr,
        client,
        shutdown: Some(tx),
        task,
        _base: base,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

impl Origin {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(reqwest::Method::GET, path, headers).await
    }

    /// Sends `GET {target}` byte for byte, so `..` and friends reach the server as
    /// written; returns the status code and everything after it.
    async fn raw_get(&self, target: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("server answered within 10 s")
            .unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        (status, response)
    }

    /// Shuts the server down gracefully and re-raises anything it failed with.
    async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stopped within 10 s")
            .expect("server task panicked")
            .expect("server returned an error");
    }
}

#[tokio::test]
async fn range_returns_exact_bytes() {
    let origin = spawn_origin().await;
    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("range", "bytes=100-199")])
        .await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.header("content-range"), "bytes 100-199/2000");
    assert_eq!(reply.header("content-length"), "100");
    assert_eq!(reply.body, &segment()[100..200]);
    assert_eq!(reply.header("accept-ranges"), "bytes");

    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("range", "bytes=-500")])
        .await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.header("content-range"), "bytes 1500-1999/2000");
    assert_eq!(reply.body, &segment()[1500..]);

    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("range", "bytes=1990-")])
        .await;
    assert_eq!(reply.header("content-range"), "bytes 1990-1999/2000");
    assert_eq!(reply.body, &segment()[1990..]);
    origin.stop().await;
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_length() {
    let origin = spawn_origin().await;
    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("range", "bytes=2000-")])
        .await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(reply.header("content-range"), "bytes */2000");
    assert!(reply.body.is_empty());
    origin.stop().await;
}

#[tokio::test]
async fn conditional_get_is_304() {
    let origin = spawn_origin().await;
    let first = origin.get("/vod/demo/v0/1.m4s", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let etag = first.header("etag");
    assert!(etag.starts_with('"'), "strong ETag, got {etag}");

    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("if-none-match", etag)])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag"), etag);
    assert!(reply.body.is_empty());

    let since = first.header("last-modified");
    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("if-modified-since", since)])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);

    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("if-match", "\"other\"")])
        .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    origin.stop().await;
}

#[tokio::test]
async fn head_has_length_and_no_body() {
    let origin = spawn_origin().await;
    let reply = origin
        .request(reqwest::Method::HEAD, "/vod/demo/v0/1.m4s", &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-length"), "2000");
    assert_eq!(reply.header("content-type"), "video/mp4");
    assert!(reply.body.is_empty());
    origin.stop().await;
}

#[tokio::test]
async fn content_types_and_cache_control() {
    let origin = spawn_origin().await;
    let mpd = origin.get("/vod/demo/manifest.mpd", &[]).await;
    assert_eq!(mpd.status, StatusCode::OK);
    assert_eq!(mpd.header("content-type"), "application/dash+xml");
    assert_eq!(mpd.header("cache-control"), "public, max-age=2");
    assert_eq!(mpd.body, MPD.as_bytes());
    // hyper adds Date, which dash.js reads (through Expose-Headers) to sync its clock.
    httpdate::parse_http_date(mpd.header("date")).unwrap();

    for (path, content_type, body) in [
        ("/vod/demo/v0/init.mp4", "video/mp4", INIT.to_vec()),
        ("/vod/demo/v0/1.m4s", "video/mp4", segment()),
        ("/vod/demo/audio/init.mp4", "audio/mp4", INIT.to_vec()),
        ("/vod/demo/audio/1.m4s", "audio/mp4", segment()),
    ] {
        let reply = origin.get(path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-type"), content_type, "{path}");
        assert_eq!(
            reply.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(reply.body, body, "{path}");
    }
    origin.stop().await;
}

#[tokio::test]
async fn cors_for_players_on_other_origins() {
    let origin = spawn_origin().await;
    let reply = origin
        .request(
            reqwest::Method::OPTIONS,
            "/vod/demo/v0/1.m4s",
            &[
                ("origin", "http://player.test"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    let methods = reply.header("access-control-allow-methods");
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = reply
        .header("access-control-allow-headers")
        .to_ascii_lowercase();
    assert!(allowed.contains("range"), "{allowed}");

    let reply = origin
        .get("/vod/demo/v0/1.m4s", &[("origin", "http://player.test")])
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert_eq!(reply.header("timing-allow-origin"), "*");
    let exposed = reply
        .header("access-control-expose-headers")
        .to_ascii_lowercase();
    for name in ["content-length", "content-range", "date"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    origin.stop().await;
}

#[tokio::test]
async fn listing_health_and_metrics() {
    let origin = spawn_origin().await;
    let reply = origin.get("/vod/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "application/json");
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let assets = json["assets"].as_array().unwrap();
    // Neither the temp dir nor the symlink out of the library is listed.
    assert_eq!(assets.len(), 1, "{json}");
    assert_eq!(assets[0]["name"], "demo");
    assert_eq!(assets[0]["manifest"], "/vod/demo/manifest.mpd");
    assert_eq!(assets[0]["representations"][0]["width"], 640);

    let reply = origin.get("/healthz", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, b"ok");

    let metric = r#"dashcdn_origin_http_requests_total{route="segment",status="200"}"#;
    let count = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(metric))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let before = String::from_utf8(origin.get("/metrics", &[]).await.body).unwrap();
    origin.get("/vod/demo/v0/1.m4s", &[]).await;
    origin.get("/vod/demo/v0/1.m4s", &[]).await;
    let after = origin.get("/metrics", &[]).await;
    assert_eq!(after.status, StatusCode::OK);
    let after = String::from_utf8(after.body).unwrap();
    assert_eq!(count(&after), count(&before) + 2, "{after}");
    assert!(after.contains("dashcdn_origin_http_response_bytes_total{route=\"segment\"}"));
    assert!(after.contains("dashcdn_origin_http_request_duration_seconds_bucket"));
    origin.stop().await;
}

#[tokio::test]
async fn hostile_paths_never_leave_the_library() {
    let origin = spawn_origin().await;
    for target in [
        "/vod/../../etc/passwd",
        "/vod/../secret.txt",
        "/vod/%2e%2e/%2e%2e/etc/passwd",
        "/vod/%2e%2e/secret.txt",
        "/vod/a/..%2f..%2fsecret",
        "/vod/demo/..%2f..%2fsecret.txt",
        "/vod/a%00/manifest.mpd",
        "/vod//etc/passwd/manifest.mpd",
        "/vod/.tmp-x/manifest.mpd",
        "/vod/%2etmp-x/manifest.mpd",
        "/vod/demo%5c..%5c..%5csecret.txt",
        "/vod/leak/manifest.mpd",
        "/vod/demo/v0/9.m4s",
        "/../secret.txt",
        "/secret.txt",
    ] {
        let (status, response) = origin.raw_get(target).await;
        assert!(
            status == 400 || status == 404,
            "{target}: {status}\n{response}"
        );
        assert!(!response.contains(SECRET), "{target} leaked the secret");
        assert!(!response.contains("root:"), "{target} leaked /etc/passwd");
    }
    // Still serving.
    let (status, response) = origin.raw_get("/vod/demo/manifest.mpd").await;
    assert_eq!(status, 200);
    assert!(response.ends_with(MPD), "{response}");
    origin.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let origin = spawn_origin().await;
    assert_eq!(
        origin.get("/vod/demo/v0/2.m4s", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(origin.get("/nope", &[]).await.status, StatusCode::NOT_FOUND);
    let reply = origin
        .request(reqwest::Method::PUT, "/vod/demo/manifest.mpd", &[])
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    origin.stop().await;
}

#[tokio::test]
async fn missing_library_is_an_error_naming_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let missing = PathBuf::from("/nonexistent/dashcdn-library");
    let err = run(listener, ServeConfig::new(&missing), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/dashcdn-library"),
        "{err}"
    );
}
