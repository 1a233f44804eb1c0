//! Configuration of `dashcdn geodns`.
//!
//! The TOML file (see `geodns/example.toml`, parsed by a test) is read into [`RawConfig`],
//! which mirrors the file and refuses unknown keys, then validated into [`GeodnsConfig`]:
//! names parsed, PoP references resolved, every error naming the field and value at fault.
//! The server builds its answer tables from a `GeodnsConfig` (see [`crate::zone`]); a
//! reload builds new tables from a new config and swaps them in only if that succeeded.
//!
//! Relative paths in the file (`maxmind`) are resolved against the file's directory, so
//! `dashcdn geodns --config geodns/example.toml` works from any working directory.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Default `listen`: a high loopback port, so a bare run needs no privileges and is not
/// exposed to the network by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default TTL of geo-routed answers: short, so a PoP that goes down or a viewer who
/// moves is re-routed within half a minute, yet resolvers still absorb most queries.
pub const DEFAULT_GEO_TTL: u32 = 30;
/// Default TTL of static records.
pub const DEFAULT_TTL: u32 = 300;
/// Largest UDP answer we send (EDNS). 1232 bytes is the DNS Flag Day 2020 value: it fits
/// the IPv6 minimum MTU without fragmentation, which attackers can spoof into.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

/// Validated configuration of the geo DNS.
#[derive(Clone, Debug)]
pub struct GeodnsConfig {
    /// Address `dashcdn geodns` binds (UDP and TCP). [`crate::run`] takes bound sockets,
    /// so tests and the in-process demo ignore it.
    pub listen: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// MaxMind City database (GeoIP2/GeoLite2 City shape or the flat npm GeoLite2 shape).
    pub maxmind: Option<PathBuf>,
    /// The PoP answered when neither a coverage zone nor the database places a client.
    pub default_pop: String,
    /// TTL of geo-routed A/AAAA answers.
    pub geo_ttl: u32,
    /// Cap on UDP answers for EDNS clients (non-EDNS clients always get at most 512).
    pub max_udp_payload: u16,
    /// Threads answering UDP (each with its own SO_REUSEPORT socket when the CLI binds);
    /// 0 = one per core.
    pub udp_threads: usize,
    pub health: HealthConfig,
    pub pops: Vec<PopConfig>,
    /// Operator-pinned networks, checked before the database (longest prefix wins).
    pub coverage: Vec<CoverageConfig>,
    pub zones: Vec<ZoneConfig>,
}

/// Health probing of each PoP's edge.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// Time between two probes of one PoP.
    pub interval: Duration,
    /// A probe not answered within this counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that take a PoP out of the answers.
    pub fall: u32,
    /// Consecutive successes that bring it back.
    pub rise: u32,
    /// Also read `/_edge/stats` and avoid PoPs reporting overload (or load ≥ capacity).
    pub shed_load: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            shed_load: false,
        }
    }
}

impl HealthConfig {
    /// The longest a dead PoP can stay in the answers after it stops answering: `fall`
    /// probes, each up to `interval` apart and `timeout` long.
    pub fn detection_bound(&self) -> Duration {
        (self.interval + self.timeout) * self.fall
    }
}

/// One point of presence: an edge with a location.
#[derive(Clone, Debug, PartialEq)]
pub struct PopConfig {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// `http://host:port/_edge/healthz`; without one the PoP is always considered up.
    pub health_url: Option<String>,
    /// Pull strength: distance to this PoP is divided by its weight, so a PoP of weight 2
    /// attracts viewers from twice as far as one of weight 1.
    pub weight: f64,
    /// With `shed_load`, a PoP whose reported `load` reaches this is avoided.
    pub capacity: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoverageConfig {
    pub cidr: IpNet,
    pub pop: String,
}

/// One zone we are authoritative for.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    /// Zone apex, lowercase, without trailing dot (`kingcdn.test`).
    pub origin: String,
    pub ttl: u32,
    pub soa: SoaConfig,
    /// NS targets of the apex (absolute names).
    pub ns: Vec<String>,
    pub records: Vec<RecordConfig>,
    /// Geo-routed owner names (absolute), with their TTL.
    pub geo: Vec<GeoNameConfig>,
}

