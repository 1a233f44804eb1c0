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
//!
//! Files get a strong `ETag` and `Last-Modified`, conditional requests (RFC 9110 §13) and
//! single byte ranges (RFC 9110 §14). Every response carries CORS headers so dash.js on
//! another origin can fetch and time segments.
//!
//! Performance (this is benchmarked against nginx with wrk):
//! - a media request makes at most one trip to the blocking pool, which resolves the
//!   path, opens the file, evaluates the preconditions and reads the bytes the response
//!   needs: `tokio::fs` would make one trip per step;
//! - small files (MPDs, init segments) are kept in memory for a second (see
//!   [`SmallFiles`]), so the hottest requests skip the pool and the disk entirely;
//! - response bodies up to [`BUFFER_LIMIT`] are read in one go (a media segment is a
//!   few MB, and a range reads only its slice); larger ones are streamed.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{
    ACCEPT_RANGES, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW,
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use hyper::body::{Frame, SizeHint};
use serde::Serialize;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::ServeConfig;
use crate::library::{Library, ListingEntry, MediaPath, PathError, ResolveError};
use crate::metrics::{self, Metrics, Route};

/// Responses up to this size are read into memory in one go; larger ones are streamed
/// in [`STREAM_CHUNK`] pieces so a huge file never sits in memory whole.
pub const BUFFER_LIMIT: u64 = 8 * 1024 * 1024;
const STREAM_CHUNK: usize = 256 * 1024;
/// Files up to this size are read whole and kept in [`SmallFiles`]: MPDs (even long
/// SegmentTimeline ones) and init segments, never media segments.
const SMALL_FILE_LIMIT: u64 = 256 * 1024;
/// Memory the [`SmallFiles`] cache may hold.
const SMALL_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// How long a cached small file is served without looking at the disk again.
const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

