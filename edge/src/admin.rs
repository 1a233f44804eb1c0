//! The operator surface under `/_edge/` (reserved: never forwarded upstream).
//!
//! | path | method | answer |
//! | --- | --- | --- |
//! | `/_edge/healthz` | GET/HEAD | `ok` (geodns probes this) |
//! | `/_edge/metrics` | GET | OpenMetrics text, see [`crate::metrics`] |
//! | `/_edge/stats` | GET | JSON below, read by geodns for load shedding |
//! | `/_edge/purge` | POST | `Authorization: Bearer <purge_token>`; `?path=/x` or `?prefix=/x/`, or a JSON body `{"path": "/x"}` / `{"prefix": "/x/"}`; answers `{"purged": n}`; 401 without a valid token, 400 without a target |
//!
//! `/_edge/stats` schema (all fields always present):
//!
//! ```json
//! {
//!   "pop": "eu-west",            // the configured PoP name
//!   "load": 0.12,                // max(in_flight / max_in_flight, connections / max_connections); 1.0 = at capacity, can exceed 1
//!   "overloaded": false,         // load >= overload_threshold
//!   "hit_ratio": 0.97,           // (hit + stale + coalesced + revalidated) / requests since start, 0 before any
//!   "requests": 12345,           // viewer requests through the cache path since start (admin and rejected ones excluded)
//!   "in_flight": 12,             // requests being answered now (until their last body byte)
//!   "connections": 40,           // open viewer connections
//!   "fills_in_flight": 1,        // upstream fetches running
//!   "fills_alive": 1,            // fills still in memory (running, or done and still read by a viewer)
//!   "cache_bytes": 1073741824,   // weighted cache size (bodies + headers + overhead)
//!   "cache_capacity": 2147483648,// the configured cache_size
//!   "cache_entries": 512,
//!   "live_body_bytes": 1073000000, // bodies of all live entries (cached, or evicted but still being sent)
//!   "body_bytes": 1075000000,    // every body buffer alive (cached, filling, or evicted and still being sent); <= body_bytes_max
//!   "body_bytes_max": 2684354560,// cache_size + max_fill_bytes: misses beyond it are passed through
//!   "upstreams": [{"url": "http://origin:8080", "role": "origin", "healthy": true}]
//! }
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::body::EdgeBody;
use crate::config::Role;
use crate::proxy::local;
use crate::state::Shared;

