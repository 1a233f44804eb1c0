//! What every request of one edge shares: the configuration, the fill machinery (cache,
//! in-flight fills, upstreams, metrics: see [`Filler`]), the cache-key rules and the
//! prefetch bound. One per `run`, so two edges in one process share nothing.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::Semaphore;

use crate::access::AccessLog;
use crate::cache::{KeyRules, Store};
use crate::config::EdgeConfig;
use crate::fill::{FillBudget, Filler, Fills};
use crate::freshness::Defaults;
use crate::metrics::Metrics;
use crate::pass::Passes;
use crate::upstream::Upstreams;

/// Everything a request needs, shared by all connections.
pub(crate) struct Shared {
    pub(crate) config: EdgeConfig,
    /// The viewer-side limits resolved once (the connection cap may come from the
    /// open-file limit): the accept loop enforces them, `/_edge/stats` divides by them.
    pub(crate) limits: dashcdn_http::serve::Limits,
    /// What fills need (and the request path reads): a narrower state than this one, so
    /// `fill` never sees the request path's.
    pub(crate) fill: Arc<Filler>,
    pub(crate) rules: KeyRules,
    /// The access-log file, when `access_log_file` is set.
    pub(crate) access: Option<AccessLog>,
    /// Prefetch fills running at once (`prefetch_concurrency`).
    pub(crate) prefetch: Arc<Semaphore>,
}

impl Shared {
    pub(crate) fn new(config: EdgeConfig) -> Result<Shared, String> {
        let metrics = Arc::new(Metrics::new(&config.pop));
        let upstreams = Arc::new(Upstreams::new(&config, metrics.clone())?);
        let via = HeaderValue::from_str(&format!("1.1 {}", config.pop))
            .map_err(|_| format!("pop {:?} is not a valid header value", config.pop))?;
        let fill = Filler {
            store: Store::new(&config),
            fills: Fills::default(),
            upstreams,
            metrics,
            defaults: Defaults {
                negative_ttl: Duration::from_secs(config.negative_ttl_secs),
                stale_if_error: Duration::from_secs(config.default_stale_if_error_secs),
                stale_while_revalidate: Duration::from_secs(
                    config.default_stale_while_revalidate_secs,
                ),
                max_heuristic: Duration::from_secs(config.max_heuristic_secs),
            },
            via,
            read_timeout: EdgeConfig::ms(config.read_timeout_ms),
            max_object_size: config.max_object_size.0,
            budget: Arc::new(FillBudget::new(
                config.max_fill_bytes().0,
                config.cache_size.0,
            )),
            purge: RwLock::new(0),
            passes: Passes::new(),
        };
        let access = match (&config.access_log_file, config.access_log) {
            (Some(path), true) => {
                Some(AccessLog::open(path).map_err(|e| dashcdn_config::chain(&e))?)
            }
            _ => None,
        };
        Ok(Shared {
            access,
            limits: config.limits(),
            fill: Arc::new(fill),
            rules: KeyRules::new(&config),
            prefetch: Arc::new(Semaphore::new(config.prefetch_concurrency)),
            config,
        })
    }
}
