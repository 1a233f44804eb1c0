//! Upstreams: the only hosts the edge ever contacts.
//!
//! - Parents (other edges acting as shields) are chosen per object by rendezvous
//!   (highest-random-weight) hashing of the cache key, so every object lives on one parent
//!   and the origin sees one request per object for the whole CDN; when a parent goes
//!   down only its objects move. Rendezvous rather than jump hash because parents are
//!   named, not numbered, and a ranked list gives the failover order for free.
//! - Origins are replicas tried in the configured order.
//! - Order of attempts: healthy parents by rank, then (if `parent_fallback_to_origin` or
//!   there are no parents) healthy origins; unhealthy ones last, since trying a "down"
//!   upstream beats failing outright.
//! - Health: an active probe of each upstream's health path every `health_interval_ms`,
//!   plus passive marks from real requests (connect errors, timeouts, 5xx); `health_fall`
//!   consecutive failures mark it down, `health_rise` successful probes bring it back.
//! - Connections: one pooled keep-alive client (hyper-util's `legacy::Client`) with a
//!   connect timeout; the time to response head and the gap between body chunks are
//!   bounded by [`crate::fill`] with `first_byte_timeout_ms` / `read_timeout_ms`.
//!
//! The request target sent upstream is the upstream's base URL + the validated cache
//! key; the viewer's Host or absolute-form URI is never looked at, so the edge cannot be
//! used as an open proxy.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, USER_AGENT, VIA};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{parse_base, Base, EdgeConfig, Role};
use crate::metrics::Metrics;

/// One configured upstream and its health.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The configured URL: the label in metrics and logs.
    pub name: String,
    pub role: Role,
    pub base: Base,
    health_path: String,
    healthy: AtomicBool,
    /// Consecutive failures (while up) or successes (while down).
    streak: AtomicU32,
    /// Rendezvous hashing seed: the URL's hash, so every edge ranks parents alike.
    seed: u64,
}

impl Upstream {
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn uri(&self, target: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.base.scheme.clone())
            .authority(self.base.authority.clone())
            .path_and_query(format!("{}{}", self.base.prefix, target))
            .build()
    }
}

/// FNV-1a with a splitmix64 finaliser: stable across builds and platforms (std's hasher
/// is not promised to be), and well mixed enough for ranking a handful of parents.
pub(crate) fn hash64(seed: u64, data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Why no upstream produced a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("upstream {upstream} timed out")]
    Timeout { upstream: String },
    #[error("upstream {upstream} failed: {reason}")]
    Failed { upstream: String, reason: String },
    #[error("no upstream configured")]
    NoUpstream,
}

impl FetchError {
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, FetchError::Timeout { .. })
    }
}

/// All upstreams and the shared connection pool.
/// Most an upstream connection buffers for reading (see [`Upstreams::new`]).
const UPSTREAM_READ_BUFFER: usize = 16 << 10;

pub(crate) struct Upstreams {
    parents: Vec<Arc<Upstream>>,
    origins: Vec<Arc<Upstream>>,
    fallback_to_origin: bool,
    client: Client<dashcdn_http::client::HttpsConnector, Empty<Bytes>>,
    first_byte_timeout: Duration,
    health_timeout: Duration,
    fall: u32,
    rise: u32,
    via: HeaderValue,
    metrics: Arc<Metrics>,
}

/// A successful exchange: which upstream answered, and its response.
pub(crate) struct Fetched {
    pub upstream: Arc<Upstream>,
    pub response: Response<Incoming>,
}

