//! One library file (an MPD, an init or media segment) as an HTTP response.
//!
//! A request makes at most one trip to the blocking pool, which resolves the path, opens
//! the file, evaluates the preconditions and reads the bytes the response needs:
//! `tokio::fs` would make one trip per step. Small files come back whole and are kept in
//! [`small`] for a second; larger ones come back decided and read as far as the response
//! needs ([`body`]). What to send (200/206/304/412/416) is decided by
//! `dashcdn_http::conditional`, the same code the edge answers from its cache with.

mod body;
mod small;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dashcdn_http::conditional::{Conditions, Decision, Validators};
use dashcdn_http::range::unsatisfied_content_range;

use self::body::{read_exactly, Budget, PreparedBody, BUFFERED_BYTES_BUDGET};
use self::small::{SmallFile, SmallFiles, SMALL_FILE_LIMIT};
use crate::library::{inode, Library, MediaPath, ResolveError};

const MPD_CONTENT_TYPE: &str = "application/dash+xml";

/// The library and how its files are answered. Cheap to clone: the blocking half of a
/// request takes a clone along.
#[derive(Clone)]
pub(crate) struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    library: Library,
    small: SmallFiles,
    /// Bytes of buffered bodies being sent; beyond it, large responses stream.
    budget: Arc<Budget>,
    /// Rendered once from the config: they are the same bytes on every response.
    mpd_cache_control: HeaderValue,
    segment_cache_control: HeaderValue,
}

/// Why a file could not be answered.
#[derive(Debug)]
pub(crate) enum FileError {
    Resolve(ResolveError),
    Io(io::Error),
}

impl Files {
    pub(crate) fn new(library: Library, mpd_max_age_secs: u32, segment_max_age_secs: u32) -> Files {
        let mpd_cache_control =
            HeaderValue::try_from(format!("public, max-age={mpd_max_age_secs}"))
                .expect("digits are a valid header value");
        let segment_cache_control =
            HeaderValue::try_from(format!("public, max-age={segment_max_age_secs}, immutable"))
                .expect("digits are a valid header value");
        Files {
            inner: Arc::new(Inner {
                library,
                small: SmallFiles::default(),
                budget: Budget::new(BUFFERED_BYTES_BUDGET),
                mpd_cache_control,
                segment_cache_control,
            }),
        }
    }

    pub(crate) fn library(&self) -> &Library {
        &self.inner.library
    }

    /// Answers GET or HEAD (`head`) of `media` under `conditions`.
    pub(crate) async fn serve(
        &self,
        media: MediaPath,
        conditions: Conditions,
        head: bool,
    ) -> Result<Response, FileError> {
        if let Some(small) = self.inner.small.fresh(&media) {
            return Ok(answer_small(&small, &conditions, head));
        }
        let files = self.clone();
        let (loaded, media, conditions) = tokio::task::spawn_blocking(move || {
            let loaded = files.load(&media, &conditions, head);
            (loaded, media, conditions)
        })
        .await
        .map_err(|join| FileError::Io(io::Error::other(join)))?;
        Ok(match loaded? {
            Loaded::Small { meta, bytes } => {
                let small = Arc::new(SmallFile::new(meta, bytes));
                self.inner.small.remember(media, Arc::clone(&small));
                answer_small(&small, &conditions, head)
            }
            Loaded::Large(prepared) => prepared.into_response(),
        })
    }

    /// The blocking half of a media request: resolve, open, then read the whole file if
    /// it is small, or decide and read just the bytes the response needs if not.
    fn load(
        &self,
        media: &MediaPath,
        conditions: &Conditions,
        head: bool,
    ) -> Result<Loaded, FileError> {
        let library = self.library();
        let (mut file, meta) = library.open_media(media).map_err(FileError::Resolve)?;
        let (content_type, cache_control) = match media.rep() {
            None => (MPD_CONTENT_TYPE, self.inner.mpd_cache_control.clone()),
            Some(rep) => (
                library.segment_content_type(media.asset(), rep),
                self.inner.segment_cache_control.clone(),
            ),
        };
        let meta = FileMeta::new(&meta, content_type, cache_control);
        let len = meta.len;
        if len <= SMALL_FILE_LIMIT {
            let bytes = read_exactly(&mut file, len).map_err(FileError::Io)?;
            return Ok(Loaded::Small { meta, bytes });
        }
        let decision = conditions.evaluate(&meta.validators, Some(len));
        let span = match decision {
            _ if head => None,
            Decision::Full => Some((0, len)),
            Decision::Partial(range) => Some((range.first, range.len())),
            _ => None,
        };
        let body = match span {
            None => PreparedBody::Empty,
            Some((start, len)) => {
                PreparedBody::read(file, start, len, &self.inner.budget).map_err(FileError::Io)?
            }
        };
        Ok(Loaded::Large(Prepared {
            decision,
            meta,
            body,
        }))
    }
}

/// Everything a response for one version of a file carries besides the body, rendered
/// once when the file is opened.
#[derive(Clone, Debug)]
struct FileMeta {
    validators: Validators,
    len: u64,
    content_type: &'static str,
    cache_control: HeaderValue,
}

