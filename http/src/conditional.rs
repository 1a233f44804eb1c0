//! Conditional requests (RFC 9110 §13) and, after them, `Range` (§14): a request's
//! preconditions meet a representation's validators and give the [`Decision`] of what to
//! send.
//!
//! It takes validators and headers, not a file: the origin evaluates it against a file's
//! metadata (in the blocking pool, hence the owned [`Conditions`]), the edge against a
//! cached entry's stored `ETag` and `Last-Modified`. Same request, same validators, same
//! answer.
//!
//! Typed headers from the `headers` crate are used where their semantics are §13's:
//! `If-Match` (strong comparison, `*`), `If-None-Match` (weak comparison, `*`),
//! `If-Modified-Since` and `If-Unmodified-Since` (all three HTTP-date formats of §5.6.7;
//! an invalid date makes the field absent, as §13.1.3/§13.1.4 require). `If-Range` is
//! read here instead: `headers::IfRange` treats a date *later* than `Last-Modified` as
//! matching, while §13.1.5 asks for an exact match ("the validator … exactly matches").
//! `Range` has its own reasons, see [`crate::range`].

use std::time::SystemTime;

pub use headers::ETag;
use headers::{HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfUnmodifiedSince};
use http::header::{IF_RANGE, RANGE};
use http::{HeaderMap, Method};

use crate::range::{self, ByteRange, RangeAsk};

/// What a representation is compared by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Validators {
    /// Its entity tag, strong or weak, if it has one.
    pub etag: Option<ETag>,
    /// Its modification time in whole seconds (HTTP-dates carry no more), if known.
    pub last_modified: Option<SystemTime>,
}

impl Validators {
    /// The validators a stored response carries in its `ETag` and `Last-Modified`.
    pub fn from_headers(headers: &HeaderMap) -> Validators {
        Validators {
            etag: headers.typed_get::<ETag>(),
            last_modified: headers
                .typed_get::<headers::LastModified>()
                .map(SystemTime::from),
        }
    }

    /// `ETag` and `Last-Modified` of a response for this representation.
    pub fn write_to(&self, headers: &mut HeaderMap) {
        if let Some(etag) = &self.etag {
            headers.typed_insert(etag.clone());
        }
        if let Some(modified) = self.last_modified {
            headers.typed_insert(headers::LastModified::from(modified));
        }
    }
}

/// `If-Range`'s validator (§13.1.5).
#[derive(Clone, Debug, PartialEq)]
enum IfRange {
    Tag(ETag),
    Date(SystemTime),
    /// Neither: the Range is not applied, the safe reading of a validator we cannot check.
    Invalid,
}

/// Everything about a request that decides the response, owned so it can move to a
/// blocking thread.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// GET or HEAD: a failed `If-None-Match`/`If-Modified-Since` gives 304, not 412.
    safe: bool,
    /// GET: "GET is the only method for which range handling is defined" (§14.2), so a
    /// HEAD answers as the whole GET would.
    ranged: bool,
    if_match: Option<IfMatch>,
    if_none_match: Option<IfNoneMatch>,
    if_modified_since: Option<IfModifiedSince>,
    if_unmodified_since: Option<IfUnmodifiedSince>,
    if_range: Option<IfRange>,
    range: Option<String>,
}

