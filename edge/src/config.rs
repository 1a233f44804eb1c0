//! Configuration of `dashcdn edge`.
//!
//! [`EdgeConfig`] is both the TOML file (see `edge/example.toml`, parsed by a test) and the
//! runtime configuration: every key is optional (`#[serde(default)]`), unknown keys are
//! refused (`deny_unknown_fields`), and [`EdgeConfig::validate`] checks what serde cannot
//! (URLs, non-zero limits). CLI flags override the file by assigning the public fields after
//! [`EdgeConfig::load`]. Durations are integers with their unit in the key (`_ms`, `_secs`);
//! sizes take an integer of bytes or a string with a binary or decimal suffix (`"2GiB"`,
//! `"512MB"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written `2GiB`, `512MiB`, `64MB`, `1000` in files and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size: expected e.g. 2GiB, 512MiB, 1000000"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "{s:?}: unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ))
            }
        };
        let bytes = num * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("{s:?} is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= m && b.is_multiple_of(m) {
                return write!(f, "{}{unit}", b / m);
            }
        }
        write!(f, "{b}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Whether an upstream is the origin or a parent edge (a "shield").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The origin (or one of several replicas, tried in the order listed).
    #[default]
    Origin,
    /// Another edge: objects are spread over the parents by rendezvous hashing of the key.
    Parent,
}

/// One upstream the edge may contact. Nothing else is ever contacted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port` with an optional path prefix; plain HTTP only.
    pub url: String,
    #[serde(default)]
    pub role: Role,
    /// Probed with GET by the health checker. Default: `/healthz` for an origin (what
    /// `dashcdn origin serve` answers), `/_edge/healthz` for a parent edge.
    #[serde(default)]
    pub health_path: Option<String>,
}

impl UpstreamConfig {
    pub fn origin(url: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            url: url.into(),
            role: Role::Origin,
            health_path: None,
        }
    }

    pub fn parent(url: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            url: url.into(),
            role: Role::Parent,
            health_path: None,
        }
    }

    /// The configured health path or the role's default.
    pub fn health_path(&self) -> &str {
        match (&self.health_path, self.role) {
            (Some(p), _) => p,
            (None, Role::Origin) => "/healthz",
            (None, Role::Parent) => "/_edge/healthz",
        }
    }
}

/// Which entries moka evicts and admits. See `edge/examples/policy.rs` for the numbers
/// that chose the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    /// Window TinyLFU: a frequency sketch decides whether a new object may displace the
    /// LRU victim, so a one-off scan cannot flush the hot set.
    #[default]
    Tinylfu,
    /// Plain least-recently-used, every new object admitted.
    Lru,
}

