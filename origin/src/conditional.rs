//! Conditional requests (RFC 9110 §13): a request's preconditions, a file's validators,
//! and the `Decision` they lead to.
//!
//! `decide` is pure, so a file read from disk in the blocking pool and one answered
//! from the small-file cache get the same answer for the same request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue};

use crate::range::{parse_range, RangeSpec};

/// Everything about the request that decides the response, owned so it can move to the
/// blocking pool.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conditions {
    pub(crate) head: bool,
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
    range: Option<String>,
    if_range: Option<String>,
}

impl Conditions {
    pub(crate) fn from_headers(headers: &HeaderMap, head: bool) -> Conditions {
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
pub(crate) struct Validators {
    /// Strong: changes whenever the bytes can have changed (size, mtime or inode).
    /// Packaging writes new files and renames them in, so the inode alone would do;
    /// size and mtime also catch an in-place rewrite.
    pub(crate) etag: String,
    /// Whole seconds, as HTTP-dates carry, so comparisons with request dates are exact.
    pub(crate) last_modified: Option<SystemTime>,
    pub(crate) len: u64,
}

impl Validators {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Validators {
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

/// What to send, decided from the request's conditions and the file's validators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
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
pub(crate) fn decide(c: &Conditions, v: &Validators) -> Decision {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{body, fixture, get, header, send, SEGMENT_LEN};
    use axum::http::{Method, StatusCode};

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
}
