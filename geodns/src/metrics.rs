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

use std::sync::OnceLock;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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
    duration: Histogram,
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
        // 5 µs .. ~20 ms: an answer takes microseconds; anything in milliseconds is a stall.
        let duration = Histogram::new(exponential_buckets(0.000_005, 2.0, 13));
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
        self.duration.observe(took.as_secs_f64());
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
