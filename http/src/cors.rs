//! CORS (the Fetch standard's CORS protocol) for media served to dash.js on another
//! origin: every response may be read by any page, and preflights are answered on any
//! path without reaching the handler or the upstream.
//!
//! Everything served is public (media, MPDs, the watch page), so `*` is the right
//! origin: no credentials are ever accepted, which `*` also enforces in the browser.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// The methods both servers answer.
pub const METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
/// The request headers a player may send cross-origin: Range, the conditional ones, and
/// the CORS-safelisted ones. Answering with the whole set costs nothing and covers
/// whatever subset a preflight asks for.
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, \
     Accept, Accept-Language, Content-Language, Cache-Control",
);
/// Response headers scripts may read: dash.js uses Content-Length and Date for its
/// throughput and clock estimates, Content-Range for partial requests.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "Content-Length, Content-Range, Content-Type, Date, ETag, Last-Modified, Accept-Ranges, Age",
);
/// Resource Timing: without it the browser hides transfer timings from dash.js.
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");
/// How long a browser may reuse a preflight answer: a day, the most Firefox honours.
const MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// Adds the headers every response carries so that any page may read it and time it.
pub fn decorate(headers: &mut HeaderMap) {
    let any = HeaderValue::from_static("*");
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, any.clone());
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    headers.insert(TIMING_ALLOW_ORIGIN, any);
}

/// The answer to `OPTIONS` on any path: 204 with what a preflight needs, decorated like
/// every other response.
pub fn preflight<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(ALLOW, METHODS);
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, METHODS);
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    headers.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    decorate(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_allows_range_from_anywhere() {
        let response: Response<()> = preflight();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert!(h[ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap()
                .contains(m));
        }
        let allowed = h[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for name in ["Range", "If-Range", "If-None-Match"] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "86400");
    }

    #[test]
    fn decorated_responses_expose_what_dashjs_reads() {
        let mut h = HeaderMap::new();
        decorate(&mut h);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[TIMING_ALLOW_ORIGIN], "*");
        let expose = h[ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
        for name in ["Content-Length", "Content-Range", "Date", "Age"] {
            assert!(expose.contains(name), "{expose}");
        }
    }
}