const MPD_CONTENT_TYPE: &str = "application/dash+xml";

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
            }),
        })
    }

    pub fn library(&self) -> &Library {
        &self.inner.library
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// The whole HTTP surface, without a socket: tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/vod", get(listing))
        .route("/vod/", get(listing))
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
    fn from_resolve(path: &str, e: ResolveError) -> AppError {
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

async fn serve_file(
    state: AppState,
    media: MediaPath,
    path: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let conditions = Conditions::from_headers(headers, head);
    if let Some(small) = state.inner.small_files.fresh(&media) {
        return Ok(answer_small(&small, &conditions));
    }
    let blocking_state = state.clone();
    let (loaded, media, conditions) = tokio::task::spawn_blocking(move || {
        let loaded = load(&blocking_state, &media, &conditions);
        (loaded, media, conditions)
    })
    .await
    .map_err(|join| AppError::Io {
        path: path.to_owned(),
        source: io::Error::other(join),
    })?;
    let loaded = loaded.map_err(|e| match e {
        LoadError::Resolve(e) => AppError::from_resolve(path, e),
        LoadError::Io(source) => AppError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    Ok(match loaded {
        Loaded::Small { meta, bytes } => {
            let small = Arc::new(SmallFile {
                meta,
                bytes,
                loaded: Instant::now(),
            });
            state.inner.small_files.remember(media, Arc::clone(&small));
            answer_small(&small, &conditions)
        }
        Loaded::Large(prepared) => prepared.into_response(),
    })
}

/// Everything about the request that decides the response, owned so it can move to the
/// blocking pool.
#[derive(Clone, Debug, Default)]
struct Conditions {
    head: bool,
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
    range: Option<String>,
    if_range: Option<String>,
}

impl Conditions {
    fn from_headers(headers: &HeaderMap, head: bool) -> Conditions {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        // RFC 9110 §13.1.3/§13.1.4: an invalid HTTP-date means the field is ignored.
        let date = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
        };
        Conditions {
            head,
            if_match: text(IF_MATCH),
            if_none_match: text(IF_NONE_MATCH),
            if_modified_since: date(IF_MODIFIED_SINCE),
            if_unmodified_since: date(IF_UNMODIFIED_SINCE),
            range: text(RANGE),
            if_range: text(IF_RANGE),
        }
    }
}

/// A file's validators.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Validators {
    /// Strong: changes whenever the bytes can have changed (size, mtime or inode).
    /// Packaging writes new files and renames them in, so the inode alone would do;
    /// size and mtime also catch an in-place rewrite.
    etag: String,
    /// Whole seconds, as HTTP-dates carry, so comparisons with request dates are exact.
    last_modified: Option<SystemTime>,
    len: u64,
}

impl Validators {
    fn of(meta: &std::fs::Metadata) -> Validators {
        let modified = meta.modified().ok();
        let since_epoch = modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let etag = format!(
            "\"{:x}-{:x}-{:x}\"",
            meta.len(),
            since_epoch.as_nanos(),
            crate::library::inode(meta)
        );
        let last_modified =
            modified.map(|_| UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs()));
        Validators {
            etag,
            last_modified,
            len: meta.len(),
        }
    }
}

/// Everything a response for one version of a file carries besides the body, rendered
/// once when the file is opened.
#[derive(Clone, Debug)]
struct FileMeta {
    validators: Validators,
    etag: HeaderValue,
    last_modified: Option<HeaderValue>,
    content_type: &'static str,
    cache_control: HeaderValue,
}

impl FileMeta {
    fn new(
        meta: &std::fs::Metadata,
        content_type: &'static str,
        cache_control: HeaderValue,
    ) -> FileMeta {
        let validators = Validators::of(meta);
        FileMeta {
            etag: HeaderValue::try_from(validators.etag.as_str())
                .expect("hex digits and quotes are a valid header value"),
            last_modified: validators
                .last_modified
                .and_then(|m| HeaderValue::try_from(httpdate::fmt_http_date(m)).ok()),
            validators,
            content_type,
            cache_control,
        }
    }
}

/// What to send, decided from the request's conditions and the file's validators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Full,
    /// Inclusive byte range, like Content-Range.
    Partial {
        first: u64,
        last: u64,
    },
    NotModified,
    PreconditionFailed,
    RangeNotSatisfiable,
}

