//! Prometheus metrics (`GET /_edge/metrics`) and the counters behind `/_edge/stats`.
//!
//! Every family has a fixed, small label set (cache status, upstream URL from the
//! config, outcome class), so no request can create series. The hot-path counters are
//! plain handles kept in arrays, so a hit costs a few relaxed atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use dashcdn_http::serve::ConnEvent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a request was answered: the `X-Cache` header and the `cache` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CacheStatus {
    /// Fresh copy from memory.
    Hit,
    /// This request started the upstream fetch.
    Miss,
    /// Joined a fetch another request started (request coalescing).
    Coalesced,
    /// Expired copy served: `stale-while-revalidate`, or `stale-if-error` when the
    /// upstream failed or timed out.
    Stale,
    /// Expired copy confirmed by the upstream with a 304.
    Revalidated,
    /// Not cacheable (private, Set-Cookie, too large): fetched for this viewer alone.
    Pass,
    /// Answered by the edge itself without the cache: errors, rejections, preflights.
    Local,
}

impl CacheStatus {
    pub(crate) const ALL: [CacheStatus; 7] = [
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::Coalesced,
        CacheStatus::Stale,
        CacheStatus::Revalidated,
        CacheStatus::Pass,
        CacheStatus::Local,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Coalesced => "COALESCED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Pass => "PASS",
            CacheStatus::Local => "LOCAL",
        }
    }

    fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Stale => "stale",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Pass => "pass",
            CacheStatus::Local => "local",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamOnly {
    upstream: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: [Counter; 7],
    bytes_from_cache: Counter,
    bytes_from_upstream: Counter,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_latency: Family<UpstreamOnly, Histogram>,
    upstream_up: Family<UpstreamOnly, Gauge>,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    in_flight_gauge: Gauge,
    fills_gauge: Gauge,
    connections_gauge: Gauge,
    purged: Counter,
    prefetched: Counter,
    rejected: Counter,
    access_log_dropped: Counter,
    closed_by_timeout: Family<ReasonLabels, Counter>,
    /// Live values read by `/_edge/stats` and copied into gauges at scrape time.
    pub in_flight: AtomicI64,
    pub fills: AtomicI64,
    pub connections: AtomicI64,
    /// Requests served through the cache path (not admin, not rejected).
    pub cache_requests: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(pop: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "dashcdn_edge",
            [(
                std::borrow::Cow::Borrowed("pop"),
                std::borrow::Cow::Owned(pop.to_string()),
            )]
            .into_iter(),
        );
        let requests_family = Family::<CacheLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by cache status (X-Cache)",
            requests_family.clone(),
        );
        let requests = CacheStatus::ALL.map(|s| {
            requests_family
                .get_or_create(&CacheLabels { cache: s.label() })
                .clone()
        });
        let bytes_from_cache = Counter::default();
        registry.register(
            "bytes_from_cache",
            "Body bytes served from memory (hits, stale, 304-refreshed)",
            bytes_from_cache.clone(),
        );
        let bytes_from_upstream = Counter::default();
        registry.register(
            "bytes_from_upstream",
            "Body bytes received from upstreams",
            bytes_from_upstream.clone(),
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests sent to upstreams, by upstream and outcome (2xx..5xx, error, timeout)",
            upstream_requests.clone(),
        );
        let upstream_latency = Family::<UpstreamOnly, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_1, 2.0, 18))) as fn() -> Histogram,
        );
        registry.register(
            "upstream_response_seconds",
            "Time from sending a request upstream to its response head",
            upstream_latency.clone(),
        );
        let upstream_up = Family::<UpstreamOnly, Gauge>::default();
        registry.register(
            "upstream_healthy",
            "1 if the upstream passes health checks",
            upstream_up.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let cache_bytes = gauge(&mut registry, "cache_bytes", "Weighted size of the cache");
        let cache_entries = gauge(&mut registry, "cache_entries", "Objects in the cache");
        let in_flight_gauge = gauge(&mut registry, "in_flight_requests", "Requests being served");
        let fills_gauge = gauge(&mut registry, "in_flight_fills", "Upstream fetches running");
        let connections_gauge = gauge(&mut registry, "connections", "Open viewer connections");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let purged = counter(&mut registry, "purged_objects", "Objects removed by purge");
        let prefetched = counter(&mut registry, "prefetches", "Segment prefetches started");
        let rejected = counter(
            &mut registry,
            "rejected_connections",
            "Connections refused with 503 at max_connections or max_connections_per_client",
        );
        let access_log_dropped = counter(
            &mut registry,
            "access_log_dropped_lines",
            "Access-log lines dropped because the writer could not keep up with the disk",
        );
        let closed_by_timeout = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connection_timeouts",
            "Viewer connections closed by a timeout (header, idle, send)",
            closed_by_timeout.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes_from_cache,
            bytes_from_upstream,
            upstream_requests,
            upstream_latency,
            upstream_up,
            cache_bytes,
            cache_entries,
            in_flight_gauge,
            fills_gauge,
            connections_gauge,
            purged,
            prefetched,
            rejected,
            access_log_dropped,
            closed_by_timeout,
            in_flight: AtomicI64::new(0),
            fills: AtomicI64::new(0),
            connections: AtomicI64::new(0),
            cache_requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn request(&self, status: CacheStatus) {
        self.requests[status as usize].inc();
        if status != CacheStatus::Local {
            self.cache_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count(&self, status: CacheStatus) -> u64 {
        self.requests[status as usize].get()
    }

    pub(crate) fn served_from_cache(&self, bytes: u64) {
        self.bytes_from_cache.inc_by(bytes);
    }

    pub(crate) fn received_from_upstream(&self, bytes: u64) {
        self.bytes_from_upstream.inc_by(bytes);
    }

    pub(crate) fn upstream_request(
        &self,
        upstream: &str,
        outcome: &'static str,
        took: Option<Duration>,
    ) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
                outcome,
            })
            .inc();
        if let Some(t) = took {
            self.upstream_latency
                .get_or_create(&UpstreamOnly {
                    upstream: upstream.to_string(),
                })
                .observe(t.as_secs_f64());
        }
    }

    pub(crate) fn upstream_health(&self, upstream: &str, up: bool) {
        self.upstream_up
            .get_or_create(&UpstreamOnly {
                upstream: upstream.to_string(),
            })
            .set(up as i64);
    }

    pub(crate) fn purged(&self, n: u64) {
        self.purged.inc_by(n);
    }

    pub(crate) fn prefetched(&self) {
        self.prefetched.inc();
    }

    /// Requests answered without a fetch of their own (hit, stale, coalesced,
    /// revalidated) over all requests that went through the cache.
    pub(crate) fn hit_ratio(&self) -> f64 {
        let served = self.count(CacheStatus::Hit)
            + self.count(CacheStatus::Stale)
            + self.count(CacheStatus::Coalesced)
            + self.count(CacheStatus::Revalidated);
        let total = self.cache_requests.load(Ordering::Relaxed);
        if total == 0 {
            0.0
        } else {
            served as f64 / total as f64
        }
    }

    /// The metrics page; `access_log_new_drops`: access-log lines dropped since the last
    /// scrape ([`dashcdn_http::access_log::AccessLog::new_drops`]).
    pub(crate) fn encode(
        &self,
        cache_bytes: u64,
        cache_entries: u64,
        access_log_new_drops: u64,
    ) -> String {
        self.access_log_dropped.inc_by(access_log_new_drops);
        self.cache_bytes.set(cache_bytes as i64);
        self.cache_entries.set(cache_entries as i64);
        self.in_flight_gauge
            .set(self.in_flight.load(Ordering::Relaxed));
        self.fills_gauge.set(self.fills.load(Ordering::Relaxed));
        self.connections_gauge
            .set(self.connections.load(Ordering::Relaxed));
        let mut out = String::with_capacity(8192);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            let _ = writeln!(out, "# encoding error: {e}");
        }
        out
    }
}

/// The shared accept loop reports connections here: the `connections` gauge, refusals and
/// timeouts are this edge's own (no statics, so two edges in one process stay apart).
impl dashcdn_http::serve::Observer for Metrics {
    fn event(&self, event: ConnEvent) {
        match event {
            ConnEvent::Accepted => {
                self.connections.fetch_add(1, Ordering::Relaxed);
            }
            ConnEvent::Closed => {
                self.connections.fetch_sub(1, Ordering::Relaxed);
            }
            ConnEvent::RefusedCapacity | ConnEvent::RefusedPerClient => {
                self.rejected.inc();
            }
            ConnEvent::HeaderTimeout | ConnEvent::IdleTimeout | ConnEvent::SendTimeout => {
                self.closed_by_timeout
                    .get_or_create(&ReasonLabels {
                        reason: event.as_str(),
                    })
                    .inc();
            }
        }
    }
}
