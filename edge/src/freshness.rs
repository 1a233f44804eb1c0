//! HTTP caching semantics for a shared cache: RFC 9111 (storability, freshness, age)
//! and RFC 5861 (`stale-while-revalidate`, `stale-if-error`).
//!
//! Why not the `http-cache-semantics` crate: it implements RFC 9111 but not RFC 5861, and
//! its policy object is built per request from both messages, which is more than a hit on
//! the hot path should cost. What a hit needs is three durations computed once when the
//! response is stored ([`Policy`]) and one `Instant` subtraction per request.
//!
//! Request `Cache-Control` from viewers is ignored on purpose (as nginx and Varnish do by
//! default): a viewer sending `no-cache` must not be able to make the edge hammer the
//! origin.

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{HeaderMap, StatusCode};

/// The response `Cache-Control` directives a shared cache acts on (RFC 9111 §5.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    /// `no-cache` (with or without field names: we treat both as "revalidate every time").
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
}

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_MAX: u64 = 1 << 31;

fn delta(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('"');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
}

/// RFC 9213 targeted cache-control fields this edge obeys, most specific first.
const TARGETED: [http::HeaderName; 2] = [
    http::HeaderName::from_static("dashcdn-cdn-control"),
    http::HeaderName::from_static("cdn-cache-control"),
];

impl CacheControl {
    /// Parses every `Cache-Control` line. Unknown directives are ignored (§5.2.3); a
    /// directive with a malformed argument counts as absent, except `max-age`/`s-maxage`,
    /// where §4.2.1 says an invalid value makes the response stale (0).
    pub(crate) fn parse(headers: &HeaderMap) -> CacheControl {
        Self::parse_field(headers, &CACHE_CONTROL)
    }

    /// RFC 9213 targeted fields: the first of `Dashcdn-CDN-Control` (ours alone) and
    /// `CDN-Cache-Control` (every CDN's) with a non-empty value rules, and the response's
    /// `Cache-Control` and `Expires` are then ignored (§2.1). `None` when neither is
    /// there: `Cache-Control` rules as usual. Both are forwarded unchanged, so a child
    /// edge behind this one reads the same.
    pub(crate) fn targeted(headers: &HeaderMap) -> Option<CacheControl> {
        TARGETED.iter().find_map(|name| {
            let present = headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|t| !t.trim().is_empty()));
            present.then(|| Self::parse_field(headers, name))
        })
    }

    fn parse_field(headers: &HeaderMap, field: &http::HeaderName) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(field) {
            let Ok(text) = value.to_str() else { continue };
            for directive in split_directives(text) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim())),
                    None => (directive.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => cc.max_age = Some(arg.and_then(delta).unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = Some(arg.and_then(delta).unwrap_or(0)),
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "immutable" => cc.immutable = true,
                    "stale-while-revalidate" => cc.stale_while_revalidate = arg.and_then(delta),
                    "stale-if-error" => cc.stale_if_error = arg.and_then(delta),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// Splits on commas outside double quotes (`no-cache="a, b"` is one directive).
fn split_directives(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

/// Defaults from the edge configuration that fill what a response leaves out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defaults {
    pub negative_ttl: Duration,
    pub stale_if_error: Duration,
    pub stale_while_revalidate: Duration,
    pub max_heuristic: Duration,
}

/// What to do with an upstream response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Storable {
    /// Store it with this policy.
    Yes(Policy),
    /// Shareable but not worth storing (e.g. a 302): hand it to the waiters, keep nothing.
    No(&'static str),
    /// Must not be shared with other viewers at all (`private`, `no-store`, `Set-Cookie`,
    /// `Vary`): waiters re-request on their own, and the key is remembered as pass.
    Private(&'static str),
}

/// The cache lifetime of one stored response, fixed when it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// RFC 9111 §4.2.1 freshness lifetime.
    pub lifetime: Duration,
    /// §4.2.3 `corrected_initial_age`: age when it arrived here.
    pub initial_age: Duration,
    /// RFC 5861 windows past `lifetime`; zero when `must-revalidate`/`no-cache` forbid
    /// serving stale.
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
}

/// Statuses a shared cache may store: RFC 9111 §4.2.2's "heuristically cacheable" set
/// minus the ones a CDN does not want (206: we never send Range upstream; 405, 414, 501:
/// errors beyond a short negative TTL are never cached, per the issue).
fn cacheable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    )
}