/// RFC 9110 §13.2.2, "Precedence of Preconditions", then §14 for Range.
fn decide(c: &Conditions, v: &Validators) -> Decision {
    // 1. If-Match: "If none of the entity tags match, or if "*" is given and no current
    //    representation exists, the server MUST NOT perform the requested method"
    //    (strong comparison, §13.1.1).
    if let Some(if_match) = &c.if_match {
        if !etag_list_matches(if_match, &v.etag, Comparison::Strong) {
            return Decision::PreconditionFailed;
        }
    } else if let Some(since) = c.if_unmodified_since {
        // 2. If-Unmodified-Since, only when If-Match is absent.
        if v.last_modified.is_some_and(|m| m > since) {
            return Decision::PreconditionFailed;
        }
    }
    // 3. If-None-Match (weak comparison, §13.1.2): for GET/HEAD a match is 304.
    if let Some(if_none_match) = &c.if_none_match {
        if etag_list_matches(if_none_match, &v.etag, Comparison::Weak) {
            return Decision::NotModified;
        }
    } else if let Some(since) = c.if_modified_since {
        // 4. If-Modified-Since, only when If-None-Match is absent.
        if v.last_modified.is_some_and(|m| m <= since) {
            return Decision::NotModified;
        }
    }
    // 5. Range. §14.2: "GET is the only method for which range handling is defined", so
    //    HEAD answers as the full GET would.
    let Some(range) = c.range.as_deref().filter(|_| !c.head) else {
        return Decision::Full;
    };
    // §13.1.5: If-Range applies the Range only if the validator still matches; a date
    // must match Last-Modified exactly, an entity-tag strongly.
    if let Some(if_range) = &c.if_range {
        let if_range = if_range.trim();
        let still_valid = if if_range.starts_with('"') || if_range.starts_with("W/") {
            !if_range.starts_with("W/") && if_range == v.etag
        } else {
            httpdate::parse_http_date(if_range)
                .ok()
                .is_some_and(|date| v.last_modified == Some(date))
        };
        if !still_valid {
            return Decision::Full;
        }
    }
    match parse_range(range, v.len) {
        RangeSpec::Ignore => Decision::Full,
        RangeSpec::Unsatisfiable => Decision::RangeNotSatisfiable,
        // Even a range covering the whole file gets a 206: clients that asked for a
        // range check Content-Range.
        RangeSpec::Single { first, last } => Decision::Partial { first, last },
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether a `#entity-tag` list (or `*`) matches `current`, a strong tag.
fn etag_list_matches(list: &str, current: &str, comparison: Comparison) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        // entity-tag = [ weak ] DQUOTE *etagc DQUOTE; etagc excludes DQUOTE, so the tag
        // ends at the next quote. A malformed list matches nothing from there on.
        if !rest.starts_with('"') {
            return false;
        }
        let Some(end) = rest[1..].find('"') else {
            return false;
        };
        let tag = &rest[..end + 2];
        if tag == current && !(weak && comparison == Comparison::Strong) {
            return true;
        }
        rest = &rest[end + 2..];
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Not a single byte range we understand: serve the whole representation, which
    /// §14.2 allows ("A server MAY ignore the Range header field"). Multi-range requests
    /// land here too; players never send them.
    Ignore,
    Unsatisfiable,
    Single {
        first: u64,
        last: u64,
    },
}

/// Parses `Range: bytes=first-last | first- | -suffix` against a representation of `len`.
fn parse_range(header: &str, len: u64) -> RangeSpec {
    let header = header.trim();
    // §14.1: range units are case-insensitive.
    let Some(unit) = header.get(..6) else {
        return RangeSpec::Ignore;
    };
    if !unit.eq_ignore_ascii_case("bytes=") {
        return RangeSpec::Ignore;
    }
    let mut specs = header[6..]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeSpec::Ignore;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // suffix-range: the last N bytes.
        let Some(suffix) = parse_digits(last) else {
            return RangeSpec::Ignore;
        };
        if suffix == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Single {
            first: len - suffix.min(len),
            last: len - 1,
        };
    }
    let Some(first) = parse_digits(first) else {
        return RangeSpec::Ignore;
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match parse_digits(last) {
            Some(last) if last >= first => last,
            _ => return RangeSpec::Ignore,
        }
    };
    // §14.1.1: satisfiable iff first-pos < length.
    if first >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Single {
        first,
        last: last.min(len - 1),
    }
}

/// 1*DIGIT, saturating: a position beyond u64 is as unsatisfiable as any past the end.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

enum LoadError {
    Resolve(ResolveError),
    Io(io::Error),
}

/// What the blocking half hands back.
enum Loaded {
    /// A whole file of at most [`SMALL_FILE_LIMIT`] bytes, to cache and answer from.
    Small { meta: FileMeta, bytes: Bytes },
    /// A larger file, already decided and read as far as the response needs.
    Large(Prepared),
}

/// The response to a request for a large file, minus the headers every response gets.
struct Prepared {
    decision: Decision,
    meta: FileMeta,
    body: PreparedBody,
}

enum PreparedBody {
    Empty,
    Bytes(Bytes),
    /// Positioned at the first byte to send; `len` bytes to go.
    Stream {
        file: std::fs::File,
        len: u64,
    },
}