impl Conditions {
    /// Reads the preconditions and `Range` of a `method` request with `headers`.
    pub fn from_request(method: &Method, headers: &HeaderMap) -> Conditions {
        let if_range = headers.get(IF_RANGE).map(|value| {
            let text = value.to_str().unwrap_or("").trim();
            // §13.1.5: "A valid entity-tag can be distinguished from a valid HTTP-date
            // by examining the first three characters for a DQUOTE."
            if text.starts_with('"') || text.starts_with("W/") {
                text.parse().map_or(IfRange::Invalid, IfRange::Tag)
            } else {
                httpdate::parse_http_date(text).map_or(IfRange::Invalid, IfRange::Date)
            }
        });
        Conditions {
            safe: method == Method::GET || method == Method::HEAD,
            ranged: method == Method::GET,
            if_match: headers.typed_get(),
            if_none_match: headers.typed_get(),
            if_modified_since: headers.typed_get(),
            if_unmodified_since: headers.typed_get(),
            if_range,
            range: headers
                .get(RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }

    /// Whether the request asks for a range (that may or may not be served).
    pub fn has_range(&self) -> bool {
        self.ranged && self.range.is_some()
    }

    /// RFC 9110 §13.2.2, "Precedence of Preconditions", then §14 for the range, for a
    /// representation with validators `v` and `len` bytes (`None`: unknown yet, so any
    /// Range is ignored).
    ///
    /// §13.2.1: a server "MUST ignore the conditional request header fields" when the
    /// response would otherwise be other than 2xx or 412: callers evaluate only what
    /// they would answer 200.
    pub fn evaluate(&self, v: &Validators, len: Option<u64>) -> Decision {
        // Step 1: If-Match, strong comparison (§13.1.1). "*" is true when a current
        // representation exists, and one does if we are asked.
        if let Some(if_match) = &self.if_match {
            let passes = match &v.etag {
                Some(etag) => if_match.precondition_passes(etag),
                None => if_match.is_any(),
            };
            if !passes {
                return Decision::PreconditionFailed;
            }
        } else if let (Some(since), Some(modified)) = (&self.if_unmodified_since, v.last_modified) {
            // Step 2: only without If-Match; ignored without a modification date (§13.1.4).
            if !since.precondition_passes(modified) {
                return Decision::PreconditionFailed;
            }
        }
        // Step 3: If-None-Match, weak comparison (§13.1.2).
        if let Some(if_none_match) = &self.if_none_match {
            let passes = match &v.etag {
                Some(etag) => if_none_match.precondition_passes(etag),
                // Only "*" can match a representation without an entity tag.
                None => *if_none_match != IfNoneMatch::any(),
            };
            if !passes {
                return self.not_modified();
            }
        } else if let (true, Some(since), Some(modified)) =
            (self.safe, &self.if_modified_since, v.last_modified)
        {
            // Step 4: GET/HEAD only, only without If-None-Match (§13.1.3).
            if !since.is_modified(modified) {
                return Decision::NotModified;
            }
        }
        // Step 5: Range, and If-Range deciding whether it still applies.
        let (Some(range), Some(len), true) = (&self.range, len, self.ranged) else {
            return Decision::Full;
        };
        if let Some(if_range) = &self.if_range {
            let still_valid = match (if_range, &v.etag, v.last_modified) {
                // §13.1.5: "the server SHOULD process the Range header field if the
                // If-Range validator … is a strong entity tag that matches the current
                // strong entity tag" (a weak one never does) …
                (IfRange::Tag(tag), Some(etag), _) => {
                    !tag.is_weak() && !etag.is_weak() && tag == etag
                }
                // … "or an HTTP-date that exactly matches the Last-Modified".
                (IfRange::Date(date), _, Some(modified)) => *date == modified,
                _ => false,
            };
            if !still_valid {
                return Decision::Full;
            }
        }
        match range::parse(range, len) {
            RangeAsk::Ignore => Decision::Full,
            RangeAsk::Unsatisfiable => Decision::RangeNotSatisfiable,
            // Even a range covering the whole representation gets a 206: a client that
            // asked for a range checks Content-Range.
            RangeAsk::Single(range) => Decision::Partial(range),
        }
    }

    /// §13.1.2: for GET/HEAD "the origin server MUST respond with either a) the 304
    /// (Not Modified) status code or b) …"; any other method gets 412.
    fn not_modified(&self) -> Decision {
        if self.safe {
            Decision::NotModified
        } else {
            Decision::PreconditionFailed
        }
    }
}

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// 200 with the whole representation.
    Full,
    /// 206 with this range.
    Partial(ByteRange),
    /// 304: the client's copy is current. Carries the validators and `Cache-Control` a
    /// 200 would (§15.4.5), no body.
    NotModified,
    /// 412.
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */len`.
    RangeNotSatisfiable,
}

impl Decision {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Decision::Full => StatusCode::OK,
            Decision::Partial(_) => StatusCode::PARTIAL_CONTENT,
            Decision::NotModified => StatusCode::NOT_MODIFIED,
            Decision::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Decision::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ETAG, LAST_MODIFIED};
    use std::time::{Duration, UNIX_EPOCH};

    const STRONG: &str = "\"v1\"";
    const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const EARLIER: &str = "Sat, 05 Nov 1994 08:49:37 GMT";
    const LATER: &str = "Mon, 07 Nov 1994 08:49:37 GMT";

    fn validators() -> Validators {
        Validators {
            etag: Some(STRONG.parse().unwrap()),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(784111777)),
        }
    }

    fn decide(method: Method, headers: &[(&str, &str)], v: &Validators) -> Decision {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        Conditions::from_request(&method, &map).evaluate(v, Some(1000))
    }

    #[test]
    fn precedence_table() {
        use Decision::*;
        let part = |first, last| Partial(ByteRange { first, last });
        let range = ("range", "bytes=0-1");
        #[rustfmt::skip]
        let cases: &[(&[(&str, &str)], Decision)] = &[
            (&[], Full),
            // If-None-Match: weak comparison, lists, "*".
            (&[("if-none-match", STRONG)], NotModified),
            (&[("if-none-match", "W/\"v1\"")], NotModified),
            (&[("if-none-match", "\"a\", \"v1\"")], NotModified),
            (&[("if-none-match", "\"a\""), ("if-none-match", "\"v1\"")], NotModified),
            (&[("if-none-match", "*")], NotModified),
            (&[("if-none-match", "\"other\"")], Full),
            // If-Modified-Since, with the three HTTP-date formats of §5.6.7.
            (&[("if-modified-since", MODIFIED)], NotModified),
            (&[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")], NotModified),
            (&[("if-modified-since", "Sun Nov  6 08:49:37 1994")], NotModified),
            (&[("if-modified-since", LATER)], NotModified),
            (&[("if-modified-since", EARLIER)], Full),
            (&[("if-modified-since", "garbage")], Full),
            // Step 4 only without If-None-Match.
            (&[("if-none-match", "\"other\""), ("if-modified-since", MODIFIED)], Full),
            // If-Match: strong comparison.
            (&[("if-match", STRONG)], Full),
            (&[("if-match", "*")], Full),
            (&[("if-match", "\"other\"")], PreconditionFailed),
            (&[("if-match", "W/\"v1\"")], PreconditionFailed),
            (&[("if-match", "garbage")], PreconditionFailed),
            // If-Unmodified-Since, only without If-Match.
            (&[("if-unmodified-since", EARLIER)], PreconditionFailed),
            (&[("if-unmodified-since", MODIFIED)], Full),
            (&[("if-unmodified-since", "garbage")], Full),
            (&[("if-match", STRONG), ("if-unmodified-since", EARLIER)], Full),
            // 412 comes before 304.
            (&[("if-match", "\"other\""), ("if-none-match", STRONG)], PreconditionFailed),
            // Range, and If-Range.
            (&[range], part(0, 1)),
            (&[("range", "bytes=5000-")], RangeNotSatisfiable),
            (&[range, ("if-range", STRONG)], part(0, 1)),
            (&[range, ("if-range", MODIFIED)], part(0, 1)),
            (&[range, ("if-range", "\"stale\"")], Full),
            (&[range, ("if-range", "W/\"v1\"")], Full),
            (&[range, ("if-range", EARLIER)], Full),
            // A later date is not the exact match §13.1.5 asks for.
            (&[range, ("if-range", LATER)], Full),
            (&[range, ("if-range", "garbage")], Full),
            // If-Range without Range is ignored.
            (&[("if-range", "\"stale\"")], Full),
            // Preconditions come before the range.
            (&[range, ("if-none-match", STRONG)], NotModified),
            (&[range, ("if-match", "\"other\"")], PreconditionFailed),
        ];
        for (headers, want) in cases {
            assert_eq!(
                decide(Method::GET, headers, &validators()),
                *want,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn head_ignores_range_and_other_methods_get_412() {
        let v = validators();
        let range = [("range", "bytes=0-1")];
        assert_eq!(decide(Method::HEAD, &range, &v), Decision::Full);
        let inm = [("if-none-match", STRONG)];
        assert_eq!(decide(Method::HEAD, &inm, &v), Decision::NotModified);
        assert_eq!(
            decide(Method::DELETE, &inm, &v),
            Decision::PreconditionFailed
        );
        // If-Modified-Since applies to GET and HEAD only.
        let ims = [("if-modified-since", MODIFIED)];
        assert_eq!(decide(Method::DELETE, &ims, &v), Decision::Full);
    }

    #[test]
    fn without_validators() {
        let none = Validators::default();
        for (headers, want) in [
            (&[("if-match", "*")][..], Decision::Full),
            (&[("if-match", STRONG)], Decision::PreconditionFailed),
            (&[("if-none-match", "*")], Decision::NotModified),
            (&[("if-none-match", STRONG)], Decision::Full),
            // No modification date: both date preconditions are ignored.
            (&[("if-modified-since", LATER)], Decision::Full),
            (&[("if-unmodified-since", EARLIER)], Decision::Full),
            (
                &[("range", "bytes=0-1"), ("if-range", STRONG)],
                Decision::Full,
            ),
        ] {
            assert_eq!(decide(Method::GET, headers, &none), want, "{headers:?}");
        }
    }

    #[test]
    fn weak_etag_representation() {
        let weak = Validators {
            etag: Some("W/\"v1\"".parse().unwrap()),
            last_modified: None,
        };
        assert_eq!(
            decide(Method::GET, &[("if-none-match", STRONG)], &weak),
            Decision::NotModified
        );
        assert_eq!(
            decide(Method::GET, &[("if-match", "W/\"v1\"")], &weak),
            Decision::PreconditionFailed
        );
        assert_eq!(
            decide(
                Method::GET,
                &[("range", "bytes=0-1"), ("if-range", "W/\"v1\"")],
                &weak
            ),
            Decision::Full
        );
    }

    #[test]
    fn unknown_length_ignores_range() {
        let mut map = HeaderMap::new();
        map.insert(RANGE, "bytes=0-1".parse().unwrap());
        let c = Conditions::from_request(&Method::GET, &map);
        assert!(c.has_range());
        assert_eq!(c.evaluate(&validators(), None), Decision::Full);
    }

    #[test]
    fn validators_round_trip_through_headers() {
        let mut headers = HeaderMap::new();
        validators().write_to(&mut headers);
        assert_eq!(headers[ETAG], STRONG);
        assert_eq!(headers[LAST_MODIFIED], MODIFIED);
        assert_eq!(Validators::from_headers(&headers), validators());
    }
}