fn http_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// True for a `Vary` the edge can ignore: we always ask upstream without
/// `Accept-Encoding`, so `Vary: Accept-Encoding` responses are the same for everyone.
fn vary_is_harmless(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().all(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').all(|f| {
                let f = f.trim();
                f.is_empty() || f.eq_ignore_ascii_case("accept-encoding")
            })
        })
    })
}

/// Decides whether and how long a response to our `GET` may be stored (RFC 9111 §3,
/// §4.2). `request_time`/`response_time` bracket the upstream exchange (§4.2.3).
pub(crate) fn storable(
    status: StatusCode,
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    defaults: &Defaults,
) -> Storable {
    let targeted = CacheControl::targeted(headers);
    let targeted_rules = targeted.is_some();
    let cc = targeted.unwrap_or_else(|| CacheControl::parse(headers));
    // RFC 9213 §2.1: with a targeted field, `Expires` is ignored too.
    let expires = if targeted_rules {
        None
    } else {
        headers.get(EXPIRES)
    };
    // §3: "the no-store cache directive is not present in the response"; §3.5 / 5.2.2.7:
    // a shared cache must not store `private` responses.
    if cc.no_store {
        return Storable::Private("no-store");
    }
    if cc.private {
        return Storable::Private("private");
    }
    // Storing a Set-Cookie would hand one viewer's session to all the others.
    if headers.contains_key(SET_COOKIE) {
        return Storable::Private("set-cookie");
    }
    if !vary_is_harmless(headers) {
        return Storable::Private("vary");
    }
    // §3: a final status is storable when it is heuristically cacheable *or* the
    // response says how long it stays fresh (`max-age`, `s-maxage`, `Expires`) or is
    // `public`; 206 never (we never send Range upstream), 5xx never (an outage is not
    // kept, whatever it says).
    let says_fresh =
        cc.max_age.is_some() || cc.s_maxage.is_some() || cc.public || headers.contains_key(EXPIRES);
    if status == StatusCode::PARTIAL_CONTENT
        || status.is_informational()
        || status.is_server_error()
        || !(cacheable_status(status) || says_fresh)
    {
        return Storable::No("status not cacheable");
    }

    let date = http_date(headers, DATE);
    // §4.2.1: s-maxage, then max-age, then Expires − Date, then heuristics.
    let explicit = cc
        .s_maxage
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            expires.map(|v| {
                // §5.3: an invalid Expires ("0") means already expired.
                let expires = v
                    .to_str()
                    .ok()
                    .and_then(|s| httpdate::parse_http_date(s).ok());
                match expires {
                    Some(e) => e
                        .duration_since(date.unwrap_or(response_time))
                        .unwrap_or(Duration::ZERO),
                    None => Duration::ZERO,
                }
            })
        });
    let mut lifetime = match explicit {
        Some(l) => l,
        // §4.2.2: heuristic freshness, 10% of the time since Last-Modified, capped.
        None => match (
            http_date(headers, LAST_MODIFIED),
            date.or(Some(response_time)),
        ) {
            (Some(lm), Some(d)) => {
                (d.duration_since(lm).unwrap_or(Duration::ZERO) / 10).min(defaults.max_heuristic)
            }
            _ => Duration::ZERO,
        },
    };
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        lifetime = if explicit.is_some() {
            lifetime.min(defaults.negative_ttl)
        } else {
            defaults.negative_ttl
        };
    }
    // `no-cache`: may be stored, but must be validated before each use.
    if cc.no_cache {
        lifetime = Duration::ZERO;
    }

    // §4.2.3 age calculation.
    // §5.1: a list-valued Age counts by its first member; an invalid one is ignored.
    let age_value = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delta(v.split(',').next().unwrap_or("")))
        .map(Duration::from_secs)
        .unwrap_or(Duration::ZERO);
    let date_value = date.unwrap_or(response_time);
    let apparent_age = response_time
        .duration_since(date_value)
        .unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    let corrected_age_value = age_value + response_delay;
    let initial_age = apparent_age.max(corrected_age_value);

    // RFC 5861 §4 and RFC 9111 §5.2.2.2: must-revalidate (and proxy-revalidate, s-maxage
    // for shared caches, §5.2.2.10) forbid serving stale; no-cache forbids it too.
    let no_stale =
        cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some() || cc.no_cache;
    let negative = status.is_client_error();
    let (swr, sie) = if no_stale || negative {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            cc.stale_while_revalidate
                .map(Duration::from_secs)
                .unwrap_or(defaults.stale_while_revalidate),
            cc.stale_if_error
                .map(Duration::from_secs)
                .unwrap_or(defaults.stale_if_error),
        )
    };
    Storable::Yes(Policy {
        lifetime,
        initial_age,
        stale_while_revalidate: swr,
        stale_if_error: sie,
    })
}