/// The blocking half of a media request: resolve, open, then read the whole file if it
/// is small, or decide and read just the bytes the response needs if not.
fn load(state: &AppState, media: &MediaPath, conditions: &Conditions) -> Result<Loaded, LoadError> {
    let library = state.library();
    let (mut file, meta) = library.open_media(media).map_err(LoadError::Resolve)?;
    let (content_type, cache_control) = match media.rep() {
        None => (MPD_CONTENT_TYPE, state.inner.mpd_cache_control.clone()),
        Some(rep) => (
            library.segment_content_type(media.asset(), rep),
            state.inner.segment_cache_control.clone(),
        ),
    };
    let meta = FileMeta::new(&meta, content_type, cache_control);
    let len = meta.validators.len;
    if len <= SMALL_FILE_LIMIT {
        let bytes = read_exactly(&mut file, len).map_err(LoadError::Io)?;
        return Ok(Loaded::Small { meta, bytes });
    }
    let decision = decide(conditions, &meta.validators);
    let span = match decision {
        _ if conditions.head => None,
        Decision::Full => Some((0, len)),
        Decision::Partial { first, last } => Some((first, last - first + 1)),
        _ => None,
    };
    let body = match span {
        None => PreparedBody::Empty,
        Some((start, len)) => {
            file.seek(SeekFrom::Start(start)).map_err(LoadError::Io)?;
            if len <= BUFFER_LIMIT {
                PreparedBody::Bytes(read_exactly(&mut file, len).map_err(LoadError::Io)?)
            } else {
                PreparedBody::Stream { file, len }
            }
        }
    };
    Ok(Loaded::Large(Prepared {
        decision,
        meta,
        body,
    }))
}

/// Reads `len` bytes from the current position.
fn read_exactly(file: &mut std::fs::File, len: u64) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        // Truncated while we read it: promising Content-Length and sending less would
        // leave the client hanging.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank to {} bytes while being read", buf.len()),
        ));
    }
    Ok(Bytes::from(buf))
}

impl IntoResponse for Prepared {
    fn into_response(self) -> Response {
        let body = match self.body {
            PreparedBody::Empty => Body::empty(),
            PreparedBody::Bytes(bytes) => Body::from(bytes),
            PreparedBody::Stream { file, len } => {
                Body::new(FileBody::new(tokio::fs::File::from_std(file), len))
            }
        };
        respond(self.decision, &self.meta, body)
    }
}

/// Answers a request for a small file from memory.
fn answer_small(small: &SmallFile, conditions: &Conditions) -> Response {
    let decision = decide(conditions, &small.meta.validators);
    let body = match decision {
        _ if conditions.head => Body::empty(),
        Decision::Full => Body::from(small.bytes.clone()),
        Decision::Partial { first, last } => {
            Body::from(small.bytes.slice(first as usize..=last as usize))
        }
        _ => Body::empty(),
    };
    respond(decision, &small.meta, body)
}

/// The status line and headers for `decision`, around `body` (already empty where the
/// decision or a HEAD request calls for no body).
fn respond(decision: Decision, meta: &FileMeta, body: Body) -> Response {
    let len = meta.validators.len;
    let (status, content_length, content_range) = match decision {
        Decision::Full => (StatusCode::OK, Some(len), None),
        Decision::Partial { first, last } => (
            StatusCode::PARTIAL_CONTENT,
            Some(last - first + 1),
            Some(format!("bytes {first}-{last}/{len}")),
        ),
        Decision::NotModified => (StatusCode::NOT_MODIFIED, None, None),
        Decision::PreconditionFailed => {
            return (StatusCode::PRECONDITION_FAILED, Body::empty()).into_response()
        }
        // §15.5.17: "a server generating a 416 response to a byte-range request SHOULD
        // generate a Content-Range header field specifying the current length".
        Decision::RangeNotSatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Some(0),
            Some(format!("bytes */{len}")),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // §15.4.5: a 304 carries the validators and Cache-Control a 200 would have.
    headers.insert(ETAG, meta.etag.clone());
    if let Some(date) = &meta.last_modified {
        headers.insert(LAST_MODIFIED, date.clone());
    }
    headers.insert(CACHE_CONTROL, meta.cache_control.clone());
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status != StatusCode::NOT_MODIFIED && status != StatusCode::RANGE_NOT_SATISFIABLE {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(meta.content_type));
    }
    if let Some(len) = content_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(range) = content_range.and_then(|r| HeaderValue::try_from(r).ok()) {
        headers.insert(CONTENT_RANGE, range);
    }
    response
}

