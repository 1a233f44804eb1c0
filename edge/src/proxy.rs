//! The request path: validate, look up, serve a hit / stale copy, or join a fill.
//!
//! ```text
//! GET/HEAD ─▶ key (path + normalised query) ─▶ pass-listed? ─▶ pass (fetch for this viewer)
//!                  │
//!                  ├─ fresh entry ──────────────────────────────▶ HIT
//!                  ├─ stale, within stale-while-revalidate ─────▶ STALE + background revalidation
//!                  ├─ stale otherwise ─▶ revalidate (join fill) ─▶ REVALIDATED | MISS | STALE on error
//!                  └─ no entry ────────▶ join or start a fill ──▶ MISS (started it) | COALESCED
//! ```
//!
//! Viewers' conditional requests (`If-None-Match`, `If-Modified-Since`) and single byte
//! ranges are answered here, from the entry or from the in-flight fill; they are never
//! forwarded (the fill always fetches the whole object, once).

use std::sync::Arc;

use bytes::Bytes;
use dashcdn_http::conditional::{Conditions, Decision, Validators};
use dashcdn_http::cors;
use dashcdn_http::range::unsatisfied_content_range;
use http::header::{
    ACCEPT, ACCEPT_LANGUAGE, ACCEPT_RANGES, AGE, ALLOW, AUTHORIZATION, CACHE_CONTROL,
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, COOKIE, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, RANGE, USER_AGENT, VIA,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use tokio::sync::{mpsc, watch};

use dashcdn_http::hop;

use crate::body::{EdgeBody, Kind};
use crate::cache::{cache_key, Entry};
use crate::fill::{self, End, Fill, Head, Outcome};
use crate::freshness::Use;
use crate::headers::{stored_headers, X_CACHE};
use crate::metrics::CacheStatus;
use crate::state::Shared;

/// The parts of a response shared by entries and in-flight heads.
struct Meta<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    len: Option<u64>,
    age_secs: u64,
}

enum Source {
    Bytes(Bytes),
    Fill(Arc<Fill>, watch::Receiver<u64>),
}

/// What the handler hands back to the server: the response, how it was served and (for
/// the access log) which upstream was involved.
pub(crate) struct Served {
    pub response: Response<EdgeBody>,
    pub cache: CacheStatus,
    pub upstream: Option<String>,
}

impl Served {
    fn new(response: Response<EdgeBody>, cache: CacheStatus) -> Served {
        Served {
            response,
            cache,
            upstream: None,
        }
    }
}

