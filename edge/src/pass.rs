//! Hit-for-pass (Varnish's name): keys whose last response was not shareable. For a while
//! (60 s), requests for them go straight upstream instead of queueing on a fill that will
//! not be stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Passes {
    keys: moka::sync::Cache<Arc<str>, ()>,
    /// Keys ever remembered: while 0, the lookup in `keys` is skipped (a hit costs less).
    ever: AtomicU64,
}

impl Passes {
    pub(crate) fn new() -> Passes {
        Passes {
            keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            ever: AtomicU64::new(0),
        }
    }

    pub(crate) fn remember(&self, key: &Arc<str>) {
        self.ever.fetch_add(1, Ordering::Relaxed);
        self.keys.insert(key.clone(), ());
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.ever.load(Ordering::Relaxed) > 0 && self.keys.contains_key(key)
    }

    /// Forgets every key `matches` accepts (purge).
    pub(crate) fn forget(&self, matches: impl Fn(&str) -> bool) {
        let keys: Vec<Arc<Arc<str>>> = self
            .keys
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            self.keys.invalidate(&**k);
        }
    }
}
