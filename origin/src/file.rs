//! One library file (an MPD, an init or media segment) as an HTTP response.
//!
//! A request makes at most one trip to the blocking pool, which resolves the path, opens
//! the file, evaluates the preconditions and reads the bytes the response needs:
//! `tokio::fs` would make one trip per step. Small files come back whole and are kept in
//! [`crate::small_files`]; larger ones come back decided and read as far as the response
//! needs (see [`crate::body`]).

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::body::{read_exactly, PreparedBody};
use crate::conditional::{decide, Conditions, Decision, Validators};
use crate::library::{MediaPath, ResolveError};
use crate::server::{AppError, AppState};
use crate::small_files::{SmallFile, SMALL_FILE_LIMIT};

const MPD_CONTENT_TYPE: &str = "application/dash+xml";

/// Everything a response for one version of a file carries besides the body, rendered
/// once when the file is opened.
#[derive(Clone, Debug)]
pub(crate) struct FileMeta {
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

/// Answers GET or HEAD (`head`) for `media`, requested as `path`.
pub(crate) async fn serve_file(
    state: AppState,
    media: MediaPath,
    path: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let conditions = Conditions::from_headers(headers, head);
    if let Some(small) = state.small_files().fresh(&media) {
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
            let small = Arc::new(SmallFile::new(meta, bytes));
            state.small_files().remember(media, Arc::clone(&small));
            answer_small(&small, &conditions)
        }
        Loaded::Large(prepared) => prepared.into_response(),
    })
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

/// The blocking half of a media request: resolve, open, then read the whole file if it
/// is small, or decide and read just the bytes the response needs if not.
fn load(state: &AppState, media: &MediaPath, conditions: &Conditions) -> Result<Loaded, LoadError> {
    let library = state.library();
    let (mut file, meta) = library.open_media(media).map_err(LoadError::Resolve)?;
    let (content_type, cache_control) = match media.rep() {
        None => (MPD_CONTENT_TYPE, state.mpd_cache_control().clone()),
        Some(rep) => (
            library.segment_content_type(media.asset(), rep),
            state.segment_cache_control().clone(),
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
        Some((start, len)) => PreparedBody::read(file, start, len).map_err(LoadError::Io)?,
    };
    Ok(Loaded::Large(Prepared {
        decision,
        meta,
        body,
    }))
}

impl IntoResponse for Prepared {
    fn into_response(self) -> Response {
        respond(self.decision, &self.meta, self.body.into_body())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{body, fixture, get, header, send};
    use axum::http::Method;
    use std::fs;

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
}