impl FileMeta {
    fn new(
        meta: &std::fs::Metadata,
        content_type: &'static str,
        cache_control: HeaderValue,
    ) -> FileMeta {
        FileMeta {
            validators: validators(meta),
            len: meta.len(),
            content_type,
            cache_control,
        }
    }
}

/// A file's validators.
///
/// The entity tag is strong and changes whenever the bytes can have changed (size,
/// mtime or inode): packaging writes new files and renames them in, so the inode alone
/// would do; size and mtime also catch an in-place rewrite. `Last-Modified` is in whole
/// seconds, as HTTP-dates carry, so comparisons with request dates are exact.
fn validators(meta: &std::fs::Metadata) -> Validators {
    let modified = meta.modified().ok();
    let since_epoch = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!(
        "\"{:x}-{:x}-{:x}\"",
        meta.len(),
        since_epoch.as_nanos(),
        inode(meta)
    );
    Validators {
        etag: Some(
            etag.parse()
                .expect("hex digits in quotes are an entity tag"),
        ),
        last_modified: modified
            .map(|_| SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())),
    }
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

impl IntoResponse for Prepared {
    fn into_response(self) -> Response {
        respond(self.decision, &self.meta, self.body.into_body())
    }
}

/// Answers a request for a small file from memory.
fn answer_small(small: &SmallFile, conditions: &Conditions, head: bool) -> Response {
    let decision = conditions.evaluate(&small.meta.validators, Some(small.meta.len));
    let body = match decision {
        _ if head => Body::empty(),
        Decision::Full => Body::from(small.bytes.clone()),
        Decision::Partial(range) => Body::from(
            small
                .bytes
                .slice(range.first as usize..=range.last as usize),
        ),
        _ => Body::empty(),
    };
    respond(decision, &small.meta, body)
}

/// The status line and headers for `decision`, around `body` (already empty where the
/// decision or a HEAD request calls for no body).
fn respond(decision: Decision, meta: &FileMeta, body: Body) -> Response {
    let len = meta.len;
    let (content_length, content_range) = match decision {
        Decision::Full => (Some(len), None),
        Decision::Partial(range) => (Some(range.len()), Some(range.content_range(len))),
        Decision::NotModified => (None, None),
        Decision::PreconditionFailed => {
            return (StatusCode::PRECONDITION_FAILED, Body::empty()).into_response()
        }
        // §15.5.17: "a server generating a 416 response to a byte-range request SHOULD
        // generate a Content-Range header field specifying the current length".
        Decision::RangeNotSatisfiable => (Some(0), Some(unsatisfied_content_range(len))),
    };
    let status = decision.status();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // §15.4.5: a 304 carries the validators and Cache-Control a 200 would have.
    meta.validators.write_to(headers);
    headers.insert(CACHE_CONTROL, meta.cache_control.clone());
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status != StatusCode::NOT_MODIFIED && status != StatusCode::RANGE_NOT_SATISFIABLE {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(meta.content_type));
    }
    if let Some(len) = content_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(range) = content_range {
        headers.insert(CONTENT_RANGE, range);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::small::SMALL_FILE_LIMIT;
    use crate::testing::{body, fixture, get, header, segment_bytes, send, SEGMENT_LEN};
    use axum::http::{Method, StatusCode};
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

    /// The decisions themselves are tested table-driven in `dashcdn_http`; this checks
    /// that the origin wires them into responses (headers, bodies) for a real file.
    #[tokio::test]
    async fn ranges_and_preconditions_on_a_file() {
        let (_dir, state) = fixture();
        let all = segment_bytes();
        let uri = "/vod/demo/v0/1.m4s";
        let first = get(&state, uri, &[]).await;
        let etag = header(&first, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let modified = header(&first, "last-modified").to_owned();
        httpdate::parse_http_date(&modified).unwrap();

        for (range, first, last) in [
            ("bytes=10-19", 10, 19),
            ("Bytes=-5", 995, 999),
            ("bytes=0-9,", 0, 9),
        ] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                header(&response, "content-range"),
                format!("bytes {first}-{last}/1000")
            );
            assert_eq!(
                header(&response, "content-length"),
                (last - first + 1).to_string()
            );
            assert_eq!(body(response).await, &all[first..=last], "{range}");
        }
        let response = get(&state, uri, &[("range", "bytes=1000-")]).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&response, "content-range"), "bytes */1000");
        let response = get(&state, uri, &[("range", "bytes=0-1,5-6")]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await.len(), SEGMENT_LEN);

        for (name, value, status) in [
            ("if-none-match", etag.as_str(), StatusCode::NOT_MODIFIED),
            (
                "if-modified-since",
                modified.as_str(),
                StatusCode::NOT_MODIFIED,
            ),
            ("if-match", "\"other\"", StatusCode::PRECONDITION_FAILED),
            (
                "if-unmodified-since",
                "Sun, 06 Nov 1994 08:49:37 GMT",
                StatusCode::PRECONDITION_FAILED,
            ),
        ] {
            let response = get(&state, uri, &[(name, value)]).await;
            assert_eq!(response.status(), status, "{name}: {value}");
            if status == StatusCode::NOT_MODIFIED {
                assert_eq!(header(&response, "etag"), etag);
                assert!(response.headers().contains_key("cache-control"));
            }
            assert!(body(response).await.is_empty());
        }
    }
}
