//! The live HTTP surface:
//!
//! | path | answer |
//! | --- | --- |
//! | `/live/` | JSON list of channels and their MPD paths |
//! | `/live/NAME/manifest.mpd` | the dynamic MPD, `Cache-Control: max-age` ≤ half a segment |
//! | `/live/NAME/{rep}/init-{period}.mp4`, `…/init.mp4` | the init segment of that run / the latest |
//! | `/live/NAME/{rep}/{n}.m4s` | a complete segment (`Content-Length`), or the one in progress streamed chunk by chunk with chunked transfer encoding |
//!
//! Admin calls (`Authorization: Bearer <admin_token>`; 401 without it, and always when no
//! token is configured; an unknown channel is 404):
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /_origin/live/NAME/record` | `{"channel", "recording", "from_segment"}` |
//! | `POST /_origin/live/NAME/record/start` | records from the next segment on; 409 if recording |
//! | `POST /_origin/live/NAME/record/stop` | ends the recording where the segment in progress ends and publishes it as `/vod/NAME-<start>/` (the shutdown's writer), answering `{"asset", "manifest", …}` once it is in place; 409 if not recording |
//! | `POST /_origin/live/NAME/record/split` | stop and start at the same segment boundary: two assets, no gap, no overlap |
//!
//! A segment ahead of the live edge is 404 with `no-store`, so no cache keeps the miss
//! after it exists; the very next segment is waited for (at most a segment and a chunk),
//! which absorbs clock skew between the MPD's timeline and the encoder. One that left the
//! window is 410.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::warn;

use super::channel::{Channel, RecordError};
use super::store::Lookup;
use super::{mpd, Channels};
use crate::metrics::Route;

/// The live routes (full paths, `/live/…`), to be merged into the origin's router.
pub fn router<S: Clone + Send + Sync + 'static>(channels: Channels) -> Router<S> {
    Router::new()
        .route("/live", get(list))
        .route("/live/", get(list))
        .route(
            "/live/{name}/manifest.mpd",
            get(|s, p| async { tag(Route::Manifest, manifest(s, p).await) }),
        )
        .route(
            "/live/{name}/{rep}/{file}",
            get(|s, p: Path<(String, String, String)>| async move {
                let route = if p.2.ends_with(".mp4") {
                    Route::Init
                } else {
                    Route::Segment
                };
                tag(route, media(s, p).await)
            }),
        )
        .route("/_origin/live/{name}/record", get(record_status))
        .route("/_origin/live/{name}/record/{action}", post(record_action))
        .with_state(channels)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn admin_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

fn admin_error(status: StatusCode, error: String) -> Response {
    admin_answer(status, serde_json::json!({ "error": error }))
}

/// The channel an admin call names, once its bearer token is right.
fn admin_channel(
    channels: &Channels,
    headers: &HeaderMap,
    name: &str,
) -> Result<Arc<Channel>, Box<Response>> {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let authorized = match (&channels.admin_token, given) {
        (Some(token), Some(given)) => same(given, token.as_bytes()),
        _ => false,
    };
    if !authorized {
        warn!(
            channel = name,
            "live admin call refused: missing or wrong bearer token"
        );
        let mut r = admin_error(
            StatusCode::UNAUTHORIZED,
            "admin calls need Authorization: Bearer <admin_token> (the origin's admin_token / \
             --admin-token; without one they are off)"
                .to_owned(),
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"dashcdn-origin\""),
        );
        return Err(Box::new(r));
    }
    channels.get(name).cloned().ok_or_else(|| {
        Box::new(admin_error(
            StatusCode::NOT_FOUND,
            format!("no live channel {name:?} on this origin (see GET /live/)"),
        ))
    })
}

async fn record_status(
    State(channels): State<Channels>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ch = match admin_channel(&channels, &headers, &name) {
        Ok(ch) => ch,
        Err(r) => return *r,
    };
    let from = ch.store.recording();
    admin_answer(
        StatusCode::OK,
        serde_json::json!({ "channel": name, "recording": from.is_some(), "from_segment": from }),
    )
}

async fn record_action(
    State(channels): State<Channels>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let ch = match admin_channel(&channels, &headers, &name) {
        Ok(ch) => ch,
        Err(r) => return *r,
    };
    let failed = |e: RecordError| {
        let status = match e {
            RecordError::Recording(_) | RecordError::NotRecording => StatusCode::CONFLICT,
            RecordError::NoLibrary | RecordError::Io(_) | RecordError::Lost => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        admin_error(
            status,
            format!("live channel {name:?}: {}", dashcdn_config::chain(&e)),
        )
    };
    match action.as_str() {
        "start" => match ch.start_recording() {
            Ok(from) => admin_answer(
                StatusCode::OK,
                serde_json::json!({ "channel": name, "recording": true, "from_segment": from }),
            ),
            Err(e) => failed(e),
        },
        "stop" | "split" => match ch.stop_recording(action == "split").await {
            Ok(stopped) => {
                let asset = stopped
                    .asset
                    .as_ref()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                let manifest = asset.as_ref().map(|a| format!("/vod/{a}/manifest.mpd"));
                admin_answer(
                    StatusCode::OK,
                    serde_json::json!({
                        "channel": name,
                        "asset": asset,
                        "manifest": manifest,
                        "recording": stopped.next_from.is_some(),
                        "from_segment": stopped.next_from,
                    }),
                )
            }
            Err(e) => failed(e),
        },
        _ => admin_error(
            StatusCode::NOT_FOUND,
            format!("no admin call {action:?}: use start, stop or split"),
        ),
    }
}

/// Labels the response for the origin's metrics (`route="segment"` etc.).
fn tag(route: Route, mut response: Response) -> Response {
    response.extensions_mut().insert(route);
    response
}

fn not_found(cache: &'static str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CACHE_CONTROL, HeaderValue::from_static(cache))],
        "not found\n",
    )
        .into_response()
}

async fn list(State(channels): State<Channels>) -> Response {
    let list: Vec<_> = channels
        .names()
        .into_iter()
        .map(|n| serde_json::json!({ "name": n, "mpd": format!("/live/{n}/manifest.mpd") }))
        .collect();
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        axum::Json(list),
    )
        .into_response()
}

async fn manifest(State(channels): State<Channels>, Path(name): Path<String>) -> Response {
    let Some(ch) = channels.get(&name) else {
        return not_found("no-store");
    };
    let Some((ast, periods)) = ch.store.snapshot() else {
        // A listener input whose publisher has not connected yet.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from_static("1"),
                ),
            ],
            "channel has no media yet\n",
        )
            .into_response();
    };
    let body = mpd::write(&ch.config, ast, &periods, SystemTime::now());
    // An MPD may be at most half a segment stale (issue 14), whole seconds, at least 1.
    let max_age = (ch.config.segment_duration.as_secs() / 2).max(1);
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/dash+xml"),
            ),
            (
                CACHE_CONTROL,
                HeaderValue::from_str(&format!("public, max-age={max_age}"))
                    .expect("ascii header value"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn media(
    State(channels): State<Channels>,
    Path((name, rep, file)): Path<(String, String, String)>,
) -> Response {
    let Some(ch) = channels.get(&name) else {
        return not_found("no-store");
    };
    if !ch.config.ladder.iter().any(|r| r.id == rep) {
        return not_found("no-store");
    }
    if let Some(period) = file.strip_suffix(".mp4") {
        let period = match period {
            "init" => None,
            p => match p.strip_prefix("init-").and_then(|n| n.parse().ok()) {
                Some(n) => Some(n),
                None => return not_found("no-store"),
            },
        };
        return match ch.store.init(&rep, period) {
            Some(init) => complete(init.to_vec().into(), "video/mp4", ch),
            None => not_found("no-store"),
        };
    }
    let Some(number) = file
        .strip_suffix(".m4s")
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return not_found("no-store");
    };
    segment(Arc::clone(ch), rep, number).await
}

/// A whole body with `Content-Length`, cacheable for the time-shift window.
fn complete(body: Bytes, mime: &'static str, ch: &Channel) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(mime)),
            (CONTENT_LENGTH, HeaderValue::from(body.len())),
            (CACHE_CONTROL, cache_control(ch)),
        ],
        body,
    )
        .into_response()
}

fn cache_control(ch: &Channel) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={}", ch.config.window.as_secs()))
        .expect("ascii header value")
}

async fn segment(ch: Arc<Channel>, rep: String, number: u64) -> Response {
    let mut changes = ch.store.subscribe();
    // The next segment starts at most one segment duration from now; a chunk of margin
    // covers encoder jitter (and an edge's prefetch of n+1 issued as n begins).
    let wait = ch.config.segment_duration + ch.config.chunk_duration;
    let (first, done) = match ch.store.lookup(&rep, number, 0) {
        Lookup::Ready { chunks, complete } => (chunks, complete),
        Lookup::Next => {
            // Wait for the encoder to start it, at most one segment duration.
            let started = timeout(wait, async {
                loop {
                    if changes.changed().await.is_err() {
                        return None;
                    }
                    if let Lookup::Ready { chunks, complete } = ch.store.lookup(&rep, number, 0) {
                        return Some((chunks, complete));
                    }
                }
            })
            .await;
            match started {
                Ok(Some(found)) => found,
                _ => return not_found("no-store"),
            }
        }
        Lookup::Future => return not_found("no-store"),
        Lookup::Gone => {
            return (
                StatusCode::GONE,
                [(
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=60"),
                )],
                "gone\n",
            )
                .into_response()
        }
    };
    if done {
        let body: Vec<u8> = first.concat();
        return complete(body.into(), "video/mp4", &ch);
    }
    // In progress: send what exists now, then each chunk as the segmenter files it.
    let cache = cache_control(&ch);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut sent = 0;
        let mut pending = first;
        loop {
            sent += pending.len();
            for c in pending {
                if tx.send(c).await.is_err() {
                    return; // the client went away
                }
            }
            // The encoder produces a chunk per chunk duration; silence for a whole segment
            // means it died, and the restart closes the segment anyway.
            match timeout(wait * 2, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            match ch.store.lookup(&rep, number, sent) {
                Lookup::Ready { chunks, complete } => {
                    if complete {
                        for c in chunks {
                            if tx.send(c).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    pending = chunks;
                }
                // Left the window while being sent: end the body.
                _ => return,
            }
        }
    });
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (CACHE_CONTROL, cache),
        ],
        Body::new(ChunkBody(rx)),
    )
        .into_response()
}

/// A body of unknown length: hyper sends it with chunked transfer encoding, one write
/// per chunk as it arrives.
struct ChunkBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}