#[derive(Clone, Debug)]
pub struct SoaConfig {
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// Negative-caching TTL (RFC 2308): NXDOMAIN/NODATA answers carry the SOA with
    /// TTL = min(SOA TTL, minimum).
    pub minimum: u32,
    pub ttl: u32,
}

#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// Absolute owner name.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `NS`, `TXT`, `MX`.
    pub rtype: String,
    /// One value per record of the RRset.
    pub values: Vec<String>,
    pub ttl: u32,
}

#[derive(Clone, Debug)]
pub struct GeoNameConfig {
    /// Absolute owner name.
    pub name: String,
    pub ttl: u32,
}

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub metrics: Option<String>,
    pub maxmind: Option<PathBuf>,
    pub default_pop: Option<String>,
    pub geo_ttl: Option<u32>,
    pub max_udp_payload: Option<u16>,
    pub udp_threads: Option<usize>,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default, rename = "pop")]
    pub pops: Vec<RawPop>,
    #[serde(default)]
    pub coverage: Vec<RawCoverage>,
    #[serde(default, rename = "zone")]
    pub zones: Vec<RawZone>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub shed_load: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPop {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
    pub health_url: Option<String>,
    pub weight: Option<f64>,
    pub capacity: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoverage {
    pub cidr: String,
    pub pop: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: String,
    pub ttl: Option<u32>,
    pub soa: RawSoa,
    #[serde(default)]
    pub ns: Vec<String>,
    #[serde(default, rename = "record")]
    pub records: Vec<RawRecord>,
    #[serde(default)]
    pub geo: Vec<RawGeo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    pub mname: String,
    pub rname: String,
    pub serial: Option<u32>,
    pub refresh: Option<i32>,
    pub retry: Option<i32>,
    pub expire: Option<i32>,
    pub minimum: Option<u32>,
    pub ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub value: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    pub ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    pub name: String,
    pub ttl: Option<u32>,
}

pub use dashcdn_config::ConfigError;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::field(field.into(), "", message.into())
}

impl GeodnsConfig {
    /// Reads and validates a TOML file; relative paths inside are taken from its folder.
    pub fn load(path: impl AsRef<Path>) -> Result<GeodnsConfig, ConfigError> {
        dashcdn_config::load(path.as_ref(), Self::from_toml_in)
    }

    /// Parses TOML text; relative paths stay relative to the working directory.
    pub fn from_toml(text: &str) -> Result<GeodnsConfig, ConfigError> {
        Self::from_toml_in(text, Path::new(""))
    }

    fn from_toml_in(text: &str, base: &Path) -> Result<GeodnsConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        raw.validate(base)
    }
}

impl RawConfig {
    pub fn validate(self, base: &Path) -> Result<GeodnsConfig, ConfigError> {
        let listen = parse_addr("listen", self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let metrics = self
            .metrics
            .as_deref()
            .map(|m| parse_addr("metrics", m))
            .transpose()?;
        let maxmind = self.maxmind.map(|p| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                base.join(p)
            } else {
                p
            }
        });

        let h = self.health;
        let health = HealthConfig {
            interval: Duration::from_millis(h.interval_ms.unwrap_or(2000)),
            timeout: Duration::from_millis(h.timeout_ms.unwrap_or(1000)),
            fall: h.fall.unwrap_or(3),
            rise: h.rise.unwrap_or(2),
            shed_load: h.shed_load.unwrap_or(false),
        };
        if health.interval.is_zero() || health.timeout.is_zero() {
            return Err(invalid(
                "health",
                "interval_ms and timeout_ms must be greater than 0",
            ));
        }
        if health.fall == 0 || health.rise == 0 {
            return Err(invalid("health", "fall and rise must be at least 1"));
        }