// ---------------------------------------------------------------------------------------
// Small-file cache

/// A whole small file (an MPD, an init segment) kept in memory.
struct SmallFile {
    meta: FileMeta,
    bytes: Bytes,
    /// When it was read; [`REVALIDATE_AFTER`] later the next request reads it again.
    loaded: Instant,
}

/// Recently read small files, so the requests every player makes most often (the MPD,
/// init segments) are answered without a trip to the blocking pool and four syscalls.
///
/// Entries are trusted for [`REVALIDATE_AFTER`], like nginx's `open_file_cache_valid`:
/// a re-packaged or deleted asset is noticed within that, well inside the MPD's own
/// max-age. Only paths that resolved inside the library are ever inserted, and at most
/// [`SMALL_CACHE_BYTES`] are held: when full, it starts over.
#[derive(Default)]
struct SmallFiles {
    inner: RwLock<SmallFilesInner>,
}

#[derive(Default)]
struct SmallFilesInner {
    files: HashMap<MediaPath, Arc<SmallFile>>,
    bytes: usize,
}

impl SmallFiles {
    fn fresh(&self, media: &MediaPath) -> Option<Arc<SmallFile>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let small = inner.files.get(media)?;
        (small.loaded.elapsed() < REVALIDATE_AFTER).then(|| Arc::clone(small))
    }

    fn remember(&self, media: MediaPath, small: Arc<SmallFile>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let len = small.bytes.len();
        if inner.bytes + len > SMALL_CACHE_BYTES {
            inner.files.clear();
            inner.bytes = 0;
        }
        inner.bytes += len;
        if let Some(old) = inner.files.insert(media, small) {
            inner.bytes -= old.bytes.len();
        }
    }
}