impl Upstreams {
    pub(crate) fn new(config: &EdgeConfig, metrics: Arc<Metrics>) -> Result<Upstreams, String> {
        let mut parents = Vec::new();
        let mut origins = Vec::new();
        for u in &config.upstreams {
            let base = parse_base(&u.url).map_err(|e| format!("upstream {}: {e}", u.url))?;
            let up = Arc::new(Upstream {
                name: u.url.clone(),
                role: u.role,
                base,
                health_path: u.health_path().to_string(),
                healthy: AtomicBool::new(true),
                streak: AtomicU32::new(0),
                seed: hash64(0, u.url.as_bytes()),
            });
            metrics.upstream_health(&up.name, true);
            match u.role {
                Role::Parent => parents.push(up),
                Role::Origin => origins.push(up),
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(EdgeConfig::ms(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let connector =
            dashcdn_http::client::https_connector(connector, config.upstream_ca.as_deref())
                .map_err(|e| format!("upstream TLS: {}", dashcdn_config::chain(&e)))?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(config.pool_idle_timeout_secs))
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            // hyper's read buffer grows to ~400 KiB on a fast upstream and stays that size
            // on the connection (pooled or streaming a pass-through to a slow viewer):
            // 456 such connections measured 287 MiB RSS for a 16 MiB cache. 16 KiB keeps
            // a connection's buffers small (a fill reads 1 MiB in 64 reads; measured: 100 MiB
            // peak at 64 KiB, see docs/edge.md).
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            .build(connector);
        let via = HeaderValue::from_str(&format!("1.1 {}", config.pop))
            .map_err(|_| "pop is not a valid header value".to_string())?;
        Ok(Upstreams {
            parents,
            origins,
            fallback_to_origin: config.parent_fallback_to_origin,
            client,
            first_byte_timeout: EdgeConfig::ms(config.first_byte_timeout_ms),
            health_timeout: EdgeConfig::ms(config.health_timeout_ms),
            fall: config.health_fall,
            rise: config.health_rise,
            via,
            metrics,
        })
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.parents.iter().chain(self.origins.iter())
    }

    /// The order in which to try upstreams for `key`.
    pub(crate) fn candidates(&self, key: &str) -> Vec<Arc<Upstream>> {
        let mut parents: Vec<(u64, &Arc<Upstream>)> = self
            .parents
            .iter()
            .map(|p| (hash64(p.seed, key.as_bytes()), p))
            .collect();
        parents.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut list: Vec<Arc<Upstream>> = parents.into_iter().map(|(_, p)| p.clone()).collect();
        if self.parents.is_empty() || self.fallback_to_origin {
            list.extend(self.origins.iter().cloned());
        }
        // Stable: healthy ones first, each group keeping its rank.
        list.sort_by_key(|u| !u.is_healthy());
        list
    }

    /// GETs `target` (a validated cache key) from the best upstream for `key`, failing
    /// over on connect errors, timeouts and 5xx. `headers` are added to the request (the
    /// validators of a revalidation, or a pass request's forwarded headers).
    pub(crate) async fn fetch(
        &self,
        key: &str,
        target: &str,
        headers: &HeaderMap,
    ) -> Result<Fetched, FetchError> {
        let candidates = self.candidates(key);
        let mut last: Option<Result<Fetched, FetchError>> = None;
        for (i, up) in candidates.iter().enumerate() {
            let more = i + 1 < candidates.len();
            let result = self.fetch_one(up, target, headers).await;
            match result {
                Ok(f) if f.response.status().is_server_error() && more => {
                    self.failed(up);
                    debug!(upstream = %up.name, status = f.response.status().as_u16(), "upstream 5xx, failing over");
                    last = Some(Ok(f));
                }
                Ok(f) => {
                    if f.response.status().is_server_error() {
                        self.failed(up);
                    } else {
                        self.succeeded(up);
                    }
                    return Ok(f);
                }
                Err(e) => {
                    self.failed(up);
                    debug!(upstream = %up.name, error = %e, "upstream attempt failed");
                    last = Some(Err(e));
                }
            }
        }
        last.unwrap_or(Err(FetchError::NoUpstream))
    }

    async fn fetch_one(
        &self,
        up: &Arc<Upstream>,
        target: &str,
        headers: &HeaderMap,
    ) -> Result<Fetched, FetchError> {
        let failed = |reason: String| FetchError::Failed {
            upstream: up.name.clone(),
            reason,
        };
        let uri = up.uri(target).map_err(|e| failed(e.to_string()))?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(e.to_string()))?;
        let h = req.headers_mut();
        for (k, v) in headers {
            h.append(k.clone(), v.clone());
        }
        h.insert(
            HOST,
            HeaderValue::from_str(up.base.authority.as_str()).map_err(|e| failed(e.to_string()))?,
        );
        h.append(VIA, self.via.clone());
        h.insert(USER_AGENT, HeaderValue::from_static("dashcdn-edge"));
        let started = Instant::now();
        match tokio::time::timeout(self.first_byte_timeout, self.client.request(req)).await {
            Err(_) => {
                self.metrics.upstream_request(&up.name, "timeout", None);
                Err(FetchError::Timeout {
                    upstream: up.name.clone(),
                })
            }
            Ok(Err(e)) => {
                self.metrics.upstream_request(&up.name, "error", None);
                let mut reason = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    reason.push_str(": ");
                    reason.push_str(&s.to_string());
                    src = s.source();
                }
                Err(failed(reason))
            }
            Ok(Ok(response)) => {
                let class = match response.status().as_u16() {
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                self.metrics
                    .upstream_request(&up.name, class, Some(started.elapsed()));
                Ok(Fetched {
                    upstream: up.clone(),
                    response,
                })
            }
        }
    }

    /// Passive health: a failed request counts like a failed probe.
    pub(crate) fn failed(&self, up: &Upstream) {
        if up.is_healthy() {
            let n = up.streak.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.fall {
                up.healthy.store(false, Ordering::Relaxed);
                up.streak.store(0, Ordering::Relaxed);
                self.metrics.upstream_health(&up.name, false);
                warn!(upstream = %up.name, "upstream marked down after {n} failures");
            }
        } else {
            up.streak.store(0, Ordering::Relaxed);
        }
    }

    /// A success resets the failure streak; for a down upstream, `health_rise`
    /// consecutive successes (probes, or real requests when everything else failed)
    /// bring it back.
    fn succeeded(&self, up: &Upstream) {
        if up.is_healthy() {
            up.streak.store(0, Ordering::Relaxed);
        } else {
            let n = up.streak.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.rise {
                up.healthy.store(true, Ordering::Relaxed);
                up.streak.store(0, Ordering::Relaxed);
                self.metrics.upstream_health(&up.name, true);
                info!(upstream = %up.name, "upstream back up");
            }
        }
    }

    /// One round of health probes, all upstreams concurrently.
    pub(crate) async fn probe_all(self: &Arc<Self>) {
        let mut tasks = Vec::new();
        for up in self.all().cloned().collect::<Vec<_>>() {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                let ok = this.probe(&up).await;
                if ok {
                    this.succeeded(&up);
                } else {
                    this.failed(&up);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn probe(&self, up: &Upstream) -> bool {
        let Ok(uri) = up.uri(&up.health_path) else {
            return false;
        };
        let Ok(mut req) = Request::builder().uri(uri).body(Empty::<Bytes>::new()) else {
            return false;
        };
        if let Ok(host) = HeaderValue::from_str(up.base.authority.as_str()) {
            req.headers_mut().insert(HOST, host);
        }
        req.headers_mut().insert(VIA, self.via.clone());
        let exchange = async {
            let resp = self.client.request(req).await.ok()?;
            let ok = resp.status().is_success();
            // Drain so the connection goes back to the pool.
            resp.into_body().collect().await.ok()?;
            Some(ok)
        };
        matches!(
            tokio::time::timeout(self.health_timeout, exchange).await,
            Ok(Some(true))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn ups(parents: &[&str]) -> Upstreams {
        let mut config = EdgeConfig::default();
        for p in parents {
            config.upstreams.push(UpstreamConfig::parent(*p));
        }
        config
            .upstreams
            .push(UpstreamConfig::origin("http://127.0.0.1:9"));
        Upstreams::new(&config, Arc::new(Metrics::new("t"))).unwrap()
    }

    #[test]
    fn base_urls() {
        let b = parse_base("http://127.0.0.1:8080/cdn/").unwrap();
        assert_eq!(b.authority.as_str(), "127.0.0.1:8080");
        assert_eq!(b.prefix, "/cdn");
        assert!(parse_base("https://x:8443").is_ok());
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("http://u:p@x").is_err());
        assert!(parse_base("nonsense").is_err());
    }

    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let three = ups(&["http://a:1", "http://b:1", "http://c:1"]);
        let two = ups(&["http://a:1", "http://b:1"]);
        let mut counts = std::collections::HashMap::new();
        let mut moved = 0;
        for i in 0..3000 {
            let key = format!("/vod/x/v0/{i}.m4s");
            let first = three.candidates(&key)[0].name.clone();
            *counts.entry(first.clone()).or_insert(0) += 1;
            let after = two.candidates(&key)[0].name.clone();
            if first != "http://c:1" && after != first {
                moved += 1;
            }
            // The origin comes after every parent.
            assert_eq!(three.candidates(&key)[3].role, Role::Origin);
        }
        for (name, n) in &counts {
            assert!((800..1200).contains(n), "{name}: {n}");
        }
        assert_eq!(moved, 0, "removing c moves only c's objects");
    }

    #[test]
    fn unhealthy_upstreams_go_last() {
        let u = ups(&["http://a:1", "http://b:1"]);
        let key = "/k";
        let first = u.candidates(key)[0].clone();
        for _ in 0..u.fall {
            u.failed(&first);
        }
        assert!(!first.is_healthy());
        let list = u.candidates(key);
        assert_ne!(list[0].name, first.name);
        assert_eq!(list.last().unwrap().name, first.name);
    }
}