/// How a stored response may be used at a given age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    Fresh,
    /// Stale, but RFC 5861 `stale-while-revalidate` allows serving it while a background
    /// revalidation runs.
    StaleWhileRevalidate,
    /// Stale; must revalidate first, but may be served if that fails (`stale-if-error`).
    StaleIfError,
    /// Stale and no longer usable in any case.
    Expired,
}

impl Policy {
    /// §4.2.3 `current_age` given how long the entry has been resident.
    pub(crate) fn current_age(&self, resident: Duration) -> Duration {
        self.initial_age + resident
    }

    pub(crate) fn usable(&self, resident: Duration) -> Use {
        let age = self.current_age(resident);
        if age < self.lifetime {
            Use::Fresh
        } else if age < self.lifetime + self.stale_while_revalidate {
            Use::StaleWhileRevalidate
        } else if age < self.lifetime + self.stale_if_error {
            Use::StaleIfError
        } else {
            Use::Expired
        }
    }

    /// True if an expired copy may still stand in for a failed upstream (RFC 5861 §4).
    pub(crate) fn may_serve_on_error(&self, resident: Duration) -> bool {
        let age = self.current_age(resident);
        age < self.lifetime + self.stale_if_error.max(self.stale_while_revalidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn defaults() -> Defaults {
        Defaults {
            negative_ttl: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(100),
            stale_while_revalidate: Duration::ZERO,
            max_heuristic: Duration::from_secs(86_400),
        }
    }

    fn policy(status: u16, headers: &[(&str, &str)]) -> Storable {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        storable(
            StatusCode::from_u16(status).unwrap(),
            &h,
            now,
            now,
            &defaults(),
        )
    }

    fn yes(s: Storable) -> Policy {
        match s {
            Storable::Yes(p) => p,
            other => panic!("expected storable, got {other:?}"),
        }
    }

    #[test]
    fn parses_directives() {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static(
                "public, Max-Age=60, no-cache=\"a, b\", stale-while-revalidate=5",
            ),
        );
        h.append(
            CACHE_CONTROL,
            HeaderValue::from_static("stale-if-error=\"30\""),
        );
        let cc = CacheControl::parse(&h);
        assert_eq!(cc.max_age, Some(60));
        assert!(cc.public && cc.no_cache);
        assert_eq!(cc.stale_while_revalidate, Some(5));
        assert_eq!(cc.stale_if_error, Some(30));
        assert_eq!(split_directives("a, b=\"x,y\" ,,c").len(), 3);
    }

    #[test]
    fn s_maxage_wins_and_forbids_stale() {
        let p = yes(policy(200, &[("cache-control", "max-age=10, s-maxage=20")]));
        assert_eq!(p.lifetime, Duration::from_secs(20));
        assert_eq!(p.stale_if_error, Duration::ZERO);
    }

    #[test]
    fn private_no_store_cookie_vary_are_not_shared() {
        for h in [
            ("cache-control", "private, max-age=60"),
            ("cache-control", "no-store"),
            ("set-cookie", "a=b"),
            ("vary", "Origin"),
            ("vary", "*"),
        ] {
            assert!(matches!(policy(200, &[h]), Storable::Private(_)), "{h:?}");
        }
        assert!(matches!(
            policy(
                200,
                &[("vary", "Accept-Encoding"), ("cache-control", "max-age=1")]
            ),
            Storable::Yes(_)
        ));
    }

    #[test]
    fn errors_and_redirects() {
        assert!(matches!(
            policy(500, &[("cache-control", "max-age=60")]),
            Storable::No(_)
        ));
        assert!(matches!(policy(302, &[]), Storable::No(_)));
        let p = yes(policy(404, &[("cache-control", "max-age=3600")]));
        assert_eq!(
            p.lifetime,
            Duration::from_secs(10),
            "404 capped at negative TTL"
        );
        let p = yes(policy(404, &[]));
        assert_eq!(p.lifetime, Duration::from_secs(10));
        assert_eq!(p.stale_if_error, Duration::ZERO);
    }

    #[test]
    fn targeted_fields_rule_over_cache_control() {
        // RFC 9213: CDN-Cache-Control wins over Cache-Control and Expires.
        let p = yes(policy(
            200,
            &[
                ("cache-control", "no-store"),
                ("expires", "0"),
                ("cdn-cache-control", "max-age=600"),
            ],
        ));
        assert_eq!(p.lifetime, Duration::from_secs(600));
        // Ours wins over CDN-Cache-Control.
        let p = yes(policy(
            200,
            &[
                ("cdn-cache-control", "max-age=600"),
                ("dashcdn-cdn-control", "max-age=5"),
            ],
        ));
        assert_eq!(p.lifetime, Duration::from_secs(5));
        assert!(matches!(
            policy(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "no-store")
                ]
            ),
            Storable::Private(_)
        ));
        // Empty: ignored, Cache-Control rules.
        let p = yes(policy(
            200,
            &[("cache-control", "max-age=60"), ("cdn-cache-control", " ")],
        ));
        assert_eq!(p.lifetime, Duration::from_secs(60));
    }

    #[test]
    fn age_list_invalid_and_huge() {
        let age =
            |v: &str| yes(policy(200, &[("cache-control", "max-age=60"), ("age", v)])).initial_age;
        assert_eq!(age("15, 99"), Duration::from_secs(15), "first member");
        assert_eq!(age("abc"), Duration::ZERO, "invalid: ignored");
        assert_eq!(age("-5"), Duration::ZERO, "negative: ignored");
        assert_eq!(age("99999999999999999999"), Duration::from_secs(DELTA_MAX));
    }

    #[test]
    fn the_three_http_date_formats() {
        // RFC 9110 §5.6.7: IMF-fixdate, obsolete RFC 850 and asctime all mean the same.
        for expires in [
            "Tue, 14 Nov 2023 22:14:20 GMT",
            "Tuesday, 14-Nov-23 22:14:20 GMT",
            "Tue Nov 14 22:14:20 2023",
        ] {
            let p = yes(policy(
                200,
                &[
                    ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                    ("expires", expires),
                ],
            ));
            assert_eq!(p.lifetime, Duration::from_secs(60), "{expires}");
        }
    }

    #[test]
    fn explicit_freshness_makes_any_final_status_storable() {
        assert_eq!(
            yes(policy(302, &[("cache-control", "max-age=30")])).lifetime,
            Duration::from_secs(30)
        );
        assert!(
            yes(policy(307, &[("cache-control", "public, max-age=5")])).lifetime > Duration::ZERO
        );
        assert!(matches!(policy(302, &[]), Storable::No(_)));
        assert!(matches!(
            policy(206, &[("cache-control", "max-age=30")]),
            Storable::No(_)
        ));
    }

    #[test]
    fn expires_age_and_heuristics() {
        let p = yes(policy(
            200,
            &[
                ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("expires", "Tue, 14 Nov 2023 22:14:20 GMT"),
                ("age", "15"),
            ],
        ));
        assert_eq!(p.lifetime, Duration::from_secs(60));
        assert_eq!(p.initial_age, Duration::from_secs(15));
        assert_eq!(p.usable(Duration::from_secs(40)), Use::Fresh);
        assert_eq!(p.usable(Duration::from_secs(46)), Use::StaleIfError);
        assert_eq!(p.usable(Duration::from_secs(200)), Use::Expired);
        // Invalid Expires = already stale.
        assert_eq!(
            yes(policy(200, &[("expires", "0")])).lifetime,
            Duration::ZERO
        );
        // 10% of Date − Last-Modified (1000 s).
        let p = yes(policy(
            200,
            &[
                ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("last-modified", "Tue, 14 Nov 2023 21:56:40 GMT"),
            ],
        ));
        assert_eq!(p.lifetime, Duration::from_secs(100));
    }

    #[test]
    fn rfc5861_windows() {
        let p = yes(policy(
            200,
            &[(
                "cache-control",
                "max-age=10, stale-while-revalidate=5, stale-if-error=60",
            )],
        ));
        assert_eq!(p.usable(Duration::from_secs(9)), Use::Fresh);
        assert_eq!(p.usable(Duration::from_secs(12)), Use::StaleWhileRevalidate);
        assert_eq!(p.usable(Duration::from_secs(30)), Use::StaleIfError);
        assert!(p.may_serve_on_error(Duration::from_secs(30)));
        assert!(!p.may_serve_on_error(Duration::from_secs(80)));
        let p = yes(policy(
            200,
            &[("cache-control", "max-age=10, must-revalidate")],
        ));
        assert_eq!(p.usable(Duration::from_secs(11)), Use::Expired);
        let p = yes(policy(200, &[("cache-control", "no-cache")]));
        assert_eq!(p.usable(Duration::ZERO), Use::Expired);
    }
}