/// A response body read from a file in [`STREAM_CHUNK`] pieces, for responses over
/// [`BUFFER_LIMIT`].
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    /// Kept across `Pending` polls so a read in flight is not restarted.
    buf: Vec<u8>,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: Vec::new(),
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(STREAM_CHUNK as u64) as usize;
        if this.buf.len() != want {
            this.buf = vec![0; want];
        }
        let mut read_buf = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ))));
                }
                this.remaining -= n as u64;
                let mut chunk = std::mem::take(&mut this.buf);
                chunk.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::{AssetSummary, RepresentationSummary, KIND_AUDIO, KIND_VIDEO};
    use http_body_util::BodyExt;
    use std::fs;
    use tower::ServiceExt;

    const SEGMENT_LEN: usize = 1000;

    fn segment_bytes() -> Vec<u8> {
        (0..SEGMENT_LEN).map(|i| (i % 251) as u8).collect()
    }

    /// A library with asset `demo` (video `v0`, audio `snd`, asset.json) and asset
    /// `bare` (no asset.json, reps `v0` and `audio`).
    fn fixture() -> (tempfile::TempDir, AppState) {
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

    async fn send(
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

    async fn get(state: &AppState, uri: &str, headers: &[(&str, &str)]) -> Response {
        send(state, Method::GET, uri, headers).await
    }

    async fn body(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

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
    async fn head_has_length_and_no_body() {
        let (_dir, state) = fixture();
        let response = send(
            &state,
            Method::HEAD,
            "/vod/demo/v0/1.m4s",
            &[("range", "bytes=0-9")],
        )
        .await;
        // Range is defined for GET only (RFC 9110 §14.2).
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-length"), SEGMENT_LEN.to_string());
        assert!(body(response).await.is_empty());
    }

    #[tokio::test]
    async fn ranges() {
        let (_dir, state) = fixture();
        let all = segment_bytes();
        let uri = "/vod/demo/v0/1.m4s";
        for (range, first, last) in [
            ("bytes=10-19", 10, 19),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=-5000", 0, 999),
            ("bytes=500-99999", 500, 999),
            ("BYTES=0-0", 0, 0),
        ] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                header(&response, "content-range"),
                format!("bytes {first}-{last}/1000"),
                "{range}"
            );
            assert_eq!(
                header(&response, "content-length"),
                (last - first + 1).to_string()
            );
            assert_eq!(body(response).await, &all[first..=last], "{range}");
        }
        for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(
                response.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{range}"
            );
            assert_eq!(header(&response, "content-range"), "bytes */1000");
        }
        // Ignored: multiple ranges, other units, nonsense.
        for range in ["bytes=0-1,5-6", "items=0-1", "bytes=9-1", "bytes=x-"] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(response.status(), StatusCode::OK, "{range}");
            assert_eq!(body(response).await.len(), SEGMENT_LEN);
        }
    }

    #[tokio::test]
    async fn conditional_requests() {
        let (_dir, state) = fixture();
        let uri = "/vod/demo/v0/1.m4s";
        let first = get(&state, uri, &[]).await;
        let etag = header(&first, "etag").to_owned();
        let modified = header(&first, "last-modified").to_owned();
        let weak = format!("W/{etag}");
        let other = "\"nope\"";
        let list = format!("\"a\", {etag}");
        let past = "Sun, 06 Nov 1994 08:49:37 GMT";

        let cases: &[(&[(&str, &str)], StatusCode)] = &[
            (&[("if-none-match", &etag)], StatusCode::NOT_MODIFIED),
            (&[("if-none-match", &weak)], StatusCode::NOT_MODIFIED),
            (&[("if-none-match", &list)], StatusCode::NOT_MODIFIED),
            (&[("if-none-match", "*")], StatusCode::NOT_MODIFIED),
            (&[("if-none-match", other)], StatusCode::OK),
            (
                &[("if-modified-since", &modified)],
                StatusCode::NOT_MODIFIED,
            ),
            (&[("if-modified-since", past)], StatusCode::OK),
            (&[("if-modified-since", "garbage")], StatusCode::OK),
            // If-None-Match wins over If-Modified-Since.
            (
                &[("if-none-match", other), ("if-modified-since", &modified)],
                StatusCode::OK,
            ),
            (&[("if-match", &etag)], StatusCode::OK),
            (&[("if-match", "*")], StatusCode::OK),
            (&[("if-match", other)], StatusCode::PRECONDITION_FAILED),
            // If-Match uses the strong comparison.
            (&[("if-match", &weak)], StatusCode::PRECONDITION_FAILED),
            (
                &[("if-unmodified-since", past)],
                StatusCode::PRECONDITION_FAILED,
            ),
            (&[("if-unmodified-since", &modified)], StatusCode::OK),
            // If-Match is evaluated first and, when present, If-Unmodified-Since is not.
            (
                &[("if-match", &etag), ("if-unmodified-since", past)],
                StatusCode::OK,
            ),
            // 412 beats 304.
            (
                &[("if-match", other), ("if-none-match", &etag)],
                StatusCode::PRECONDITION_FAILED,
            ),
            (
                &[("if-range", &etag), ("range", "bytes=0-1")],
                StatusCode::PARTIAL_CONTENT,
            ),
            (
                &[("if-range", &modified), ("range", "bytes=0-1")],
                StatusCode::PARTIAL_CONTENT,
            ),
            (
                &[("if-range", other), ("range", "bytes=0-1")],
                StatusCode::OK,
            ),
            (
                &[("if-range", &weak), ("range", "bytes=0-1")],
                StatusCode::OK,
            ),
            (
                &[("if-range", past), ("range", "bytes=0-1")],
                StatusCode::OK,
            ),
        ];
        for (headers, status) in cases {
            let response = get(&state, uri, headers).await;
            assert_eq!(response.status(), *status, "{headers:?}");
            if *status == StatusCode::NOT_MODIFIED {
                assert_eq!(header(&response, "etag"), etag);
                assert!(response.headers().contains_key("cache-control"));
                assert!(body(response).await.is_empty());
            }
        }
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
            "/",
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

    #[tokio::test]
    async fn large_files_are_streamed() {
        let (dir, state) = fixture();
        let len = BUFFER_LIMIT as usize + 300_000;
        let big: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        fs::write(dir.path().join("demo/v0/2.m4s"), &big).unwrap();

        let response = get(&state, "/vod/demo/v0/2.m4s", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-length"), len.to_string());
        assert_eq!(response.body().size_hint().exact(), Some(len as u64));
        assert!(body(response).await == big);

        let range = format!("bytes=100-{}", len - 2);
        let response = get(&state, "/vod/demo/v0/2.m4s", &[("range", &range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert!(body(response).await == big[100..len - 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn small_files_are_cached_for_a_second() {
        let (dir, state) = fixture();
        let uri = "/vod/demo/manifest.mpd";
        assert_eq!(body(get(&state, uri, &[]).await).await, b"<MPD/>");
        fs::write(dir.path().join("demo/manifest.mpd"), "<MPD v2/>").unwrap();
        assert_eq!(body(get(&state, uri, &[]).await).await, b"<MPD/>");
        // Ranges and conditionals are answered from the cached copy too.
        let response = get(&state, uri, &[("range", "bytes=1-3")]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body(response).await, b"MPD");

        tokio::time::advance(REVALIDATE_AFTER).await;
        assert_eq!(body(get(&state, uri, &[]).await).await, b"<MPD v2/>");
        fs::remove_file(dir.path().join("demo/manifest.mpd")).unwrap();
        tokio::time::advance(REVALIDATE_AFTER).await;
        assert_eq!(get(&state, uri, &[]).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn large_files_read_only_the_range() {
        let (dir, state) = fixture();
        let len = SMALL_FILE_LIMIT as usize * 3;
        let big: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
        fs::write(dir.path().join("demo/v0/3.m4s"), &big).unwrap();
        let uri = "/vod/demo/v0/3.m4s";

        let response = get(&state, uri, &[("range", "bytes=-10")]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body(response).await, &big[len - 10..]);

        let response = send(&state, Method::HEAD, uri, &[]).await;
        assert_eq!(header(&response, "content-length"), len.to_string());
        let etag = header(&response, "etag").to_owned();
        assert!(body(response).await.is_empty());

        let response = get(&state, uri, &[("if-none-match", &etag)]).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        let response = get(&state, uri, &[("range", &format!("bytes={len}-"))]).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&response, "content-range"), format!("bytes */{len}"));
        assert!(body(get(&state, uri, &[]).await).await == big);
    }

    #[test]
    fn etag_lists() {
        let tag = "\"abc\"";
        assert!(etag_list_matches("\"abc\"", tag, Comparison::Strong));
        assert!(etag_list_matches(
            " \"x\" ,\t\"abc\"",
            tag,
            Comparison::Strong
        ));
        assert!(etag_list_matches("W/\"abc\"", tag, Comparison::Weak));
        assert!(!etag_list_matches("W/\"abc\"", tag, Comparison::Strong));
        assert!(!etag_list_matches("\"ab\"", tag, Comparison::Weak));
        assert!(!etag_list_matches("abc", tag, Comparison::Weak));
        assert!(!etag_list_matches("\"abc", tag, Comparison::Weak));
        assert!(!etag_list_matches("", tag, Comparison::Weak));
    }

    #[test]
    fn range_edge_cases() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes= 1-2 ", 10), Single { first: 1, last: 2 });
        assert_eq!(parse_range("bytes=1-2,", 10), Single { first: 1, last: 2 });
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            Single { first: 0, last: 9 }
        );
        assert_eq!(parse_range("bytes=", 10), Ignore);
        assert_eq!(parse_range("bytes=-", 10), Ignore);
        assert_eq!(parse_range("byte", 10), Ignore);
    }
}
