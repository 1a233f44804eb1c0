//! The HTTP origin: MPDs, CMAF segments, the asset listing, health and metrics.
//!
//! Routes (GET and HEAD; OPTIONS answers CORS preflights on any path):
//!
//! | path | response |
//! | --- | --- |
//! | `/vod/{asset}/manifest.mpd` | `application/dash+xml`, `Cache-Control: public, max-age=<mpd_max_age_secs>` |
//! | `/vod/{asset}/{rep}/init.mp4`, `/vod/{asset}/{rep}/{n}.m4s` | `video/mp4` or `audio/mp4`, `public, max-age=<segment_max_age_secs>, immutable` |
//! | `/vod/` | JSON `{"assets": [...]}` from each asset's `asset.json` |
//! | `/healthz` | `ok` |
//! | `/metrics` | OpenMetrics text, see [`crate::metrics`] |
//! | `/`, `/web/…`, `/time` | the dash.js watch page and its timing source, see [`crate::web`] |
//!
//! Files get a strong `ETag` and `Last-Modified`, conditional requests (RFC 9110 §13,
//! [`crate::conditional`]) and single byte ranges (RFC 9110 §14, [`crate::range`]). Every
//! response carries CORS headers so dash.js on another origin can fetch and time segments.
//!
//! This module is the surface: state, routing, errors, CORS and metrics. A media file's
//! response is built in [`crate::file`], from [`crate::small_files`] or [`crate::body`].
//!
//! Performance (this is benchmarked against nginx with wrk):
//! - a media request makes at most one trip to the blocking pool, which resolves the
//!   path, opens the file, evaluates the preconditions and reads the bytes the response
//!   needs: `tokio::fs` would make one trip per step;
//! - small files (MPDs, init segments) are kept in memory for a second (see
//!   [`crate::small_files`]), so the hottest requests skip the pool and the disk entirely;
//! - response bodies up to [`crate::body::BUFFER_LIMIT`] are read in one go (a media
//!   segment is a few MB, and a range reads only its slice); larger ones are streamed.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::ServeConfig;
use crate::file::serve_file;
use crate::library::{Library, ListingEntry, MediaPath, PathError, ResolveError};
use crate::metrics::{self, Metrics, Route};
use crate::small_files::SmallFiles;
use crate::web::{self, WebRoot};

/// Shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    library: Library,
    metrics: Metrics,
    /// Rendered once from the config: they are the same bytes on every response.
    mpd_cache_control: HeaderValue,
    segment_cache_control: HeaderValue,
    small_files: SmallFiles,
    /// Where the watch page and dash.js are read from, located once at start-up.
    web: WebRoot,
}

impl AppState {
    /// Opens the library named by `config`; fails if it is not a directory.
    pub fn new(config: &ServeConfig) -> io::Result<AppState> {
        let library = Library::open(&config.library)?;
        let mpd_cache_control =
            HeaderValue::try_from(format!("public, max-age={}", config.mpd_max_age_secs))
                .expect("digits are a valid header value");
        let segment_cache_control = HeaderValue::try_from(format!(
            "public, max-age={}, immutable",
            config.segment_max_age_secs
        ))
        .expect("digits are a valid header value");
        Ok(AppState {
            inner: Arc::new(Inner {
                library,
                metrics: Metrics::new(),
                mpd_cache_control,
                segment_cache_control,
                small_files: SmallFiles::default(),
                web: WebRoot::discover(config.web_root.as_deref()),
            }),
        })
    }

    pub fn library(&self) -> &Library {
        &self.inner.library
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn mpd_cache_control(&self) -> &HeaderValue {
        &self.inner.mpd_cache_control
    }

    pub(crate) fn segment_cache_control(&self) -> &HeaderValue {
        &self.inner.segment_cache_control
    }

    pub(crate) fn small_files(&self) -> &SmallFiles {
        &self.inner.small_files
    }

    pub fn web(&self) -> &WebRoot {
        &self.inner.web
    }
}

/// The whole HTTP surface, without a socket: tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/vod", get(listing))
        .route("/vod/", get(listing))
        .route("/", get(web::index))
        .route("/web/{name}", get(web::web_file))
        .route("/time", get(web::time))
        // Media paths are matched by hand, not by route patterns: axum would
        // percent-decode `{asset}` (turning `..%2f` into `../`) before we could refuse it.
        .fallback(media)
        .layer(middleware::from_fn_with_state(state.clone(), around))
        .with_state(state)
}