        if self.pops.is_empty() {
            return Err(invalid("pop", "at least one [[pop]] is needed"));
        }
        let mut pops = Vec::new();
        for (i, p) in self.pops.into_iter().enumerate() {
            let field = format!("pop[{i}] ({})", p.name);
            if p.name.is_empty() || pops.iter().any(|q: &PopConfig| q.name == p.name) {
                return Err(invalid(field, "PoP names must be unique and non-empty"));
            }
            if !(-90.0..=90.0).contains(&p.latitude) || !(-180.0..=180.0).contains(&p.longitude) {
                return Err(invalid(
                    field,
                    "latitude must be in -90..90 and longitude in -180..180",
                ));
            }
            if p.ipv4.is_empty() && p.ipv6.is_empty() {
                return Err(invalid(
                    field,
                    "a PoP needs at least one ipv4 or ipv6 address",
                ));
            }
            let weight = p.weight.unwrap_or(1.0);
            if !(weight.is_finite() && weight > 0.0) {
                return Err(invalid(field, "weight must be a positive number"));
            }
            if let Some(url) = &p.health_url {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(invalid(
                        field,
                        format!("health_url {url:?} must be an http:// URL"),
                    ));
                }
            }
            pops.push(PopConfig {
                name: p.name,
                latitude: p.latitude,
                longitude: p.longitude,
                ipv4: p.ipv4,
                ipv6: p.ipv6,
                health_url: p.health_url,
                weight,
                capacity: p.capacity,
            });
        }
        let known = |field: &str, name: &str| -> Result<(), ConfigError> {
            if pops.iter().any(|p| p.name == name) {
                Ok(())
            } else {
                Err(invalid(field, format!("no [[pop]] is named {name:?}")))
            }
        };
        let default_pop = self.default_pop.unwrap_or_else(|| pops[0].name.clone());
        known("default_pop", &default_pop)?;

        let mut coverage = Vec::new();
        for (i, c) in self.coverage.into_iter().enumerate() {
            let field = format!("coverage[{i}]");
            let cidr: IpNet = c.cidr.parse().map_err(|_| {
                invalid(
                    &field,
                    format!("{:?} is not a CIDR such as 10.0.0.0/8", c.cidr),
                )
            })?;
            known(&field, &c.pop)?;
            coverage.push(CoverageConfig {
                cidr: cidr.trunc(),
                pop: c.pop,
            });
        }

        let geo_ttl = self.geo_ttl.unwrap_or(DEFAULT_GEO_TTL);
        if self.zones.is_empty() {
            return Err(invalid("zone", "at least one [[zone]] is needed"));
        }
        let mut zones: Vec<ZoneConfig> = Vec::new();
        for z in self.zones {
            let origin = normalize_name(&z.origin, "");
            let field = format!("zone {origin}");
            if origin.is_empty() || zones.iter().any(|o| o.origin == origin) {
                return Err(invalid(
                    field,
                    "zone origins must be unique and not the root",
                ));
            }
            let ttl = z.ttl.unwrap_or(DEFAULT_TTL);
            let soa = SoaConfig {
                mname: normalize_name(&z.soa.mname, &origin),
                rname: normalize_name(&z.soa.rname, &origin),
                serial: z.soa.serial.unwrap_or(1),
                refresh: z.soa.refresh.unwrap_or(3600),
                retry: z.soa.retry.unwrap_or(600),
                expire: z.soa.expire.unwrap_or(604_800),
                minimum: z.soa.minimum.unwrap_or(60),
                ttl: z.soa.ttl.unwrap_or(ttl),
            };
            let ns = z.ns.iter().map(|n| normalize_name(n, &origin)).collect();
            let mut records = Vec::new();
            for r in z.records {
                let name = normalize_name(&r.name, &origin);
                let mut values = r.values;
                values.extend(r.value);
                if values.is_empty() {
                    return Err(invalid(
                        format!("{field} record {name}"),
                        "needs `value` or `values`",
                    ));
                }
                records.push(RecordConfig {
                    name,
                    rtype: r.rtype.to_ascii_uppercase(),
                    values,
                    ttl: r.ttl.unwrap_or(ttl),
                });
            }
            let geo = z
                .geo
                .into_iter()
                .map(|g| GeoNameConfig {
                    name: normalize_name(&g.name, &origin),
                    ttl: g.ttl.unwrap_or(geo_ttl),
                })
                .collect();
            zones.push(ZoneConfig {
                origin,
                ttl,
                soa,
                ns,
                records,
                geo,
            });
        }

        let config = GeodnsConfig {
            listen,
            metrics,
            maxmind,
            default_pop,
            geo_ttl,
            max_udp_payload: self
                .max_udp_payload
                .unwrap_or(DEFAULT_MAX_UDP_PAYLOAD)
                .max(512),
            udp_threads: self.udp_threads.unwrap_or(0),
            health,
            pops,
            coverage,
            zones,
        };
        // Record values (addresses, names) are checked by building the zone tables once.
        crate::zone::Zones::build(&config)?;
        Ok(config)
    }
}

