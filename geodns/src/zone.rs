//! The zones we are authoritative for, as answer tables, and the lookup algorithm.
//!
//! Built once per config generation from [`GeodnsConfig`]: every record is a ready
//! hickory `Record`, and every geo-routed name holds one prepared A/AAAA RRset per PoP
//! (plus the all-PoPs set used when every PoP is down), so answering a query allocates
//! no records, only a small list of references.
//!
//! Lookup follows RFC 1034 §4.3.2 for an authoritative server without delegations:
//! - the closest enclosing zone is found; none → REFUSED (we are not a resolver);
//! - a CNAME at the name (when the query is not for CNAME or ANY) goes into the answer
//!   and the lookup restarts at its target: chains inside our zones are followed in one
//!   answer, a target outside them ends the answer there (the resolver follows it);
//! - no such name → NXDOMAIN, the name exists without the type → NODATA (NOERROR, empty
//!   answer); both with the zone's SOA in the authority section, its TTL the smaller of
//!   the SOA's TTL and MINIMUM (RFC 2308 §3). Names that exist only because a longer
//!   name is below them (empty non-terminals) are NODATA, not NXDOMAIN (RFC 8020).
//!
//! Not supported (documented in the README): wildcards and delegations below the apex.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, HINFO, NS, SOA};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use crate::config::{GeodnsConfig, PopConfig, ZoneConfig};

/// Longest CNAME chain followed in one answer (loops end here too).
const MAX_CNAME_CHAIN: usize = 8;

/// Addresses of one PoP (or of all PoPs) for one geo-routed name.
#[derive(Debug, Default)]
pub(crate) struct PopRecords {
    pub(crate) a: Vec<Record>,
    pub(crate) aaaa: Vec<Record>,
}

/// A geo-routed owner name.
#[derive(Debug)]
pub(crate) struct GeoNode {
    /// Indexed like `config.pops`.
    pub(crate) per_pop: Vec<PopRecords>,
    /// Every PoP's addresses: the answer when all PoPs are down.
    pub(crate) all: PopRecords,
}

#[derive(Debug, Default)]
struct Node {
    rrsets: Vec<(RecordType, Vec<Record>)>,
    cname: Option<Record>,
    geo: Option<GeoNode>,
    /// The answer to ANY at a name with data other than a CNAME (RFC 8482 §4.2).
    any: Option<Record>,
}

impl Node {
    /// The types this name has (for an NSEC bitmap).
    fn types(&self) -> Vec<RecordType> {
        let mut t: Vec<RecordType> = self.rrsets.iter().map(|(t, _)| *t).collect();
        if self.cname.is_some() {
            t.push(RecordType::CNAME);
        }
        if let Some(g) = &self.geo {
            if !g.all.a.is_empty() {
                t.push(RecordType::A);
            }
            if !g.all.aaaa.is_empty() {
                t.push(RecordType::AAAA);
            }
        }
        t
    }

    fn rrset(&self, t: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(rt, _)| *rt == t)
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug)]
struct Zone {
    origin: LowerName,
    /// The SOA for negative answers, its TTL lowered to MINIMUM (RFC 2308 §3).
    negative_soa: Record,
    nodes: HashMap<LowerName, Node>,
}

/// All zones of one config generation.
#[derive(Debug)]
pub(crate) struct Zones {
    zones: Vec<Zone>,
}

/// Which PoP set a geo-routed name answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PopChoice {
    One(usize),
    /// Every PoP is down: answer with all of them rather than nothing.
    All,
}

/// The result of a lookup: borrowed records, ready to encode.
#[derive(Debug)]
pub(crate) struct Resolution<'a> {
    pub(crate) rcode: ResponseCode,
    /// False → REFUSED (the name is outside our zones).
    pub(crate) authoritative: bool,
    pub(crate) answers: Vec<&'a Record>,
    /// The zone SOA for NXDOMAIN / NODATA.
    pub(crate) soa: Option<&'a Record>,
    /// Set when a geo-routed name's answer depended on the client's location.
    pub(crate) geo: Option<PopChoice>,
    /// For NXDOMAIN / NODATA: the name denied (the last of a CNAME chain), and the types
    /// it has (`None`: it does not exist). What a DNSSEC denial proves.
    pub(crate) denied: Option<(LowerName, Option<Vec<RecordType>>)>,
}

