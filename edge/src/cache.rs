//! The memory cache: stored responses ([`Entry`]) in a byte-weighted moka cache, and the
//! cache key.
//!
//! Why moka: a concurrent cache with a per-entry weigher (so `cache_size` is a byte
//! budget, not an entry count) and a choice of Window-TinyLFU or LRU. TinyLFU is the
//! default because its admission filter keeps a hot set of segments when a crawler or a
//! one-off binge scans thousands of cold ones; `edge/examples/policy.rs` replays a segment
//! workload against both and its table is in the README.
//!
//! Memory accounting: an entry weighs its body + header bytes + [`ENTRY_OVERHEAD`] (the
//! struct, the key, moka's node and frequency-sketch share, allocator slack). Bodies are
//! one allocation of exactly the object's size (the fill copies into it, see
//! [`crate::fill`]), so no `Bytes` slice keeps a larger parent buffer alive. moka applies
//! evictions in batches; [`Store::insert`] runs them right away so the budget holds at
//! every moment rather than eventually.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use tokio::time::Instant;

use dashcdn_http::hop;

use crate::config::{EdgeConfig, Eviction};
use crate::freshness::{Policy, Use};
use crate::headers::{computed_here, detach};

/// Bytes charged per entry beyond body and headers.
pub(crate) const ENTRY_OVERHEAD: u64 = 512;

/// One stored response.
#[derive(Debug)]
pub(crate) struct Entry {
    pub status: StatusCode,
    /// The upstream's end-to-end headers (hop-by-hop, `Age`, `X-Cache` removed) plus our
    /// `Via` and `Content-Length`, ready to be cloned into each response.
    pub headers: HeaderMap,
    /// Exactly the object, in one allocation of its size.
    pub body: Bytes,
    /// When it was stored here: resident time is `stored_at.elapsed()` (tokio's clock, so
    /// tests can pause time).
    pub stored_at: Instant,
    pub policy: Policy,
    /// Validators for revalidation upstream and conditional requests from viewers.
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
    /// This edge's live body bytes, given back on drop.
    live: LiveBytes,
}

/// Body bytes of every `Entry` of one edge alive, cached or not (evicted ones still being
/// sent, or not yet reclaimed): what the bodies really occupy, next to the weighted size.
/// One per edge (no static), so two edges in a process count apart.
pub(crate) type LiveBytes = Arc<AtomicI64>;

impl Drop for Entry {
    fn drop(&mut self) {
        self.live
            .fetch_sub(self.body.len() as i64, Ordering::Relaxed);
    }
}

impl Entry {
    pub(crate) fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        policy: Policy,
        live: &LiveBytes,
    ) -> Entry {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        let etag = headers.get(ETAG).cloned();
        let last_modified = headers.get(LAST_MODIFIED).cloned();
        live.fetch_add(body.len() as i64, Ordering::Relaxed);
        Entry {
            status,
            headers,
            body,
            stored_at: Instant::now(),
            policy,
            etag,
            last_modified,
            live: live.clone(),
        }
    }

    pub(crate) fn resident(&self) -> Duration {
        self.stored_at.elapsed()
    }

    pub(crate) fn usable(&self) -> Use {
        self.policy.usable(self.resident())
    }

    pub(crate) fn age(&self) -> Duration {
        self.policy.current_age(self.resident())
    }

    pub(crate) fn may_serve_on_error(&self) -> bool {
        self.policy.may_serve_on_error(self.resident())
    }

    /// RFC 9111 §4.3.4: a 304's headers replace the stored ones of the same name
    /// (hop-by-hop and what the edge computes itself excepted). Freshness is judged on
    /// the result, then [`Entry::refreshed`] makes the entry.
    pub(crate) fn refreshed_headers(&self, not_modified: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        let options = hop::connection_options(not_modified);
        let mut seen = std::collections::HashSet::new();
        for (name, value) in not_modified {
            if hop::is_connection_specific(name, &options) || computed_here(name) {
                continue;
            }
            if seen.insert(name.clone()) {
                headers.remove(name);
            }
            headers.append(name.clone(), detach(value));
        }
        headers
    }

    /// The entry refreshed by a 304: `headers` from [`Entry::refreshed_headers`], the
    /// freshness starting over. The body is shared, not copied.
    pub(crate) fn refreshed(&self, headers: HeaderMap, policy: Policy) -> Entry {
        Entry::new(self.status, headers, self.body.clone(), policy, &self.live)
    }

    /// What the entry costs in the byte budget.
    pub(crate) fn weight(&self, key: &str) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let w = self.body.len() as u64 + headers as u64 + key.len() as u64 + ENTRY_OVERHEAD;
        w.min(u32::MAX as u64) as u32
    }
}

/// The moka cache of entries, keyed by [`cache_key`].
pub(crate) struct Store {
    cache: Cache<Arc<str>, Arc<Entry>>,
    /// Body bytes of this edge's entries alive (see [`LiveBytes`]).
    pub(crate) live: LiveBytes,
}