/// Largest purge request body accepted.
const PURGE_BODY_LIMIT: usize = 64 << 10;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Stats {
    pub pop: String,
    pub load: f64,
    pub overloaded: bool,
    pub hit_ratio: f64,
    pub requests: u64,
    pub in_flight: u64,
    pub connections: u64,
    pub fills_in_flight: u64,
    /// Fills still in memory (in flight, or done and still read by a viewer).
    pub fills_alive: u64,
    pub cache_bytes: u64,
    pub cache_capacity: u64,
    pub cache_entries: u64,
    /// Body bytes of all live entries, including evicted ones still being sent.
    pub live_body_bytes: u64,
    /// Every body buffer a fill allocated that is still alive anywhere.
    pub body_bytes: u64,
    /// `cache_size + max_fill_bytes`, the ceiling on `body_bytes`.
    pub body_bytes_max: u64,
    pub upstreams: Vec<UpstreamStats>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct UpstreamStats {
    pub url: String,
    pub role: Role,
    pub healthy: bool,
}

pub(crate) fn stats(sh: &Shared) -> Stats {
    let m = &sh.fill.metrics;
    let in_flight = m.in_flight.load(Ordering::Relaxed).max(0) as u64;
    let connections = m.connections.load(Ordering::Relaxed).max(0) as u64;
    let load = (in_flight as f64 / sh.config.max_in_flight as f64)
        .max(connections as f64 / sh.limits.max_connections as f64);
    sh.fill.store.sync();
    Stats {
        pop: sh.config.pop.clone(),
        load,
        overloaded: load >= sh.config.overload_threshold,
        hit_ratio: m.hit_ratio(),
        requests: m.cache_requests.load(Ordering::Relaxed),
        in_flight,
        connections,
        fills_in_flight: sh.fill.fills.len() as u64,
        fills_alive: sh.fill.fills.alive.load(Ordering::Relaxed).max(0) as u64,
        cache_bytes: sh.fill.store.bytes(),
        cache_capacity: sh.config.cache_size.0,
        cache_entries: sh.fill.store.entries(),
        live_body_bytes: sh.fill.store.live.load(Ordering::Relaxed).max(0) as u64,
        body_bytes: sh.fill.budget.resident(),
        body_bytes_max: sh.config.cache_size.0 + sh.config.max_fill_bytes().0,
        upstreams: sh
            .fill
            .upstreams
            .all()
            .map(|u| UpstreamStats {
                url: u.name.clone(),
                role: u.role,
                healthy: u.is_healthy(),
            })
            .collect(),
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<EdgeBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(EdgeBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

pub(crate) async fn handle(sh: &Arc<Shared>, parts: &Parts, body: Incoming) -> Response<EdgeBody> {
    let read_only = parts.method == Method::GET || parts.method == Method::HEAD;
    match parts.uri.path() {
        "/_edge/healthz" if read_only => local(StatusCode::OK, "ok\n"),
        "/_edge/metrics" if read_only => {
            sh.fill.store.sync();
            let text = sh.fill.metrics.encode(
                sh.fill.store.bytes(),
                sh.fill.store.entries(),
                sh.access.as_ref().map_or(0, |log| log.new_drops()),
            );
            let mut r = Response::new(EdgeBody::full(Bytes::from(text)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            r
        }
        "/_edge/stats" if read_only => json(StatusCode::OK, &stats(sh)),
        "/_edge/purge" if parts.method == Method::POST => purge(sh, parts, body).await,
        "/_edge/healthz" | "/_edge/metrics" | "/_edge/stats" | "/_edge/purge" => {
            let mut r = local(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = if parts.uri.path() == "/_edge/purge" {
                "POST"
            } else {
                "GET, HEAD"
            };
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        _ => local(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    path: Option<String>,
    prefix: Option<String>,
}

#[derive(Serialize)]
struct PurgeAnswer {
    purged: u64,
}

async fn purge(sh: &Arc<Shared>, parts: &Parts, body: Incoming) -> Response<EdgeBody> {
    let authorized = match (&sh.config.purge_token, parts.headers.get(AUTHORIZATION)) {
        (Some(token), Some(given)) => given
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .is_some_and(|t| same(t, token.as_bytes())),
        _ => false,
    };
    if !authorized {
        warn!(uri = %parts.uri, "purge refused: missing or wrong bearer token");
        let mut r = local(
            StatusCode::UNAUTHORIZED,
            "purge needs Authorization: Bearer <purge_token>\n",
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"dashcdn-edge\""),
        );
        return r;
    }
    let mut ask = PurgeRequest::default();
    for (k, v) in form_pairs(parts.uri.query().unwrap_or("")) {
        match k.as_str() {
            "path" => ask.path = Some(v),
            "prefix" => ask.prefix = Some(v),
            _ => {}
        }
    }
    let bytes = match Limited::new(body, PURGE_BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return local(StatusCode::PAYLOAD_TOO_LARGE, "purge body too large\n"),
    };
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<PurgeRequest>(&bytes) {
            Ok(b) => {
                ask.path = ask.path.or(b.path);
                ask.prefix = ask.prefix.or(b.prefix);
            }
            Err(_) => {
                return local(
                    StatusCode::BAD_REQUEST,
                    "purge body must be JSON {\"path\": \"/...\"} or {\"prefix\": \"/...\"}\n",
                )
            }
        }
    }
    let n = match (ask.path, ask.prefix) {
        (Some(path), None) if path.starts_with('/') => {
            let q = format!("{path}?");
            let matches = |k: &str| k == path || k.starts_with(&q);
            let n = sh.fill.purge(matches, || {
                sh.fill.passes.forget(matches);
                sh.fill.store.remove_matching(matches)
            });
            info!(%path, purged = n, "purged path");
            n
        }
        (None, Some(prefix)) if prefix.starts_with('/') => {
            let matches = |k: &str| k.starts_with(&prefix);
            let n = sh.fill.purge(matches, || {
                sh.fill.passes.forget(matches);
                sh.fill.store.remove_matching(matches)
            });
            info!(%prefix, purged = n, "purged prefix");
            n
        }
        _ => {
            return local(
                StatusCode::BAD_REQUEST,
                "purge needs exactly one of path=/... or prefix=/...\n",
            )
        }
    };
    sh.fill.metrics.purged(n);
    json(StatusCode::OK, &PurgeAnswer { purged: n })
}

/// `a=1&b=%2Fx` → pairs, percent-decoded (`+` is a space, as in forms).
fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}
