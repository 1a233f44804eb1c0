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

use std::collections::HashMap;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, TXT};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use ipnet::IpNet;
use serde::Deserialize;

/// Default `listen`: a high loopback port, so a bare run needs no privileges and is not
/// exposed to the network by accident.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default TTL of geo-routed answers: short, so a PoP that goes down or a viewer who
/// moves is re-routed within half a minute, yet resolvers still absorb most queries.
pub(crate) const DEFAULT_GEO_TTL: u32 = 30;
/// Default TTL of static records.
pub(crate) const DEFAULT_TTL: u32 = 300;
/// Largest UDP answer we send (EDNS). 1232 bytes is the DNS Flag Day 2020 value: it fits
/// the IPv6 minimum MTU without fragmentation, which attackers can spoof into.
pub(crate) const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

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
    /// Response rate limiting of UDP answers.
    pub rrl: RrlConfig,
    /// DNS over TLS (RFC 7858) address, with `tls`.
    pub dot_listen: Option<SocketAddr>,
    /// DNS over HTTPS (RFC 8484) address, with `tls`.
    pub doh_listen: Option<SocketAddr>,
    /// Certificate chain and key (PEM files) of DoT and DoH.
    pub tls: Option<TlsFiles>,
    /// Folder of DNSSEC keys (`dashcdn geodns keygen`): zones with keys there are signed.
    pub dnssec_keys: Option<PathBuf>,
}

/// A certificate chain file and its private key file (PEM).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Response rate limiting (`[rrl]`), in the manner of BIND and Knot: UDP responses per
/// second per client network (/24 IPv4, /56 IPv6) and answer. Off by default, as in both:
/// an operator turns it on once the big resolvers' networks are in `exempt`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RrlConfig {
    /// Responses per second per (network, answer); 0 turns rate limiting off.
    pub responses_per_second: u32,
    /// Every `slip`-th withheld response is sent truncated (TC=1, no records), so a real
    /// client behind a spoofed flood retries over TCP; 0 never slips, 1 always does.
    pub slip: u32,
    /// Networks never limited (resolvers of partners, monitoring).
    pub exempt: Vec<IpNet>,
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

/// One zone we are authoritative for. Names are absolute and lowercase, every record
/// value is parsed: [`crate::zone`] only assembles these into answer tables.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    /// Zone apex (`kingcdn.test.`).
    pub origin: Name,
    pub ttl: u32,
    pub soa: SoaConfig,
    /// NS targets of the apex.
    pub ns: Vec<Name>,
    pub records: Vec<RecordConfig>,
    /// Geo-routed owner names, with their TTL.
    pub geo: Vec<GeoNameConfig>,
}

#[derive(Clone, Debug)]
pub struct SoaConfig {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// Negative-caching TTL (RFC 2308): NXDOMAIN/NODATA answers carry the SOA with
    /// TTL = min(SOA TTL, minimum).
    pub minimum: u32,
    pub ttl: u32,
}

/// One RRset as configured: `values` are parsed record data of type `rtype`.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub name: Name,
    /// `A`, `AAAA`, `CNAME`, `NS`, `TXT` or `MX`.
    pub rtype: RecordType,
    /// One per record of the RRset.
    pub values: Vec<RData>,
    pub ttl: u32,
}