impl Zone {
    fn build(zc: &ZoneConfig, pops: &[PopConfig]) -> Zone {
        let soa_rdata = SOA::new(
            zc.soa.mname.clone(),
            zc.soa.rname.clone(),
            zc.soa.serial,
            zc.soa.refresh,
            zc.soa.retry,
            zc.soa.expire,
            zc.soa.minimum,
        );
        let soa = Record::from_rdata(zc.origin.clone(), zc.soa.ttl, RData::SOA(soa_rdata));
        let mut negative_soa = soa.clone();
        negative_soa.ttl = zc.soa.ttl.min(zc.soa.minimum);
        let lo = LowerName::new(&zc.origin);
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        let apex = nodes.entry(lo.clone()).or_default();
        apex.rrsets.push((RecordType::SOA, vec![soa]));
        if !zc.ns.is_empty() {
            let ns = zc
                .ns
                .iter()
                .map(|n| Record::from_rdata(zc.origin.clone(), zc.ttl, RData::NS(NS(n.clone()))))
                .collect();
            apex.rrsets.push((RecordType::NS, ns));
        }
        for r in &zc.records {
            let node = nodes.entry(LowerName::new(&r.name)).or_default();
            for v in &r.values {
                let rec = Record::from_rdata(r.name.clone(), r.ttl, v.clone());
                if r.rtype == RecordType::CNAME {
                    // The config refused any other data beside a CNAME (RFC 1034 §3.6.2).
                    node.cname = Some(rec);
                    continue;
                }
                match node.rrsets.iter_mut().find(|(t, _)| *t == r.rtype) {
                    Some((_, set)) => set.push(rec),
                    None => node.rrsets.push((r.rtype, vec![rec])),
                }
            }
        }
        for g in &zc.geo {
            let node = nodes.entry(LowerName::new(&g.name)).or_default();
            let mut all = PopRecords::default();
            let mut per_pop = Vec::new();
            for p in pops {
                let mut set = PopRecords::default();
                for ip in &p.ipv4 {
                    set.a
                        .push(Record::from_rdata(g.name.clone(), g.ttl, RData::A(A(*ip))));
                }
                for ip in &p.ipv6 {
                    set.aaaa.push(Record::from_rdata(
                        g.name.clone(),
                        g.ttl,
                        RData::AAAA(AAAA(*ip)),
                    ));
                }
                all.a.extend(set.a.iter().cloned());
                all.aaaa.extend(set.aaaa.iter().cloned());
                per_pop.push(set);
            }
            node.geo = Some(GeoNode { per_pop, all });
        }
        // RFC 8482 §4.2: "A DNS responder ... MAY ... return a synthesized HINFO RRset"
        // in place of every RRset of the name: ANY amplifies no more than any other query.
        for (owner, node) in &mut nodes {
            if !node.rrsets.is_empty() || node.geo.is_some() {
                let hinfo = HINFO::new("RFC8482".into(), String::new());
                node.any = Some(Record::from_rdata(
                    owner.into(),
                    zc.ttl,
                    RData::HINFO(hinfo),
                ));
            }
        }
        // Empty non-terminals: every ancestor of a name, up to the apex, exists.
        let owners: Vec<LowerName> = nodes.keys().cloned().collect();
        for owner in owners {
            let mut n = owner.base_name();
            while lo.zone_of(&n) && n != lo {
                nodes.entry(n.clone()).or_default();
                n = n.base_name();
            }
        }
        Zone {
            origin: lo,
            negative_soa,
            nodes,
        }
    }
}

