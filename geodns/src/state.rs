//! What answering reads: the [`Snapshot`] of one config generation behind an `ArcSwap`,
//! and the metrics that outlive generations.
//!
//! A reload builds the new snapshot beside the old one and swaps the pointer; a query in
//! flight finishes on the snapshot it loaded, so none is dropped.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;

use hickory_proto::rr::LowerName;

use crate::config::GeodnsConfig;
use crate::dnssec::{self, Signer};
use crate::error::GeodnsError;
use crate::geo::Locator;
use crate::health::HealthTable;
use crate::metrics::Metrics;
use crate::rrl::Rrl;
use crate::zone::{PopChoice, Zones};

/// Everything one config generation answers from.
pub(crate) struct Snapshot {
    pub(crate) config: GeodnsConfig,
    pub(crate) zones: Zones,
    pub(crate) locator: Locator,
    pub(crate) health: Arc<HealthTable>,
    /// Online signing, when the config names a key folder with keys for our zones.
    pub(crate) signer: Option<Signer>,
    /// Response rate limiting, when configured (its buckets start empty on reload).
    pub(crate) rrl: Option<Rrl>,
    /// `answers_by_pop_total` handles, indexed like `config.pops`, plus the all-PoPs one.
    pop_counters: Vec<Counter>,
    all_counter: Counter,
    /// Unique per snapshot built in this process: what answer caches are stamped with (an
    /// address could be reused by a later snapshot once this one is freed).
    pub(crate) generation: u64,
}

/// Source of [`Snapshot::generation`].
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Snapshot {
    /// Opens the MaxMind database (blocking file I/O: call off the async workers) and
    /// builds the answer tables. The health of PoPs that stay is carried over.
    pub(crate) fn build(
        config: GeodnsConfig,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, GeodnsError> {
        let keys = match &config.dnssec_keys {
            Some(dir) => {
                let apexes: Vec<_> = config.zones.iter().map(|z| z.origin.clone()).collect();
                dnssec::load(dir, &apexes)?
            }
            None => Vec::new(),
        };
        let zones = Zones::build(&config, &|apex, ttl| {
            keys.iter()
                .find(|k| LowerName::new(k.apex()) == *apex)
                .map(|k| k.apex_records(ttl))
                .unwrap_or_default()
        });
        let signer = (!keys.is_empty()).then(|| Signer::new(keys));
        let locator = Locator::build(&config)?;
        let health = Arc::new(HealthTable::new(
            &config.pops,
            previous.map(|p| p.health.as_ref()),
        ));
        let pop_counters = config
            .pops
            .iter()
            .map(|p| metrics.pop_counter(&p.name))
            .collect();
        Ok(Snapshot {
            signer,
            rrl: Rrl::new(&config.rrl),
            zones,
            locator,
            health,
            pop_counters,
            all_counter: metrics.pop_counter("all"),
            config,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Counts one answer of a geo-routed name.
    pub(crate) fn count_geo(&self, choice: PopChoice) {
        match choice {
            PopChoice::One(i) => self.pop_counters[i].inc(),
            PopChoice::All => self.all_counter.inc(),
        };
    }
}

/// Shared by the UDP threads, the TCP handler and the reload path.
pub(crate) struct State {
    pub(crate) current: ArcSwap<Snapshot>,
    /// Counters that survive reloads (a reload is not a restart for Prometheus).
    pub(crate) metrics: Metrics,
}