#[derive(Clone, Debug)]
pub struct GeoNameConfig {
    pub name: Name,
    pub ttl: u32,
}

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    metrics: Option<String>,
    maxmind: Option<PathBuf>,
    default_pop: Option<String>,
    geo_ttl: Option<u32>,
    max_udp_payload: Option<u16>,
    udp_threads: Option<usize>,
    #[serde(default)]
    health: RawHealth,
    #[serde(default, rename = "pop")]
    pops: Vec<RawPop>,
    #[serde(default)]
    coverage: Vec<RawCoverage>,
    #[serde(default, rename = "zone")]
    zones: Vec<RawZone>,
    #[serde(default)]
    rrl: RawRrl,
    dot_listen: Option<String>,
    doh_listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    dnssec_keys: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRrl {
    responses_per_second: Option<u32>,
    slip: Option<u32>,
    #[serde(default)]
    exempt: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    fall: Option<u32>,
    rise: Option<u32>,
    shed_load: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPop {
    name: String,
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    ipv6: Vec<Ipv6Addr>,
    health_url: Option<String>,
    weight: Option<f64>,
    capacity: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoverage {
    cidr: String,
    pop: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: String,
    ttl: Option<u32>,
    soa: RawSoa,
    #[serde(default)]
    ns: Vec<String>,
    #[serde(default, rename = "record")]
    records: Vec<RawRecord>,
    #[serde(default)]
    geo: Vec<RawGeo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    mname: String,
    rname: String,
    serial: Option<u32>,
    refresh: Option<i32>,
    retry: Option<i32>,
    expire: Option<i32>,
    minimum: Option<u32>,
    ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    value: Option<String>,
    #[serde(default)]
    values: Vec<String>,
    ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeo {
    name: String,
    ttl: Option<u32>,
}

use dashcdn_config::ConfigError;

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
    fn validate(self, base: &Path) -> Result<GeodnsConfig, ConfigError> {
        let listen = parse_addr("listen", self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let metrics = self
            .metrics
            .as_deref()
            .map(|m| parse_addr("metrics", m))
            .transpose()?;
        let relative = |p: PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                base.join(p)
            } else {
                p
            }
        };
        let maxmind = self.maxmind.map(relative);
        let dnssec_keys = self.dnssec_keys.map(relative);
        let dot_listen = self
            .dot_listen
            .as_deref()
            .map(|a| parse_addr("dot_listen", a))
            .transpose()?;
        let doh_listen = self
            .doh_listen
            .as_deref()
            .map(|a| parse_addr("doh_listen", a))
            .transpose()?;
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: relative(cert),
                key: relative(key),
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "tls_cert",
                    "tls_cert and tls_key go together (PEM chain and its key)",
                ))
            }
        };

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
            let zone = z.validate(geo_ttl)?;
            if zones.iter().any(|o| o.origin == zone.origin) {
                return Err(invalid(
                    format!("zone {}", zone.origin),
                    "zone origins must be unique",
                ));
            }
            zones.push(zone);
        }

        let mut exempt = Vec::new();
        for (i, c) in self.rrl.exempt.iter().enumerate() {
            let net: IpNet = c.parse().map_err(|_| {
                invalid(
                    format!("rrl.exempt[{i}]"),
                    format!("{c:?} is not a CIDR such as 192.0.2.0/24"),
                )
            })?;
            exempt.push(net.trunc());
        }
        let rrl = RrlConfig {
            responses_per_second: self.rrl.responses_per_second.unwrap_or(0),
            slip: self.rrl.slip.unwrap_or(2),
            exempt,
        };

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
            rrl,
            dot_listen,
            doh_listen,
            tls,
            dnssec_keys,
        };
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
fn normalize_name(name: &str, origin: &str) -> String {
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

/// A name of the file, relative to `origin` (see [`normalize_name`]), parsed.
fn dns_name(field: &str, s: &str, origin: &str) -> Result<Name, ConfigError> {
    let n = normalize_name(s, origin);
    Name::from_ascii(format!("{n}."))
        .map_err(|e| invalid(field, format!("{s:?} is not a valid domain name ({e})")))
}

impl RawZone {
    fn validate(self, geo_ttl: u32) -> Result<ZoneConfig, ConfigError> {
        let origin_text = normalize_name(&self.origin, "");
        let field = format!("zone {origin_text}");
        if origin_text.is_empty() {
            return Err(invalid(field, "a zone origin cannot be the root"));
        }
        let origin = dns_name(&field, &self.origin, "")?;
        let apex = LowerName::new(&origin);
        let inside = |what: &str, n: &Name| -> Result<(), ConfigError> {
            if apex.zone_of(&LowerName::new(n)) {
                Ok(())
            } else {
                Err(invalid(&field, format!("{what} {n} is outside the zone")))
            }
        };
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        let soa = SoaConfig {
            mname: dns_name(&field, &self.soa.mname, &origin_text)?,
            rname: dns_name(&field, &self.soa.rname, &origin_text)?,
            serial: self.soa.serial.unwrap_or(1),
            refresh: self.soa.refresh.unwrap_or(3600),
            retry: self.soa.retry.unwrap_or(600),
            expire: self.soa.expire.unwrap_or(604_800),
            minimum: self.soa.minimum.unwrap_or(60),
            ttl: self.soa.ttl.unwrap_or(ttl),
        };
        let ns = self
            .ns
            .iter()
            .map(|n| dns_name(&field, n, &origin_text))
            .collect::<Result<Vec<_>, _>>()?;

        // What each owner name holds, for RFC 1034 §3.6.2 (a CNAME owner has no other
        // data) and for geo names (their A/AAAA are computed, never configured).
        #[derive(Default)]
        struct Owner {
            cname: bool,
            other: Vec<RecordType>,
        }
        let mut owners: HashMap<LowerName, Owner> = HashMap::new();
        owners
            .entry(apex.clone())
            .or_default()
            .other
            .push(RecordType::SOA);

        let mut records = Vec::new();
        for r in self.records {
            let rfield = format!("{field} record {} {}", r.name, r.rtype);
            let name = dns_name(&rfield, &r.name, &origin_text)?;
            inside("record", &name)?;
            let rtype = match r.rtype.to_ascii_uppercase().as_str() {
                "A" => RecordType::A,
                "AAAA" => RecordType::AAAA,
                "CNAME" => RecordType::CNAME,
                "NS" => RecordType::NS,
                "TXT" => RecordType::TXT,
                "MX" => RecordType::MX,
                other => {
                    return Err(invalid(
                        rfield,
                        format!("type {other:?} is not supported (A, AAAA, CNAME, NS, TXT, MX; SOA is [zone.soa], geo names are [[zone.geo]])"),
                    ))
                }
            };
            let mut texts = r.values;
            texts.extend(r.value);
            if texts.is_empty() {
                return Err(invalid(rfield, "needs `value` or `values`"));
            }
            let values = texts
                .iter()
                .map(|v| rdata(&rfield, rtype, v, &origin_text))
                .collect::<Result<Vec<_>, _>>()?;
            let owner = owners.entry(LowerName::new(&name)).or_default();
            if rtype == RecordType::CNAME {
                if owner.cname || !owner.other.is_empty() || values.len() > 1 {
                    return Err(invalid(
                        rfield,
                        "a CNAME must be the only record of its name",
                    ));
                }
                owner.cname = true;
            } else {
                if owner.cname {
                    return Err(invalid(
                        rfield,
                        "a name with a CNAME can have no other records",
                    ));
                }
                owner.other.push(rtype);
            }
            records.push(RecordConfig {
                name,
                rtype,
                values,
                ttl: r.ttl.unwrap_or(ttl),
            });
        }
        let mut geo = Vec::new();
        for g in self.geo {
            let gfield = format!("{field} geo name {}", g.name);
            let name = dns_name(&gfield, &g.name, &origin_text)?;
            inside("geo name", &name)?;
            let owner = owners.entry(LowerName::new(&name)).or_default();
            if owner.cname
                || owner
                    .other
                    .iter()
                    .any(|t| matches!(t, RecordType::A | RecordType::AAAA))
            {
                return Err(invalid(
                    gfield,
                    "a geo-routed name cannot also have CNAME, A or AAAA records",
                ));
            }
            owner.other.push(RecordType::A);
            geo.push(GeoNameConfig {
                name,
                ttl: g.ttl.unwrap_or(geo_ttl),
            });
        }
        Ok(ZoneConfig {
            origin,
            ttl,
            soa,
            ns,
            records,
            geo,
        })
    }
}

/// Parses one record value of type `rtype`; names in it are relative to `origin`.
fn rdata(field: &str, rtype: RecordType, v: &str, origin: &str) -> Result<RData, ConfigError> {
    let bad = |what: &str| invalid(field, format!("{v:?} is not {what}"));
    let target = |v: &str| dns_name(field, v, origin);
    Ok(match rtype {
        RecordType::A => RData::A(A(v
            .trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("an IPv4 address"))?)),
        RecordType::AAAA => RData::AAAA(AAAA(
            v.trim()
                .parse::<Ipv6Addr>()
                .map_err(|_| bad("an IPv6 address"))?,
        )),
        RecordType::CNAME => RData::CNAME(CNAME(target(v)?)),
        RecordType::NS => RData::NS(NS(target(v)?)),
        RecordType::MX => {
            let usage = "`PREFERENCE HOST`, e.g. `10 mail`";
            let (pref, host) = v
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(usage))?;
            let pref = pref.parse::<u16>().map_err(|_| bad(usage))?;
            RData::MX(MX::new(pref, target(host.trim())?))
        }
        RecordType::TXT => {
            // One character-string holds at most 255 bytes: split longer values.
            let chunks: Vec<&[u8]> = v.as_bytes().chunks(255).collect();
            let chunks = if chunks.is_empty() {
                vec![&b""[..]]
            } else {
                chunks
            };
            RData::TXT(TXT::from_bytes(chunks))
        }
        other => unreachable!("record type {other} is refused before its values are read"),
    })
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
        let origins: Vec<String> = c.zones.iter().map(|z| z.origin.to_string()).collect();
        assert_eq!(origins, ["netcinema.test.", "kingcdn.test."]);
        let video = c.zones[0]
            .records
            .iter()
            .find(|r| r.name.to_string() == "video.netcinema.test.")
            .unwrap();
        assert_eq!(video.rtype, RecordType::CNAME);
        let target = Name::from_ascii("a1105.kingcdn.test.").unwrap();
        assert_eq!(video.values, [RData::CNAME(CNAME(target))]);
        assert_eq!(c.zones[1].geo[0].name.to_string(), "a1105.kingcdn.test.");
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
    fn the_commented_security_keys_of_the_example_parse() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("example.toml"))
                .unwrap();
        let keys = [
            "dnssec_keys",
            "dot_listen",
            "doh_listen",
            "tls_cert",
            "tls_key",
            "[rrl]",
            "responses_per_second",
            "slip",
            "exempt",
        ];
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => format!("{rest}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let c = GeodnsConfig::from_toml(&text).unwrap();
        assert_eq!(c.rrl.responses_per_second, 20);
        assert_eq!(c.rrl.slip, 2);
        assert_eq!(c.rrl.exempt[0].to_string(), "192.0.2.0/24");
        assert_eq!(c.dot_listen, Some("127.0.0.1:8853".parse().unwrap()));
        assert!(c.tls.is_some() && c.dnssec_keys.is_some());
        // [rrl] comes after the top-level keys it must not swallow.
        assert_eq!(c.max_udp_payload, 1232);
    }

    #[test]
    fn names_are_relative_to_the_zone() {
        assert_eq!(normalize_name("@", "a.test"), "a.test");
        assert_eq!(normalize_name("www", "a.test"), "www.a.test");
        assert_eq!(normalize_name("X.Other.", "a.test"), "x.other");
    }
}