/// The whole edge configuration. `EdgeConfig::default()` is what an empty file gives.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address `dashcdn edge` binds ([`crate::run`] takes a bound listener instead).
    pub listen: SocketAddr,
    /// This PoP's name: `Via: 1.1 <pop>`, `/_edge/stats`, loop detection.
    pub pop: String,
    /// Memory budget of the cache: bodies + headers + per-entry overhead.
    pub cache_size: ByteSize,
    /// Larger objects are passed through, never cached (nor coalesced).
    pub max_object_size: ByteSize,
    /// Body bytes all in-flight fills may hold together; also what bodies outside the
    /// cache (evicted ones still being sent) may add to it: every body the edge holds
    /// stays within `cache_size + max_fill_bytes`. A fill that would go beyond is passed
    /// through instead (streamed to its viewer, never buffered). Default: a quarter of
    /// `cache_size`.
    pub max_fill_bytes: Option<ByteSize>,
    /// Where misses go: origins (failover in order) and parent edges (rendezvous hashed).
    pub upstreams: Vec<UpstreamConfig>,
    /// When every parent fails, go to the origins directly.
    pub parent_fallback_to_origin: bool,
    /// Bearer token of `POST /_edge/purge`; without one, purge is disabled (401).
    pub purge_token: Option<String>,
    pub eviction: Eviction,
    /// Drop the whole query string from cache keys and upstream requests.
    pub ignore_query: bool,
    /// Query parameters dropped from keys (e.g. tracking tokens); a trailing `*` matches
    /// a prefix (`utm_*`).
    pub drop_query_params: Vec<String>,
    /// How long a 404 is cached (also the cap when the 404 says longer).
    pub negative_ttl_secs: u64,
    /// `stale-if-error` assumed when a response has none (Varnish's "grace"): how long an
    /// expired object may still be served when the upstream is down, slow or failing.
    pub default_stale_if_error_secs: u64,
    /// `stale-while-revalidate` assumed when a response has none.
    pub default_stale_while_revalidate_secs: u64,
    /// Cap on the RFC 9111 §4.2.2 heuristic lifetime (10% of Date − Last-Modified).
    pub max_heuristic_secs: u64,
    /// TCP connect timeout towards an upstream.
    pub connect_timeout_ms: u64,
    /// Time from sending the request until the upstream's response head arrives.
    pub first_byte_timeout_ms: u64,
    /// Longest gap between two body chunks from an upstream.
    pub read_timeout_ms: u64,
    /// A viewer must send a whole request head within this, counted from the accept or
    /// from the first byte of a kept-alive connection's next request (slowloris).
    pub header_read_timeout_ms: u64,
    /// A kept-alive viewer connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A response whose viewer accepts no byte for this long is dropped with its
    /// connection, so slow readers cannot pin bodies in memory.
    pub send_timeout_ms: u64,
    /// Idle upstream connections are closed after this.
    pub pool_idle_timeout_secs: u64,
    pub pool_max_idle_per_host: usize,
    /// Viewer connections; more are answered 503 and closed. Default: derived from the
    /// open-file limit (`dashcdn_http::serve::fd_limits`).
    pub max_connections: Option<usize>,
    /// Connections one viewer address may hold; more are answered 503 and closed.
    /// Default: a quarter of `max_connections`.
    pub max_connections_per_client: Option<usize>,
    /// Requests being served at once, the other denominator of `/_edge/stats` `load`.
    pub max_in_flight: usize,
    /// `load` at or above this is reported as `overloaded` to geodns.
    pub overload_threshold: f64,
    /// Request head limit (431 beyond).
    pub max_header_bytes: usize,
    /// Request-target limit (414 beyond).
    pub max_uri_bytes: usize,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    /// Consecutive failures (probes or requests) before an upstream is marked down.
    pub health_fall: u32,
    /// Consecutive successful probes before it is marked up again.
    pub health_rise: u32,
    /// After serving `.../{n}.m4s`, fetch this many following segments (0 = off).
    pub prefetch_segments: u32,
    /// Prefetch fills running at once; more are skipped, never queued.
    pub prefetch_concurrency: usize,
    /// One `tracing` line per request (target `dashcdn_edge::access`).
    pub access_log: bool,
    /// Write the access log to this file (one line per request, written off the request
    /// path, reopened on SIGHUP) instead of as `tracing` events.
    pub access_log_file: Option<std::path::PathBuf>,
    /// Answer CORS preflights (`OPTIONS`) like the origin does, for dash.js.
    pub cors: bool,
    /// CA certificate(s) that `https://` upstreams must chain to; the system roots when unset.
    pub upstream_ca: Option<std::path::PathBuf>,
    /// HTTPS listener and ACME (`[tls]`, see docs/tls.md).
    pub tls: dashcdn_http::https::TlsArgs,
}

