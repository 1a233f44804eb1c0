//! Prometheus metrics of the geo DNS, served at `GET /metrics` on `--metrics ADDR`.
//!
//! Families (prefix `dashcdn_geodns_`):
//! - `queries_total{qtype,rcode}`: query rate by type and result;
//! - `answers_by_pop_total{pop}`: which PoP geo-routed answers sent viewers to
//!   (`pop="all"` when every PoP was down);
//! - `ecs_queries_total{ecs}`: queries with an EDNS Client Subnet option (`present`) or
//!   located by their source address (`absent`);
//! - `query_duration_seconds`: time from a parsed query to its encoded answer;
//! - `pop_up{pop}`: 1 while a PoP is in the answers, from the health probes;
//! - `reloads_total{result}`: SIGHUP reloads applied or refused.
//!
//! Label values come from fixed sets (query types we serve, RCODEs) or from the config
//! (PoP names), never from packets, so hostile traffic cannot grow the series count.
//! Hot-path handles are resolved once (like the origin's `metrics.rs`): a `Family` lookup
//! locks and hashes, which at DNS rates costs more than the lookup it measures.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const QTYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "SOA", "NS", "TXT", "MX", "ANY", "OTHER", "NONE",
];
const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "OTHER",
];

fn qtype_index(t: Option<RecordType>) -> usize {
    match t {
        Some(RecordType::A) => 0,
        Some(RecordType::AAAA) => 1,
        Some(RecordType::CNAME) => 2,
        Some(RecordType::SOA) => 3,
        Some(RecordType::NS) => 4,
        Some(RecordType::TXT) => 5,
        Some(RecordType::MX) => 6,
        Some(RecordType::ANY) => 7,
        Some(_) => 8,
        None => 9,
    }
}

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        _ => 6,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueryLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PopLabels {
    pop: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EcsLabels {
    ecs: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// All metric families and the registry exposing them.
pub(crate) struct Metrics {
    registry: Registry,
    queries: Family<QueryLabels, Counter>,
    by_pop: Family<PopLabels, Counter>,
    pop_up: Family<PopLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    /// Rate-limited UDP responses: `[dropped, slipped]`.
    pub(crate) rrl: [Counter; 2],
    ecs: [Counter; 2],
    duration: DurationHistogram,
    /// `queries[qtype][rcode]` handles, filled on first use.
    hot: [[OnceLock<Counter>; RCODES.len()]; QTYPES.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dashcdn_geodns");
        let queries = Family::<QueryLabels, Counter>::default();
        let by_pop = Family::<PopLabels, Counter>::default();
        let pop_up = Family::<PopLabels, Gauge>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let ecs_family = Family::<EcsLabels, Counter>::default();
        let duration = DurationHistogram::default();
        registry.register(
            "queries",
            "DNS queries answered, by query type and RCODE",
            queries.clone(),
        );
        registry.register(
            "answers_by_pop",
            "Geo-routed answers by the PoP they sent the viewer to",
            by_pop.clone(),
        );
        registry.register(
            "ecs_queries",
            "Queries with (present) or without (absent) an EDNS Client Subnet option",
            ecs_family.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Time from a parsed query to its encoded answer",
            duration.clone(),
        );
        registry.register(
            "pop_up",
            "1 while the PoP passes its health checks",
            pop_up.clone(),
        );
        registry.register(
            "reloads",
            "Config/database reloads by result",
            reloads.clone(),
        );
        // One statement per label: `get_or_create` returns a read guard, and two of them
        // alive in one expression deadlock the family's RwLock on the second insert.
        let absent = ecs_family
            .get_or_create(&EcsLabels { ecs: "absent" })
            .clone();
        let present = ecs_family
            .get_or_create(&EcsLabels { ecs: "present" })
            .clone();
        let ecs = [absent, present];
        let rrl_family = Family::<ActionLabels, Counter>::default();
        registry.register(
            "rrl_responses",
            "UDP responses withheld by response rate limiting: dropped, or slipped (sent truncated)",
            rrl_family.clone(),
        );
        let dropped = rrl_family
            .get_or_create(&ActionLabels { action: "dropped" })
            .clone();
        let slipped = rrl_family
            .get_or_create(&ActionLabels { action: "slipped" })
            .clone();
        let rrl = [dropped, slipped];
        Metrics {
            registry,
            queries,
            by_pop,
            pop_up,
            reloads,
            rrl,
            ecs,
            duration,
            hot: Default::default(),
        }
    }

    /// Counts one answered query.
    pub(crate) fn query(
        &self,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        ecs: bool,
        took: Duration,
    ) {
        let (q, r) = (qtype_index(qtype), rcode_index(rcode));
        self.hot[q][r]
            .get_or_init(|| {
                self.queries
                    .get_or_create(&QueryLabels {
                        qtype: QTYPES[q],
                        rcode: RCODES[r],
                    })
                    .clone()
            })
            .inc();
        self.ecs[usize::from(ecs)].inc();
        self.duration.observe(took);
    }

    /// The counter of answers for `pop` (`"all"` for the all-down answer); callers keep it.
    pub(crate) fn pop_counter(&self, pop: &str) -> Counter {
        self.by_pop
            .get_or_create(&PopLabels {
                pop: pop.to_owned(),
            })
            .clone()
    }

    /// The `pop_up` gauge of `pop`.
    pub(crate) fn pop_up_gauge(&self, pop: &str) -> Gauge {
        self.pop_up
            .get_or_create(&PopLabels {
                pop: pop.to_owned(),
            })
            .clone()
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Upper bounds of [`DurationHistogram`]'s buckets: 5 µs doubling to ~20 ms (an answer
/// takes microseconds; anything in milliseconds is a stall), then +Inf.
const DURATION_BOUNDS_NS: [u64; 13] = {
    let mut b = [0u64; 13];
    let mut i = 0;
    while i < 13 {
        b[i] = 5_000 << i;
        i += 1;
    }
    b
};
/// Shards of [`DurationHistogram`]: threads are spread over them round-robin.
const DURATION_SHARDS: usize = 8;

/// `query_duration_seconds`: a histogram observed on every answer by every UDP thread.
/// prometheus-client's `Histogram` takes a write lock per observation, which the UDP
/// threads would contend for on every packet; here each thread adds to its own shard
/// (one cache line set of relaxed atomics) and `/metrics` sums the shards.
#[derive(Clone, Debug, Default)]
struct DurationHistogram {
    shards: Arc<[DurationShard; DURATION_SHARDS]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct DurationShard {
    count: AtomicU64,
    sum_ns: AtomicU64,
    buckets: [AtomicU64; 14],
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

impl DurationHistogram {
    fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = SHARD.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % DURATION_SHARDS);
            }
            s.get()
        });
        let shard = &self.shards[i];
        let bucket = DURATION_BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(DURATION_BOUNDS_NS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.count.fetch_add(1, Ordering::Relaxed);
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (mut count, mut sum_ns) = (0u64, 0u64);
        let mut buckets: Vec<(f64, u64)> = DURATION_BOUNDS_NS
            .iter()
            .map(|&b| (b as f64 / 1e9, 0))
            .chain(std::iter::once((f64::MAX, 0)))
            .collect();
        for shard in self.shards.iter() {
            count += shard.count.load(Ordering::Relaxed);
            sum_ns = sum_ns.wrapping_add(shard.sum_ns.load(Ordering::Relaxed));
            for (b, n) in buckets.iter_mut().zip(&shard.buckets) {
                b.1 += n.load(Ordering::Relaxed);
            }
        }
        encoder.encode_histogram::<NoLabelSet>(sum_ns as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_histogram_sums_the_shards_of_every_thread() {
        let m = Metrics::new();
        let q = |us| {
            m.query(
                Some(RecordType::A),
                ResponseCode::NoError,
                true,
                Duration::from_micros(us),
            )
        };
        q(3); // ≤ 5 µs
        std::thread::scope(|s| {
            s.spawn(|| q(7)); // ≤ 10 µs, from another thread (another shard)
            s.spawn(|| q(1_000_000)); // +Inf
        });
        let text = m.encode();
        for line in [
            "dashcdn_geodns_query_duration_seconds_count 3",
            "dashcdn_geodns_query_duration_seconds_bucket{le=\"0.000005\"} 1",
            "dashcdn_geodns_query_duration_seconds_bucket{le=\"0.00001\"} 2",
            "dashcdn_geodns_query_duration_seconds_bucket{le=\"0.02048\"} 2",
            "dashcdn_geodns_query_duration_seconds_bucket{le=\"+Inf\"} 3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("dashcdn_geodns_query_duration_seconds_sum "))
            .unwrap();
        assert!(
            (sum.parse::<f64>().unwrap() - 1.00001).abs() < 1e-9,
            "{sum}"
        );
    }
}