impl Zones {
    /// Assembles the answer tables of a validated config (every name and value in it is
    /// already parsed and checked, see [`crate::config`]).
    /// `apex_records(origin)`: DNSSEC records of a signed zone's apex (DNSKEY, CDS, CDNSKEY).
    pub(crate) fn build(
        config: &GeodnsConfig,
        apex_records: &dyn Fn(&LowerName, u32) -> Vec<Record>,
    ) -> Zones {
        let zones = config
            .zones
            .iter()
            .map(|zc| {
                let mut z = Zone::build(zc, &config.pops);
                let extra = apex_records(&z.origin, zc.ttl);
                if let Some(apex) = z.nodes.get_mut(&z.origin) {
                    for r in extra {
                        let t = r.record_type();
                        match apex.rrsets.iter_mut().find(|(rt, _)| *rt == t) {
                            Some((_, set)) => set.push(r),
                            None => apex.rrsets.push((t, vec![r])),
                        }
                    }
                }
                z
            })
            .collect();
        Zones { zones }
    }

    fn zone_for(&self, qname: &LowerName) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(qname))
            .max_by_key(|z| z.origin.num_labels())
    }

    /// Answers `qname`/`qtype`; `choose` is called (at most once) when a geo-routed name
    /// is reached, so the client is only located when it matters. With `cname_before_geo`
    /// a CNAME chain stops before a geo-routed target (the ECS rule of RFC 7871 §7.2.1).
    pub(crate) fn resolve<'a>(
        &'a self,
        qname: &LowerName,
        qtype: RecordType,
        cname_before_geo: bool,
        choose: &mut dyn FnMut() -> PopChoice,
    ) -> Resolution<'a> {
        let mut res = Resolution {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            soa: None,
            geo: None,
            denied: None,
        };
        let Some(mut zone) = self.zone_for(qname) else {
            res.authoritative = false;
            res.rcode = ResponseCode::Refused;
            return res;
        };
        let mut name: LowerName = qname.clone();
        for _ in 0..=MAX_CNAME_CHAIN {
            let Some(node) = zone.nodes.get(&name) else {
                // RFC 6604: the RCODE describes the last name of the chain.
                res.rcode = ResponseCode::NXDomain;
                res.soa = Some(&zone.negative_soa);
                res.denied = Some((name, None));
                return res;
            };
            if cname_before_geo && node.geo.is_some() && !res.answers.is_empty() {
                return res;
            }
            if let Some(cname) = &node.cname {
                if !matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                    res.answers.push(cname);
                    let RData::CNAME(target) = &cname.data else {
                        unreachable!("cname slot holds a CNAME")
                    };
                    let target = LowerName::new(&target.0);
                    match self.zone_for(&target) {
                        Some(z) => {
                            zone = z;
                            name = target;
                            continue;
                        }
                        // Out of our zones: the resolver chases it from here.
                        None => return res,
                    }
                }
            }
            let before = res.answers.len();
            let mut geo_set = |res: &mut Resolution<'a>, v6: bool| {
                if let Some(geo) = &node.geo {
                    let choice = *res.geo.get_or_insert_with(&mut *choose);
                    let set = match choice {
                        PopChoice::One(i) => &geo.per_pop[i],
                        PopChoice::All => &geo.all,
                    };
                    res.answers.extend(if v6 { &set.aaaa } else { &set.a });
                }
            };
            match qtype {
                RecordType::ANY => res
                    .answers
                    .extend(node.cname.iter().chain(&node.any).take(1)),
                RecordType::A => geo_set(&mut res, false),
                RecordType::AAAA => geo_set(&mut res, true),
                RecordType::CNAME => res.answers.extend(node.cname.iter()),
                _ => {}
            }
            if let Some(set) = node.rrset(qtype) {
                res.answers.extend(set);
            }
            if res.answers.len() == before {
                // NODATA.
                res.soa = Some(&zone.negative_soa);
                res.denied = Some((name, Some(node.types())));
            }
            return res;
        }
        // A chain longer than MAX_CNAME_CHAIN (or a loop): answer what we have.
        res
    }
}