impl EdgeConfig {
    /// `max_fill_bytes`, or its default: a quarter of `cache_size` (at least 1 MiB).
    pub fn max_fill_bytes(&self) -> ByteSize {
        self.max_fill_bytes
            .unwrap_or(ByteSize((self.cache_size.0 / 4).max(1 << 20)))
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            listen: "127.0.0.1:8081".parse().expect("a socket address"),
            pop: "edge".into(),
            cache_size: ByteSize(256 << 20),
            max_object_size: ByteSize(64 << 20),
            max_fill_bytes: None,
            upstreams: Vec::new(),
            parent_fallback_to_origin: true,
            purge_token: None,
            eviction: Eviction::default(),
            ignore_query: false,
            drop_query_params: Vec::new(),
            negative_ttl_secs: 10,
            default_stale_if_error_secs: 86_400,
            default_stale_while_revalidate_secs: 0,
            max_heuristic_secs: 86_400,
            connect_timeout_ms: 2_000,
            first_byte_timeout_ms: 10_000,
            read_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            send_timeout_ms: 30_000,
            pool_idle_timeout_secs: 90,
            pool_max_idle_per_host: 256,
            max_connections: None,
            max_connections_per_client: None,
            max_in_flight: 4_096,
            overload_threshold: 0.9,
            max_header_bytes: 16 << 10,
            max_uri_bytes: 8 << 10,
            health_interval_ms: 2_000,
            health_timeout_ms: 1_000,
            health_fall: 3,
            health_rise: 2,
            prefetch_segments: 0,
            prefetch_concurrency: 4,
            access_log: true,
            access_log_file: None,
            cors: true,
            upstream_ca: None,
            tls: Default::default(),
        }
    }
}

/// `scheme://authority[/prefix]` of an upstream, validated.
#[derive(Clone, Debug)]
pub(crate) struct Base {
    /// `http` or `https` (verified against `upstream_ca` or the system roots).
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// Path prefix without a trailing slash ("" for none).
    pub(crate) prefix: String,
}

/// Parses an upstream URL: `http://` or `https://host:port[/prefix]`.
pub(crate) fn parse_base(url: &str) -> Result<Base, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected http://host:port"))?;
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
        _ => return Err("only http:// and https:// upstreams are supported".into()),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| "no host:port".to_string())?;
    if authority.as_str().contains('@') {
        return Err("credentials in upstream URLs are not supported".into());
    }
    if uri.query().is_some() {
        return Err("an upstream URL cannot have a query".into());
    }
    let prefix = uri.path().trim_end_matches('/').to_string();
    Ok(Base {
        scheme,
        authority,
        prefix,
    })
}

pub(crate) use dashcdn_config::ConfigError;

fn field(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::field(field, value, reason)
}

impl EdgeConfig {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<EdgeConfig, ConfigError> {
        let config: EdgeConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<EdgeConfig, ConfigError> {
        dashcdn_config::load(path.as_ref(), |text, _| EdgeConfig::from_toml(text))
    }