impl Store {
    pub(crate) fn new(config: &EdgeConfig) -> Store {
        let policy = match config.eviction {
            Eviction::Tinylfu => EvictionPolicy::tiny_lfu(),
            Eviction::Lru => EvictionPolicy::lru(),
        };
        let cache = Cache::builder()
            .max_capacity(config.cache_size.0)
            .weigher(|k: &Arc<str>, v: &Arc<Entry>| v.weight(k))
            .eviction_policy(policy)
            .build();
        Store {
            cache,
            live: LiveBytes::default(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    /// Stores `entry` and applies the evictions it causes at once.
    pub(crate) fn insert(&self, key: Arc<str>, entry: Arc<Entry>) {
        self.cache.insert(key, entry);
        self.cache.run_pending_tasks();
    }

    /// Presence without counting an access (prefetch must not make objects look popular).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }

    pub(crate) fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Removes every key `matches` accepts; returns how many.
    pub(crate) fn remove_matching(&self, matches: impl Fn(&str) -> bool) -> u64 {
        let mut n = 0;
        let keys: Vec<Arc<Arc<str>>> = self
            .cache
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            if self.cache.remove(&**k).is_some() {
                n += 1;
            }
        }
        self.cache.run_pending_tasks();
        n
    }

    /// Weighted size in bytes (what `cache_size` bounds).
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    pub(crate) fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    pub(crate) fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}

/// Why a request target cannot be a cache key. All are 400s.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum KeyError {
    #[error("path does not start with /")]
    NotAbsolute,
    #[error("path has a dot segment (. or ..)")]
    DotSegment,
    #[error("path has a control character, backslash or encoded NUL/slash")]
    BadByte,
}

/// Cache-key options from the configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyRules {
    pub ignore_query: bool,
    pub drop_params: Vec<String>,
}

impl KeyRules {
    pub(crate) fn new(config: &EdgeConfig) -> KeyRules {
        KeyRules {
            ignore_query: config.ignore_query,
            drop_params: config.drop_query_params.clone(),
        }
    }

    fn dropped(&self, param: &str) -> bool {
        let name = param.split('=').next().unwrap_or("");
        self.drop_params.iter().any(|d| match d.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == d,
        })
    }
}

/// The cache key (and the upstream request target) of a request: the path, refused if it
/// could walk out of a directory upstream, plus the query with dropped parameters
/// removed and the rest sorted (so `?a=1&b=2` and `?b=2&a=1` are one object).
pub(crate) fn cache_key(
    path: &str,
    query: Option<&str>,
    rules: &KeyRules,
) -> Result<String, KeyError> {
    if !path.starts_with('/') {
        return Err(KeyError::NotAbsolute);
    }
    for seg in path.split('/') {
        if seg == "." || seg == ".." {
            return Err(KeyError::DotSegment);
        }
        // Percent-encoded tricks only matter when there is a `%` at all (rarely).
        if seg.contains('%') {
            let lower = seg.to_ascii_lowercase();
            let decoded = lower.replace("%2e", ".");
            if decoded == "." || decoded == ".." {
                return Err(KeyError::DotSegment);
            }
            if lower.contains("%00") || lower.contains("%2f") || lower.contains("%5c") {
                return Err(KeyError::BadByte);
            }
        }
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
        return Err(KeyError::BadByte);
    }
    let mut key = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    key.push_str(path);
    match query {
        Some(q) if !rules.ignore_query && !q.is_empty() => {
            if q.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(KeyError::BadByte);
            }
            let mut params: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty() && !rules.dropped(p))
                .collect();
            if !params.is_empty() {
                params.sort_unstable();
                key.push('?');
                key.push_str(&params.join("&"));
            }
        }
        _ => {}
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    #[test]
    fn keys_normalise_queries() {
        let r = KeyRules {
            ignore_query: false,
            drop_params: vec!["utm_*".into(), "token".into()],
        };
        assert_eq!(cache_key("/a/1.m4s", None, &r).unwrap(), "/a/1.m4s");
        assert_eq!(
            cache_key("/a", Some("b=2&a=1&utm_source=x&token=t"), &r).unwrap(),
            "/a?a=1&b=2"
        );
        assert_eq!(cache_key("/a", Some("token=1"), &r).unwrap(), "/a");
        let ignore = KeyRules {
            ignore_query: true,
            drop_params: vec![],
        };
        assert_eq!(cache_key("/a", Some("x=1"), &ignore).unwrap(), "/a");
    }

    #[test]
    fn keys_refuse_traversal() {
        let r = KeyRules::default();
        for p in ["/vod/../etc/passwd", "/vod/%2e%2E/x", "/./a", "/a/.."] {
            assert_eq!(cache_key(p, None, &r), Err(KeyError::DotSegment), "{p}");
        }
        for p in ["/a%00b", "/a%2fb", "/a\\b", "/a%5Cb"] {
            assert_eq!(cache_key(p, None, &r), Err(KeyError::BadByte), "{p}");
        }
        assert_eq!(cache_key("*", None, &r), Err(KeyError::NotAbsolute));
        assert!(cache_key("/a/..b/c.m4s", None, &r).is_ok());
    }

    fn entry(len: usize) -> Arc<Entry> {
        let p = Policy {
            lifetime: Duration::from_secs(60),
            initial_age: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        };
        Arc::new(Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![0; len]),
            p,
            &LiveBytes::default(),
        ))
    }

    #[test]
    fn weight_bounds_the_store() {
        let config = EdgeConfig {
            cache_size: ByteSize(4 << 20),
            eviction: Eviction::Lru,
            ..EdgeConfig::default()
        };
        let store = Store::new(&config);
        for i in 0..20 {
            store.insert(format!("/{i}").into(), entry(1 << 20));
            assert!(store.bytes() <= 4 << 20, "{} after {i}", store.bytes());
        }
        assert!(store.entries() >= 2, "{}", store.entries());
        assert!(store.get("/19").is_some(), "LRU keeps the newest");
    }

    #[test]
    fn purge_by_prefix() {
        let store = Store::new(&EdgeConfig::default());
        for k in ["/a/1", "/a/2", "/b/1"] {
            store.insert(k.into(), entry(10));
        }
        assert_eq!(store.remove_matching(|k| k.starts_with("/a/")), 2);
        assert!(store.get("/a/1").is_none() && store.get("/b/1").is_some());
    }
}