/// Serves the origin on `listener` until `shutdown` completes, then lets in-flight
/// requests finish. The listener is bound by the caller so tests can use port 0.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let state = AppState::new(&config)?;
    let addr = listener.local_addr()?;
    info!(%addr, library = %state.library().root().display(), "listening on {addr}");
    state.web().log_startup();
    // Responses are written as one head+body write; Nagle would only delay the last
    // partial packet of each response on a keep-alive connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

// ---------------------------------------------------------------------------------------
// Errors

/// Every failure a handler can return. Clients get a short plain-text reason; the
/// details (paths on disk, OS errors) go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("refused request path {path:?}: {reason}")]
    BadPath { path: String, reason: PathError },
    #[error("no such resource {path:?}")]
    NotFound { path: String },
    #[error("refused request path {path:?}: {reason}")]
    Escapes { path: String, reason: ResolveError },
    #[error("method {method} not allowed on {path:?}")]
    MethodNotAllowed { method: Method, path: String },
    #[error("serving {path:?}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl AppError {
    pub(crate) fn from_resolve(path: &str, e: ResolveError) -> AppError {
        let path = path.to_owned();
        match e {
            ResolveError::NotFound => AppError::NotFound { path },
            e @ ResolveError::Escapes { .. } => AppError::Escapes { path, reason: e },
            ResolveError::Io { source, .. } => AppError::Io { path, source },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            AppError::BadPath { .. } => (StatusCode::BAD_REQUEST, "bad request\n"),
            // A symlink out of the library looks like any missing file to the client.
            AppError::NotFound { .. } | AppError::Escapes { .. } => {
                (StatusCode::NOT_FOUND, "not found\n")
            }
            AppError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            AppError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
        };
        match &self {
            AppError::BadPath { .. } | AppError::Escapes { .. } => warn!(error = %self),
            AppError::NotFound { .. } | AppError::MethodNotAllowed { .. } => {
                debug!(error = %self)
            }
            AppError::Io { source, .. } => error!(error = %self, cause = %source),
        }
        let mut response = (status, message).into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
        response
    }
}

// ---------------------------------------------------------------------------------------
// Middleware: CORS, metrics

const CORS_METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
/// The request headers a player may send cross-origin: Range, the conditional ones,
/// and the CORS-safelisted ones. Answering with the whole set costs nothing and covers
/// whatever subset a preflight asks for.
const CORS_ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, \
     Accept, Accept-Language, Content-Language, Cache-Control",
);
/// Response headers scripts may read: dash.js uses Content-Length and Date for its
/// throughput and clock estimates, Content-Range for partial requests.
const CORS_EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "Content-Length, Content-Range, Content-Type, Date, ETag, Last-Modified, Accept-Ranges, Age",
);
/// Resource Timing: without this the browser hides transfer timings from dash.js.
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

/// Wraps every request: answers CORS preflights, adds CORS headers, records metrics.
async fn around(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let is_head = request.method() == Method::HEAD;
    let mut response = if request.method() == Method::OPTIONS {
        preflight()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE_HEADERS);
    headers.insert(TIMING_ALLOW_ORIGIN, HeaderValue::from_static("*"));

    let route = response
        .extensions()
        .get::<Route>()
        .copied()
        .unwrap_or(Route::Other);
    let body_bytes = if is_head {
        0
    } else {
        response.body().size_hint().exact().unwrap_or(0)
    };
    state
        .metrics()
        .observe(route, response.status(), body_bytes, started.elapsed());
    response
}

/// The answer to `OPTIONS` on any path. `Access-Control-Allow-Origin` is added by
/// [`around`] like on every response.
fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(ALLOW, CORS_METHODS);
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS);
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS);
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn with_route(mut response: Response, route: Route) -> Response {
    response.extensions_mut().insert(route);
    response
}

// ---------------------------------------------------------------------------------------
// Small handlers

async fn healthz() -> Response {
    let response = (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        "ok",
    )
        .into_response();
    with_route(response, Route::Health)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let response = (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        state.metrics().encode(),
    )
        .into_response();
    with_route(response, Route::Metrics)
}

/// Body of `GET /vod/`.
#[derive(Debug, Serialize)]
struct Listing {
    assets: Vec<ListingEntry>,
}