    /// Checks what the types do not: called by [`crate::run`] too, so a config built in
    /// code is held to the same rules as a file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return Err(field(
                "upstreams",
                "[]",
                "at least one upstream is needed (--upstream http://origin:8080)",
            ));
        }
        for u in &self.upstreams {
            parse_base(&u.url).map_err(|reason| field("upstreams.url", &u.url, reason))?;
            let hp = u.health_path();
            if !hp.starts_with('/') {
                return Err(field("upstreams.health_path", hp, "must start with /"));
            }
        }
        if self.pop.is_empty()
            || !self
                .pop
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(field(
                "pop",
                &self.pop,
                "must be a non-empty name of letters, digits, '-', '_', '.'",
            ));
        }
        if self.cache_size.0 < 1 << 20 {
            return Err(field(
                "cache_size",
                self.cache_size,
                "must be at least 1MiB",
            ));
        }
        if self.max_object_size.0 == 0 || self.max_object_size.0 > u32::MAX as u64 / 2 {
            return Err(field(
                "max_object_size",
                self.max_object_size,
                "must be between 1 byte and 2GiB",
            ));
        }
        for (name, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("send_timeout_ms", self.send_timeout_ms),
            ("health_interval_ms", self.health_interval_ms),
            ("health_timeout_ms", self.health_timeout_ms),
        ] {
            if v == 0 {
                return Err(field(name, v, "must be more than 0"));
            }
        }
        for (name, v) in [
            ("max_connections", self.max_connections.unwrap_or(1)),
            (
                "max_connections_per_client",
                self.max_connections_per_client.unwrap_or(1),
            ),
            ("max_in_flight", self.max_in_flight),
            ("prefetch_concurrency", self.prefetch_concurrency),
        ] {
            if v == 0 {
                return Err(field(name, v, "must be more than 0"));
            }
        }
        if let Some(b @ ByteSize(0)) = self.max_fill_bytes {
            return Err(field("max_fill_bytes", b, "must be more than 0"));
        }
        if self.max_header_bytes < 1024 {
            return Err(field(
                "max_header_bytes",
                self.max_header_bytes,
                "must be at least 1024",
            ));
        }
        if self.max_uri_bytes < 64 {
            return Err(field(
                "max_uri_bytes",
                self.max_uri_bytes,
                "must be at least 64",
            ));
        }
        if self.health_fall == 0 || self.health_rise == 0 {
            return Err(field("health_fall/health_rise", 0, "must be at least 1"));
        }
        if self.overload_threshold.is_nan() || self.overload_threshold <= 0.0 {
            return Err(field(
                "overload_threshold",
                self.overload_threshold,
                "must be more than 0",
            ));
        }
        if self.purge_token.as_deref() == Some("") {
            return Err(field(
                "purge_token",
                "",
                "must not be empty (leave it out to disable purge)",
            ));
        }
        Ok(())
    }

    pub(crate) fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// The viewer-side limits in force: unset caps derived from the open-file limit.
    pub(crate) fn limits(&self) -> dashcdn_http::serve::Limits {
        let max_connections = self
            .max_connections
            .unwrap_or_else(|| dashcdn_http::serve::fd_limits().1);
        dashcdn_http::serve::Limits {
            max_connections,
            max_connections_per_client: self
                .max_connections_per_client
                .unwrap_or((max_connections / 4).max(1)),
            header_timeout: Self::ms(self.header_read_timeout_ms),
            idle_timeout: Self::ms(self.idle_timeout_ms),
            send_timeout: Self::ms(self.send_timeout_ms),
            max_header_bytes: self.max_header_bytes,
            busy_text: "edge at capacity",
            ..dashcdn_http::serve::Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use dashcdn_config::chain;

    #[test]
    fn example_toml_parses() {
        let c = EdgeConfig::from_toml(include_str!("../example.toml")).expect("example.toml");
        assert_eq!(c.pop, "eu-west");
        assert_eq!(c.cache_size, ByteSize(2 << 30));
        assert_eq!(c.upstreams.len(), 3);
        assert_eq!(c.upstreams[0].role, Role::Parent);
        assert_eq!(c.upstreams[0].health_path(), "/_edge/healthz");
        assert_eq!(c.upstreams[2].role, Role::Origin);
        assert_eq!(c.upstreams[2].health_path(), "/healthz");
        assert_eq!(c.purge_token.as_deref(), Some("change-me"));
        assert_eq!(c.eviction, Eviction::Tinylfu);
        assert_eq!(
            c.drop_query_params,
            vec!["utm_*".to_string(), "token".into()]
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("2GiB".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap(), ByteSize(512 << 20));
        assert_eq!("64MB".parse::<ByteSize>().unwrap(), ByteSize(64_000_000));
        assert_eq!("1000".parse::<ByteSize>().unwrap(), ByteSize(1000));
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap(), ByteSize(1536));
        assert!("2 parsecs"
            .parse::<ByteSize>()
            .unwrap_err()
            .contains("unit"));
        assert!("GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
    }

    #[test]
    fn errors_name_field_and_value() {
        let e = EdgeConfig::from_toml("upstreams = []\n").unwrap_err();
        assert!(chain(&e).contains("`upstreams`"), "{}", chain(&e));
        let e = EdgeConfig::from_toml("cahce_size = 3\n").unwrap_err();
        assert!(
            chain(&e).contains("unknown field `cahce_size`"),
            "{}",
            chain(&e)
        );
        let e = EdgeConfig::from_toml("[[upstreams]]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(chain(&e).contains("ftp://x"), "{}", chain(&e));
        let e = EdgeConfig::from_toml("cache_size = \"lots\"\n").unwrap_err();
        assert!(chain(&e).contains("lots"), "{}", chain(&e));
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, "pop = 3\n").unwrap();
        let text = chain(&EdgeConfig::load(&p).unwrap_err());
        assert!(text.contains("edge.toml") && text.contains("pop"), "{text}");
    }
}