fn parse_addr(field: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        invalid(
            field,
            format!("{s:?} is not an address such as 127.0.0.1:5353 or [::1]:5353"),
        )
    })
}

/// Names in the file: `@` is the zone apex, a trailing dot marks an absolute name, any
/// other name is relative to the zone (as in zone files). Returned lowercase, no trailing dot.
pub fn normalize_name(name: &str, origin: &str) -> String {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    if lower == "@" {
        return origin.to_owned();
    }
    if let Some(abs) = lower.strip_suffix('.') {
        return abs.to_owned();
    }
    if origin.is_empty() {
        lower
    } else {
        format!("{lower}.{origin}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_toml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("example.toml");
        let c = GeodnsConfig::load(&path).unwrap();
        let names: Vec<&str> = c.pops.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["eu-west", "us-west", "ap-east"]);
        assert_eq!(c.pops[0].ipv4, [Ipv4Addr::new(127, 0, 1, 1)]);
        assert_eq!(c.pops[1].ipv4, [Ipv4Addr::new(127, 0, 2, 1)]);
        assert_eq!(c.pops[2].ipv4, [Ipv4Addr::new(127, 0, 3, 1)]);
        assert!((c.pops[0].latitude - 51.5).abs() < 1e-9);
        assert!((c.pops[2].longitude - 139.7).abs() < 1e-9);
        let origins: Vec<&str> = c.zones.iter().map(|z| z.origin.as_str()).collect();
        assert_eq!(origins, ["netcinema.test", "kingcdn.test"]);
        let video = &c.zones[0]
            .records
            .iter()
            .find(|r| r.name == "video.netcinema.test");
        assert_eq!(video.unwrap().values, ["a1105.kingcdn.test."]);
        assert_eq!(c.zones[1].geo[0].name, "a1105.kingcdn.test");
        assert_eq!(c.coverage.len(), 3);
        assert_eq!(c.coverage[0].cidr.to_string(), "127.0.1.0/24");
    }

    #[test]
    fn unknown_keys_and_bad_references_are_named() {
        let base =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("example.toml"))
                .unwrap();
        let e = GeodnsConfig::from_toml(&format!("colour = 1\n{base}")).unwrap_err();
        assert!(format!("{e:#}").contains("colour") || format!("{:?}", e).contains("colour"));
        let e = GeodnsConfig::from_toml(
            &base.replace("default_pop = \"eu-west\"", "default_pop = \"mars\""),
        )
        .unwrap_err();
        assert!(e.to_string().contains("mars"), "{e}");
        let e = GeodnsConfig::from_toml(&base.replace("127.0.1.0/24", "127.0.1.0/99")).unwrap_err();
        assert!(e.to_string().contains("127.0.1.0/99"), "{e}");
    }

    #[test]
    fn names_are_relative_to_the_zone() {
        assert_eq!(normalize_name("@", "a.test"), "a.test");
        assert_eq!(normalize_name("www", "a.test"), "www.a.test");
        assert_eq!(normalize_name("X.Other.", "a.test"), "x.other");
    }
}
