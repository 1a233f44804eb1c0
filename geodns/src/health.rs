//! Health of each PoP, from probing its edge's `/_edge/healthz`.
//!
//! One probe task per PoP with a `health_url`: every `interval` a `GET` with a `timeout`;
//! a 2xx is a pass, anything else (refused, timeout, 5xx) a failure. A PoP that fails
//! `fall` probes in a row leaves the answers; one that then passes `rise` in a row comes
//! back (hysteresis, so a flapping edge does not flap the DNS). So a dead edge leaves the
//! answers at most `fall × (interval + timeout)` after it stopped answering
//! ([`crate::config::HealthConfig::detection_bound`]).
//!
//! PoPs start *up*: a freshly started or reloaded server answers at once rather than
//! waiting for `rise` probes, and the state of a PoP that keeps its name and URL across a
//! reload is carried over.
//!
//! With `shed_load`, each probe also reads `/_edge/stats` (same host) and a PoP that says
//! `"overloaded": true`, or whose `load` reaches its configured `capacity`, is avoided
//! while another healthy PoP is available.
//!
//! The state is a table of atomics read on every query without locks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::{HealthConfig, PopConfig};

/// Health of one PoP.
#[derive(Debug)]
pub(crate) struct PopHealth {
    pub name: String,
    /// The probed URL; `None` means never probed, always up.
    pub url: Option<String>,
    up: AtomicBool,
    shedding: AtomicBool,
    /// Consecutive failures while up / passes while down.
    streak: AtomicU32,
    /// Last reported `load` (f64 bits), for `explain` and metrics.
    load: AtomicU64,
}

impl PopHealth {
    fn new(name: &str, url: Option<String>) -> PopHealth {
        PopHealth {
            name: name.to_owned(),
            url,
            up: AtomicBool::new(true),
            shedding: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            load: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Applies one probe result; returns the new state if it changed.
    fn record(&self, pass: bool, config: &HealthConfig) -> Option<bool> {
        let up = self.is_up();
        if pass == up {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if up { config.fall } else { config.rise };
        if streak >= needed {
            self.up.store(pass, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
            Some(pass)
        } else {
            None
        }
    }
}

/// The health of every PoP of one config generation, indexed like `config.pops`.
#[derive(Debug)]
pub(crate) struct HealthTable {
    pub pops: Vec<PopHealth>,
    /// Bumped on every change of any PoP's up/shedding state: answer caches keyed on it
    /// are invalidated by a health change.
    epoch: AtomicU64,
}

impl HealthTable {
    /// A table for `pops`, carrying over the state of PoPs of `previous` with the same
    /// name and URL.
    pub(crate) fn new(pops: &[PopConfig], previous: Option<&HealthTable>) -> HealthTable {
        let pops = pops
            .iter()
            .map(|p| {
                let h = PopHealth::new(&p.name, p.health_url.clone());
                if let Some(old) = previous.and_then(|t| {
                    t.pops
                        .iter()
                        .find(|o| o.name == p.name && o.url == p.health_url)
                }) {
                    h.up.store(old.is_up(), Ordering::Relaxed);
                    h.shedding
                        .store(old.shedding.load(Ordering::Relaxed), Ordering::Relaxed);
                    h.streak
                        .store(old.streak.load(Ordering::Relaxed), Ordering::Relaxed);
                    h.load
                        .store(old.load.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                h
            })
            .collect();
        HealthTable {
            pops,
            epoch: AtomicU64::new(0),
        }
    }

    /// Changes whenever a PoP enters or leaves the answers.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn is_up(&self, pop: usize) -> bool {
        self.pops[pop].is_up()
    }

    pub(crate) fn is_shedding(&self, pop: usize) -> bool {
        self.pops[pop].shedding.load(Ordering::Relaxed)
    }
}

/// What we read from an edge's `/_edge/stats`; other fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EdgeStats {
    load: f64,
    overloaded: bool,
}

/// Starts one probe task per PoP that has a `health_url`. Aborting the returned set
/// (or dropping it) stops them.
pub(crate) fn spawn_probers(
    table: Arc<HealthTable>,
    pops: &[PopConfig],
    config: &HealthConfig,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        // Probes go straight to the edge; a proxy from the environment would probe the proxy.
        .no_proxy()
        .build()
        .expect("a plain HTTP client always builds");
    for (i, pop) in pops.iter().enumerate() {
        let Some(url) = pop.health_url.clone() else {
            continue;
        };
        let stats_url = config.shed_load.then(|| stats_url_for(&url));
        let (table, client, config) = (table.clone(), client.clone(), config.clone());
        let capacity = pop.capacity;
        set.spawn(async move {
            let mut tick = tokio::time::interval(config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let pass = probe(&client, &url).await;
                let health = &table.pops[i];
                if let Some(now_up) = health.record(pass, &config) {
                    table.bump();
                    if now_up {
                        info!(pop = %health.name, %url, "PoP is healthy again: back in the answers");
                    } else {
                        warn!(pop = %health.name, %url, fall = config.fall, "PoP failed its health checks: removed from the answers");
                    }
                }
                if let Some(stats_url) = &stats_url {
                    let shed = match read_stats(&client, stats_url).await {
                        Some(s) => {
                            health.load.store(s.load.to_bits(), Ordering::Relaxed);
                            s.overloaded || capacity.is_some_and(|c| s.load >= c)
                        }
                        None => false,
                    };
                    if health.shedding.swap(shed, Ordering::Relaxed) != shed {
                        table.bump();
                        info!(pop = %health.name, shedding = shed, "PoP load shedding changed");
                    }
                }
            }
        });
    }
    set
}

async fn probe(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            if !ok {
                debug!(%url, status = %r.status(), "health probe failed");
            }
            ok
        }
        Err(error) => {
            debug!(%url, %error, "health probe failed");
            false
        }
    }
}

async fn read_stats(client: &reqwest::Client, url: &str) -> Option<EdgeStats> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<EdgeStats>().await.ok()
}

/// `http://h:p/_edge/healthz` → `http://h:p/_edge/stats` (or the URL's origin + path).
fn stats_url_for(health_url: &str) -> String {
    match health_url.strip_suffix("/healthz") {
        Some(base) => format!("{base}/stats"),
        None => {
            let after_scheme = health_url.find("://").map(|i| i + 3).unwrap_or(0);
            let end = health_url[after_scheme..]
                .find('/')
                .map(|i| i + after_scheme)
                .unwrap_or(health_url.len());
            format!("{}/_edge/stats", &health_url[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_hysteresis() {
        let c = HealthConfig {
            fall: 3,
            rise: 2,
            ..HealthConfig::default()
        };
        let h = PopHealth::new("x", None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(true, &c), None); // streak broken
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.record(true, &c), None);
        assert_eq!(h.record(true, &c), Some(true));
        assert!(h.is_up());
    }

    #[test]
    fn stats_url_sits_beside_healthz() {
        assert_eq!(
            stats_url_for("http://127.0.0.1:81/_edge/healthz"),
            "http://127.0.0.1:81/_edge/stats"
        );
        assert_eq!(
            stats_url_for("http://127.0.0.1:81/health"),
            "http://127.0.0.1:81/_edge/stats"
        );
    }
}
