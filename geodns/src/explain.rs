//! `dashcdn geodns explain IP`: where an address is routed and why.

use std::fmt;
use std::net::IpAddr;

use crate::config::GeodnsConfig;
use crate::error::GeodnsError;
use crate::geo::{self, Decision, Locator, Placement};
use crate::health::HealthTable;

/// Where an address is routed and why (`dashcdn geodns explain IP`).
#[derive(Clone, Debug)]
pub struct Explanation {
    pub ip: IpAddr,
    pub decision: Decision,
    /// PoP name, addresses, distance from the client's location (if known), up.
    pub pops: Vec<PopLine>,
}

#[derive(Clone, Debug)]
pub struct PopLine {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub distance_km: Option<f64>,
    pub up: bool,
}

impl Explanation {
    pub(crate) fn new(locator: &Locator, health: &HealthTable, ip: IpAddr) -> Explanation {
        let decision = locator.decide(ip, health, true);
        let here = match &decision.placement {
            Placement::City(hit) => Some((hit.latitude, hit.longitude)),
            _ => None,
        };
        let pops = locator
            .pops
            .iter()
            .enumerate()
            .map(|(i, p)| PopLine {
                name: p.name.clone(),
                addresses: p
                    .ipv4
                    .iter()
                    .map(|a| IpAddr::V4(*a))
                    .chain(p.ipv6.iter().map(|a| IpAddr::V6(*a)))
                    .collect(),
                distance_km: here.map(|h| geo::great_circle_km(h, (p.latitude, p.longitude))),
                up: health.is_up(i),
            })
            .collect();
        Explanation { ip, decision, pops }
    }

    /// The PoP answered (`None`: every PoP down, all answered).
    pub fn pop_name(&self) -> Option<&str> {
        self.decision.pop.map(|i| self.pops[i].name.as_str())
    }
}

/// Explains `ip` against `config` with every PoP assumed healthy: a pure function of the
/// config and its MaxMind database, for operators and tests.
pub fn explain(config: &GeodnsConfig, ip: IpAddr) -> Result<Explanation, GeodnsError> {
    let locator = Locator::build(config)?;
    let health = HealthTable::new(&config.pops, None);
    Ok(Explanation::new(&locator, &health, ip))
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        let addrs = |i: usize| {
            self.pops[i]
                .addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match d.pop {
            Some(i) => writeln!(f, "{} -> {} ({})", self.ip, self.pops[i].name, addrs(i))?,
            None => writeln!(f, "{} -> every PoP (all are down)", self.ip)?,
        }
        match &d.placement {
            Placement::Coverage { cidr, pop } => writeln!(
                f,
                "  why:       coverage zone {cidr} pins it to {}",
                self.pops[*pop].name
            )?,
            Placement::City(hit) => {
                let place = match (&hit.city, &hit.country) {
                    (Some(c), Some(k)) => format!("{c}, {k}"),
                    (None, Some(k)) => k.clone(),
                    (Some(c), None) => c.clone(),
                    (None, None) => "an unnamed place".into(),
                };
                writeln!(
                    f,
                    "  why:       MaxMind places it in {place} ({:.4}, {:.4}), network {}",
                    hit.latitude, hit.longitude, hit.network
                )?;
                if let Some(km) = d.distance_km {
                    writeln!(f, "             nearest healthy PoP, {km:.0} km away")?;
                }
            }
            Placement::Default { why } => writeln!(
                f,
                "  why:       default PoP {} ({why})",
                self.pops[d.preferred].name
            )?,
        }
        if d.pop != Some(d.preferred) {
            writeln!(
                f,
                "  health:    preferred {} is down or shedding load",
                self.pops[d.preferred].name
            )?;
        }
        writeln!(f, "  ECS scope: /{}", d.scope)?;
        for p in &self.pops {
            let km = p
                .distance_km
                .map(|k| format!("{k:>8.0} km"))
                .unwrap_or_default();
            writeln!(
                f,
                "  PoP {:<12} {}{}",
                p.name,
                if p.up { "up  " } else { "DOWN" },
                km
            )?;
        }
        Ok(())
    }
}