async fn listing(State(state): State<AppState>) -> Response {
    let listed = tokio::task::spawn_blocking(move || state.library().list())
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
    let response = match listed {
        Ok(assets) => (
            // Assets appear as they are packaged, so caches must revalidate.
            [(CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
            Json(Listing { assets }),
        )
            .into_response(),
        Err(source) => AppError::Io {
            path: "/vod/".into(),
            source,
        }
        .into_response(),
    };
    with_route(response, Route::Listing)
}

// ---------------------------------------------------------------------------------------
// Media files

/// Fallback for every path no route matched: media under `/vod/`, else 404.
async fn media(State(state): State<AppState>, request: Request) -> Response {
    // Taking the whole request borrows the headers instead of cloning them into a
    // `HeaderMap` extractor.
    let (parts, _body) = request.into_parts();
    let (method, headers) = (parts.method, parts.headers);
    let path = parts.uri.path();
    let media = match MediaPath::parse(path) {
        Ok(media) => media,
        Err(reason) if reason.is_hostile() => {
            let path = path.to_owned();
            return AppError::BadPath { path, reason }.into_response();
        }
        Err(_) => {
            let path = path.to_owned();
            return AppError::NotFound { path }.into_response();
        }
    };
    let route = media.route();
    let response = if method == Method::GET || method == Method::HEAD {
        serve_file(state, media, path, method == Method::HEAD, &headers)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    } else {
        let path = path.to_owned();
        AppError::MethodNotAllowed { method, path }.into_response()
    };
    with_route(response, route)
}

/// Drives [`router`] over a small library: shared by the tests here and in the modules
/// that build media responses, which test what they decide through real requests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::library::{AssetSummary, RepresentationSummary, KIND_AUDIO, KIND_VIDEO};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use std::fs;
    use tower::ServiceExt;

    pub(crate) const SEGMENT_LEN: usize = 1000;

    pub(crate) fn segment_bytes() -> Vec<u8> {
        (0..SEGMENT_LEN).map(|i| (i % 251) as u8).collect()
    }

    /// A library with asset `demo` (video `v0`, audio `snd`, asset.json) and asset
    /// `bare` (no asset.json, reps `v0` and `audio`).
    pub(crate) fn fixture() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (asset, reps) in [("demo", ["v0", "snd"]), ("bare", ["v0", "audio"])] {
            fs::create_dir(root.join(asset)).unwrap();
            fs::write(root.join(asset).join("manifest.mpd"), "<MPD/>").unwrap();
            for rep in reps {
                let rep_dir = root.join(asset).join(rep);
                fs::create_dir(&rep_dir).unwrap();
                fs::write(rep_dir.join("init.mp4"), b"init").unwrap();
                fs::write(rep_dir.join("1.m4s"), segment_bytes()).unwrap();
            }
        }
        let rep = |id: &str, kind: &str| RepresentationSummary {
            id: id.into(),
            kind: kind.into(),
            codecs: "x".into(),
            bandwidth: 1,
            width: None,
            height: None,
            sample_rate: None,
        };
        AssetSummary {
            name: "demo".into(),
            duration_secs: 4.0,
            representations: vec![rep("v0", KIND_VIDEO), rep("snd", KIND_AUDIO)],
        }
        .write_to(&root.join("demo"))
        .unwrap();
        let mut config = ServeConfig::new(root);
        config.mpd_max_age_secs = 5;
        let state = AppState::new(&config).unwrap();
        (dir, state)
    }

    pub(crate) async fn send(
        state: &AppState,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router(state.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    pub(crate) async fn get(state: &AppState, uri: &str, headers: &[(&str, &str)]) -> Response {
        send(state, Method::GET, uri, headers).await
    }

    pub(crate) async fn body(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    pub(crate) fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{body, fixture, get, header, segment_bytes, send};
    use super::*;

    #[tokio::test]
    async fn manifest_has_dash_type_and_short_max_age() {
        let (_dir, state) = fixture();
        let response = get(&state, "/vod/demo/manifest.mpd", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/dash+xml");
        assert_eq!(header(&response, "cache-control"), "public, max-age=5");
        assert_eq!(header(&response, "content-length"), "6");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        assert_eq!(header(&response, "timing-allow-origin"), "*");
        let expose = header(&response, "access-control-expose-headers");
        for name in ["Content-Length", "Content-Range", "Date"] {
            assert!(expose.contains(name), "{expose}");
        }
        let etag = header(&response, "etag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        httpdate::parse_http_date(header(&response, "last-modified")).unwrap();
        assert_eq!(body(response).await, b"<MPD/>");
    }

    #[tokio::test]
    async fn segments_are_immutable_and_typed_by_kind() {
        let (_dir, state) = fixture();
        for (uri, content_type) in [
            ("/vod/demo/v0/init.mp4", "video/mp4"),
            ("/vod/demo/v0/1.m4s", "video/mp4"),
            ("/vod/demo/snd/init.mp4", "audio/mp4"),
            ("/vod/demo/snd/1.m4s", "audio/mp4"),
            // No asset.json: the rep id decides.
            ("/vod/bare/audio/1.m4s", "audio/mp4"),
            ("/vod/bare/v0/1.m4s", "video/mp4"),
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            assert_eq!(header(&response, "content-type"), content_type, "{uri}");
            assert_eq!(
                header(&response, "cache-control"),
                "public, max-age=31536000, immutable"
            );
            assert_eq!(header(&response, "accept-ranges"), "bytes");
        }
        let response = get(&state, "/vod/demo/v0/1.m4s", &[]).await;
        assert_eq!(body(response).await, segment_bytes());
    }

    #[tokio::test]
    async fn hostile_and_unknown_paths() {
        let (_dir, state) = fixture();
        for uri in [
            "/vod/%2e%2e/%2e%2e/etc/passwd",
            "/vod/demo/..%2f..%2fsecret",
            "/vod/demo%00/manifest.mpd",
            "/vod/.tmp-x/manifest.mpd",
            "/vod/demo/v0/..%5c1.m4s",
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(body(response).await, b"bad request\n");
        }
        for uri in [
            "/etc/passwd",
            "/vod/missing/manifest.mpd",
            "/vod/demo/v0/2.m4s",
            "/vod/demo/asset.json",
            "/vod/demo/v0/init.mp4.bak",
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }

    #[tokio::test]
    async fn wrong_methods_are_405() {
        let (_dir, state) = fixture();
        for uri in ["/vod/demo/manifest.mpd", "/healthz"] {
            let response = send(&state, Method::POST, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{uri}");
            assert!(header(&response, "allow").contains("GET"));
        }
        let response = send(&state, Method::DELETE, "/vod/demo/v0/1.m4s", &[]).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn cors_preflight() {
        let (_dir, state) = fixture();
        let response = send(
            &state,
            Method::OPTIONS,
            "/vod/demo/v0/1.m4s",
            &[
                ("origin", "http://player.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        let methods = header(&response, "access-control-allow-methods");
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert!(methods.contains(m), "{methods}");
        }
        assert!(header(&response, "access-control-allow-headers").contains("Range"));
    }

    #[tokio::test]
    async fn listing_health_and_metrics() {
        let (_dir, state) = fixture();
        let response = get(&state, "/vod/", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body(response).await).unwrap();
        let assets = json["assets"].as_array().unwrap();
        assert_eq!(assets.len(), 2);
        assert_eq!(assets[0]["name"], "bare");
        assert!(assets[0].get("representations").is_none());
        assert_eq!(assets[1]["name"], "demo");
        assert_eq!(assets[1]["manifest"], "/vod/demo/manifest.mpd");
        assert_eq!(assets[1]["duration_secs"], 4.0);
        assert_eq!(assets[1]["representations"][1]["kind"], "audio");

        let response = get(&state, "/healthz", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, b"ok");

        get(&state, "/vod/demo/v0/1.m4s", &[("range", "bytes=0-99")]).await;
        get(&state, "/vod/%2e%2e/x", &[]).await;
        let response = get(&state, "/metrics", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = String::from_utf8(body(response).await).unwrap();
        for line in [
            r#"dashcdn_origin_http_requests_total{route="listing",status="200"} 1"#,
            r#"dashcdn_origin_http_requests_total{route="health",status="200"} 1"#,
            r#"dashcdn_origin_http_requests_total{route="segment",status="206"} 1"#,
            r#"dashcdn_origin_http_requests_total{route="other",status="400"} 1"#,
            r#"dashcdn_origin_http_response_bytes_total{route="segment"} 100"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