/// A plain-text response the edge makes itself.
pub(crate) fn local(status: StatusCode, message: &'static str) -> Response<EdgeBody> {
    let mut r = Response::new(EdgeBody::full(Bytes::from_static(message.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn method_not_allowed() -> Response<EdgeBody> {
    let mut r = local(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    r
}

/// Serves one viewer request that is not for `/_edge/`.
pub(crate) async fn handle(sh: &Arc<Shared>, parts: &Parts) -> Served {
    let method = &parts.method;
    if method == Method::OPTIONS && sh.config.cors {
        return Served::new(cors::preflight(), CacheStatus::Local);
    }
    if method != Method::GET && method != Method::HEAD {
        return Served::new(method_not_allowed(), CacheStatus::Local);
    }
    let uri_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > sh.config.max_uri_bytes {
        return Served::new(
            local(StatusCode::URI_TOO_LONG, "request target too long\n"),
            CacheStatus::Local,
        );
    }
    // A request that already passed through this PoP is a forwarding loop.
    if hop::via_contains(&parts.headers, &sh.config.pop) {
        return Served::new(
            local(StatusCode::LOOP_DETECTED, "forwarding loop detected\n"),
            CacheStatus::Local,
        );
    }
    let key = match cache_key(parts.uri.path(), parts.uri.query(), &sh.rules) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(uri = %parts.uri, error = %e, "refused request target");
            return Served::new(
                local(StatusCode::BAD_REQUEST, "bad request\n"),
                CacheStatus::Local,
            );
        }
    };
    // RFC 9111 §3.5: a request with credentials is the origin's to answer; it goes
    // upstream with them and its response is not shared.
    if sh.fill.passes.contains(&key) || parts.headers.contains_key(AUTHORIZATION) {
        return pass(sh, &key.into(), parts).await;
    }
    // Only the fill paths need a shared key (the fill and the in-flight map hold it), so
    // a fresh hit does not allocate one.
    let served = match sh.fill.store.get(&key) {
        Some(entry) => match entry.usable() {
            Use::Fresh => {
                let r = respond_entry(sh, parts, &entry, CacheStatus::Hit);
                Served::new(r, CacheStatus::Hit)
            }
            Use::StaleWhileRevalidate => {
                fill::join_or_start(&sh.fill, &key.as_str().into(), Some(entry.clone()), None);
                let r = respond_entry(sh, parts, &entry, CacheStatus::Stale);
                Served::new(r, CacheStatus::Stale)
            }
            Use::StaleIfError | Use::Expired => {
                let fallback = entry.may_serve_on_error().then(|| entry.clone());
                let key: Arc<str> = key.as_str().into();
                let (fill, new) = fill::join_or_start(&sh.fill, &key, Some(entry), None);
                from_fill(sh, parts, &key, fill, new, fallback).await
            }
        },
        None => {
            let key: Arc<str> = key.as_str().into();
            let (fill, new) = fill::join_or_start(&sh.fill, &key, None, None);
            from_fill(sh, parts, &key, fill, new, None).await
        }
    };
    if sh.config.prefetch_segments > 0 && parts.method == Method::GET {
        prefetch(sh, &key);
    }
    served
}

async fn from_fill(
    sh: &Arc<Shared>,
    parts: &Parts,
    key: &Arc<str>,
    fill: Arc<Fill>,
    new: bool,
    fallback: Option<Arc<Entry>>,
) -> Served {
    let label = if new {
        CacheStatus::Miss
    } else {
        CacheStatus::Coalesced
    };
    let mut rx = fill.subscribe();
    let outcome = fill.wait_head(&mut rx).await;
    let upstream = fill.upstream();
    let mut served = match outcome {
        Outcome::Head(head) => {
            let meta = Meta {
                status: head.status,
                headers: &head.headers,
                len: head.len,
                age_secs: head.age_secs,
            };
            let r = respond(
                sh,
                parts,
                &meta,
                &head_validators(&head),
                Source::Fill(fill, rx),
                label,
            );
            Served::new(r, label)
        }
        Outcome::Ended(End::Refreshed(entry)) => {
            let r = respond_entry(sh, parts, &entry, CacheStatus::Revalidated);
            Served::new(r, CacheStatus::Revalidated)
        }
        Outcome::Ended(End::Pass) => {
            // The viewer who started the fill gets the fill's own response; the others
            // fetch their own.
            let handed = if new { fill.take_handoff() } else { None };
            return match (handed, upstream) {
                (Some(response), Some(upstream)) => passed(sh, parts, upstream, response),
                _ => pass(sh, key, parts).await,
            };
        }
        Outcome::Ended(End::Failed { .. }) | Outcome::Ended(End::Complete)
            if fallback.is_some() =>
        {
            let entry = fallback.expect("checked");
            let r = respond_entry(sh, parts, &entry, CacheStatus::Stale);
            Served::new(r, CacheStatus::Stale)
        }
        Outcome::Ended(End::Failed { status }) => {
            let msg = if status == StatusCode::GATEWAY_TIMEOUT {
                "upstream timed out\n"
            } else {
                "upstream unavailable\n"
            };
            Served::new(local(status, msg), label)
        }
        Outcome::Ended(End::Complete) => Served::new(
            local(StatusCode::BAD_GATEWAY, "upstream unavailable\n"),
            label,
        ),
    };
    served.upstream = upstream;
    served
}

fn head_validators(head: &Head) -> Validators {
    Validators::from_headers(&head.headers)
}

fn respond_entry(
    sh: &Arc<Shared>,
    parts: &Parts,
    entry: &Entry,
    label: CacheStatus,
) -> Response<EdgeBody> {
    let meta = Meta {
        status: entry.status,
        headers: &entry.headers,
        len: Some(entry.body.len() as u64),
        age_secs: entry.age().as_secs(),
    };
    let v = Validators::from_headers(&entry.headers);
    respond(
        sh,
        parts,
        &meta,
        &v,
        Source::Bytes(entry.body.clone()),
        label,
    )
}

fn respond(
    sh: &Arc<Shared>,
    parts: &Parts,
    meta: &Meta<'_>,
    v: &Validators,
    source: Source,
    label: CacheStatus,
) -> Response<EdgeBody> {
    let mut headers = meta.headers.clone();
    headers.insert(AGE, HeaderValue::from(meta.age_secs));
    headers.insert(X_CACHE, HeaderValue::from_static(label.as_str()));
    let head_only = parts.method == Method::HEAD;
    let mut status = meta.status;
    let mut range = meta.len.map(|l| (0, l));
    // RFC 9110 §13.2.1: preconditions and Range apply only to what would be a 200;
    // dashcdn_http evaluates them exactly as the origin does.
    if status == StatusCode::OK {
        let conditions = Conditions::from_request(&parts.method, &parts.headers);
        match conditions.evaluate(v, meta.len) {
            Decision::Full => {
                headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
            Decision::Partial(r) => {
                headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                status = StatusCode::PARTIAL_CONTENT;
                let len = meta
                    .len
                    .expect("a range is only taken against a known length");
                headers.insert(CONTENT_RANGE, r.content_range(len));
                let span = r.as_span();
                range = Some((span.start, span.end));
            }
            Decision::NotModified => {
                for h in [CONTENT_LENGTH, CONTENT_TYPE, CONTENT_RANGE] {
                    headers.remove(h);
                }
                return build(StatusCode::NOT_MODIFIED, headers, EdgeBody::empty());
            }
            Decision::PreconditionFailed => {
                // Nothing of the representation: only what says who answered.
                let mut bare = HeaderMap::new();
                for h in [AGE, VIA, X_CACHE] {
                    if let Some(v) = headers.get(&h) {
                        bare.insert(h, v.clone());
                    }
                }
                if sh.config.cors {
                    cors::decorate(&mut bare);
                }
                bare.insert(CONTENT_LENGTH, HeaderValue::from(0));
                return build(StatusCode::PRECONDITION_FAILED, bare, EdgeBody::empty());
            }
            Decision::RangeNotSatisfiable => {
                let len = meta
                    .len
                    .expect("a range is only taken against a known length");
                headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                headers.insert(CONTENT_RANGE, unsatisfied_content_range(len));
                headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
                headers.remove(CONTENT_TYPE);
                return build(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    headers,
                    EdgeBody::empty(),
                );
            }
        }
    }
    match range {
        Some((a, b)) => {
            if status == StatusCode::PARTIAL_CONTENT || !headers.contains_key(CONTENT_LENGTH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(b - a));
            }
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
    if head_only {
        return build(status, headers, EdgeBody::empty());
    }
    let body = match source {
        Source::Bytes(bytes) => {
            let (a, b) = range.unwrap_or((0, bytes.len() as u64));
            sh.fill.metrics.served_from_cache(b - a);
            if a == 0 && b == bytes.len() as u64 {
                EdgeBody::full(bytes)
            } else {
                EdgeBody::full(bytes.slice(a as usize..b as usize))
            }
        }
        Source::Fill(fill, rx) => {
            let (a, b) = range.unwrap_or((0, u64::MAX));
            // Few chunks ahead: before the fill completes each is a copy (64 KiB), and a slow
            // viewer would hold them all.
            let (tx, brx) = mpsc::channel(2);
            tokio::spawn(fill::pump(fill, rx, tx, (a, b)));
            EdgeBody::new(Kind::Channel {
                rx: brx,
                len: range.map(|(a, b)| b - a),
            })
        }
    };
    build(status, headers, body)
}

fn build(status: StatusCode, headers: HeaderMap, body: EdgeBody) -> Response<EdgeBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Fetches for this viewer alone and streams the upstream's answer (not cached).
async fn pass(sh: &Arc<Shared>, key: &Arc<str>, parts: &Parts) -> Served {
    let mut fwd = HeaderMap::new();
    for name in [
        RANGE,
        IF_RANGE,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        ACCEPT,
        ACCEPT_LANGUAGE,
        USER_AGENT,
        COOKIE,
        AUTHORIZATION,
    ] {
        for v in parts.headers.get_all(&name) {
            fwd.append(name.clone(), v.clone());
        }
    }
    match sh.fill.upstreams.fetch(key, key, &fwd).await {
        Ok(fetched) => passed(sh, parts, fetched.upstream.name.clone(), fetched.response),
        Err(e) => {
            let status = if e.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            Served::new(local(status, "upstream unavailable\n"), CacheStatus::Pass)
        }
    }
}

/// Streams an upstream response to this viewer alone (not cached).
fn passed(
    sh: &Arc<Shared>,
    parts: &Parts,
    upstream: String,
    response: Response<hyper::body::Incoming>,
) -> Served {
    let (up_parts, body) = response.into_parts();
    let mut headers = stored_headers(&up_parts.headers, &sh.fill.via);
    if let Some(cl) = up_parts.headers.get(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, cl.clone());
    }
    headers.insert(
        X_CACHE,
        HeaderValue::from_static(CacheStatus::Pass.as_str()),
    );
    let body = if parts.method == Method::HEAD {
        EdgeBody::empty()
    } else {
        EdgeBody::new(Kind::Upstream {
            body,
            idle: sh.fill.read_timeout,
            timer: None,
        })
    };
    let mut served = Served::new(build(up_parts.status, headers, body), CacheStatus::Pass);
    served.upstream = Some(upstream);
    served
}

/// DASH-aware prefetch: after `.../{n}.m4s`, start fills for the next segments unless
/// they are cached or already coming. Bounded by a semaphore; when it is exhausted the
/// prefetch is skipped, never queued (prefetching late is worse than not at all).
fn prefetch(sh: &Arc<Shared>, key: &str) {
    let (path, query) = match key.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (key, None),
    };
    let Some((dir, file)) = path.rsplit_once('/') else {
        return;
    };
    let Some(n) = file
        .strip_suffix(".m4s")
        .filter(|n| !n.is_empty() && n.len() < 19 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return;
    };
    for i in 1..=sh.config.prefetch_segments as u64 {
        let next: Arc<str> = match query {
            Some(q) => format!("{dir}/{}.m4s?{q}", n + i),
            None => format!("{dir}/{}.m4s", n + i),
        }
        .into();
        if sh.fill.store.contains(&next)
            || sh.fill.fills.get(&next).is_some()
            || sh.fill.passes.contains(&next)
        {
            continue;
        }
        let Ok(permit) = sh.prefetch.clone().try_acquire_owned() else {
            return;
        };
        sh.fill.metrics.prefetched();
        fill::join_or_start(&sh.fill, &next, None, Some(permit));
    }
}
