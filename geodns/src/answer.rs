//! One answer: a query's bytes in, the response's bytes out, shared by UDP and TCP.
//!
//! [`prepare`] decides the answer from the current snapshot (EDNS and Client Subnet
//! checks, the zone lookup, the geo choice); [`encode`] writes it and truncates what does
//! not fit (RFC 2181 §9). Errors hickory cannot parse become header-only FORMERR here.
//!
//! Why our own handler rather than hickory's `Catalog`: the catalog builds a fresh EDNS
//! record for each reply and so never echoes the EDNS Client Subnet option, and geo answers
//! need the option echoed with its scope (RFC 7871 §7.2.1).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_proto::op::{Edns, Header, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageRequest, MessageResponseBuilder, Queries};
use tracing::{debug, error};

use crate::geo::Decision;
use crate::state::{Snapshot, State};
use crate::zone::PopChoice;

/// What a cached copy of an answer needs for metrics: query type, rcode, ECS present,
/// the PoP choice.
pub(crate) type AnswerInfo = (Option<RecordType>, ResponseCode, bool, Option<PopChoice>);

/// Answers one UDP datagram into `out`; `false` means send nothing (not a query).
/// `info` receives what a cached copy of this answer needs for metrics.
pub(crate) fn answer_udp(
    state: &State,
    packet: &[u8],
    src: SocketAddr,
    out: &mut Vec<u8>,
    info: &mut Option<AnswerInfo>,
) -> bool {
    let started = Instant::now();
    // Fewer than 12 bytes: not even a header to answer to (RFC 1035 §4.1.1).
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        debug!(%src, len = packet.len(), "dropped datagram shorter than a DNS header");
        return false;
    };
    if header.metadata.message_type == MessageType::Response {
        // Never answer a response: that is how reflection loops start.
        return false;
    }
    let request = match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(e) => {
            debug!(%src, error = %e, "malformed query: FORMERR");
            write_error(out, &header.metadata, ResponseCode::FormErr);
            state
                .metrics
                .query(None, ResponseCode::FormErr, false, started.elapsed());
            return true;
        }
    };
    let snap = state.current.load();
    let p = prepare(&snap, &request, src.ip());
    let limit = match &request.edns {
        Some(e) => e.max_payload().clamp(512, snap.config.max_udp_payload),
        None => 512,
    } as usize;
    let (qtype, rcode, ecs, geo) = (p.qtype, p.metadata.response_code, p.ecs, p.geo);
    encode(&request.queries, p, out, limit);
    state.metrics.query(qtype, rcode, ecs, started.elapsed());
    *info = Some((qtype, rcode, ecs, geo));
    true
}

/// A header-only error answer (FORMERR to an unparsable query): id and opcode echoed,
/// no sections, since the question itself could not be read.
fn write_error(out: &mut Vec<u8>, query: &Metadata, rcode: ResponseCode) {
    let mut meta = Metadata::response_from_request(query);
    meta.response_code = rcode;
    let header = Header {
        metadata: meta,
        counts: Default::default(),
    };
    let mut enc = BinEncoder::new(out);
    if header.emit(&mut enc).is_err() {
        out.clear();
    }
}

/// An answer ready to encode: borrowed from the snapshot.
pub(crate) struct Prepared<'a> {
    pub(crate) metadata: Metadata,
    pub(crate) answers: Vec<&'a Record>,
    pub(crate) soa: Option<&'a Record>,
    pub(crate) edns: Option<Edns>,
    /// For metrics.
    pub(crate) qtype: Option<RecordType>,
    pub(crate) ecs: bool,
    /// The PoP choice, when a geo-routed name was answered.
    pub(crate) geo: Option<PopChoice>,
}

/// Validates a Client Subnet option (RFC 7871 §6, §7.1.1).
fn valid_ecs(cs: &ClientSubnet) -> bool {
    let (max, bits) = match cs.addr() {
        IpAddr::V4(a) => (32, u128::from(u32::from(a)) << 96),
        IpAddr::V6(a) => (128, u128::from(a)),
    };
    let source = cs.source_prefix();
    if source > max || cs.scope_prefix() != 0 {
        return false;
    }
    // "ADDRESS ... MUST be ... truncated to the number of bits indicated by the SOURCE
    // PREFIX-LENGTH field, ... [else] the server MUST return FORMERR": the decoder reads
    // whole octets, so stray bits can only sit in the last octet's tail.
    let mask = if source == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(source))
    };
    bits & !mask == 0
}

/// Builds the answer to `request` from `snap` (shared by UDP and TCP).
pub(crate) fn prepare<'a>(
    snap: &'a Snapshot,
    request: &MessageRequest,
    src: IpAddr,
) -> Prepared<'a> {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = false;
    let mut p = Prepared {
        metadata: meta,
        answers: Vec::new(),
        soa: None,
        edns: None,
        qtype: request.queries.queries().first().map(|q| q.query_type()),
        ecs: false,
        geo: None,
    };
    let mut subnet: Option<ClientSubnet> = None;
    if let Some(req_edns) = &request.edns {
        let mut e = Edns::new();
        e.set_max_payload(snap.config.max_udp_payload)
            .set_version(0);
        p.edns = Some(e);
        // RFC 6891 §6.1.3: a version we do not implement gets BADVERS.
        if req_edns.version() > 0 {
            p.metadata.response_code = ResponseCode::BADVERS;
            return p;
        }
        if let Some(EdnsOption::Subnet(cs)) = req_edns.option(EdnsCode::Subnet) {
            p.ecs = true;
            if !valid_ecs(cs) {
                p.metadata.response_code = ResponseCode::FormErr;
                return p;
            }
            subnet = Some(*cs);
        }
    }
    if request.metadata.op_code != OpCode::Query {
        p.metadata.response_code = ResponseCode::NotImp;
        return p;
    }
    let [query] = request.queries.queries() else {
        // RFC 9619: exactly one question.
        p.metadata.response_code = ResponseCode::FormErr;
        return p;
    };
    if query.query_class() != DNSClass::IN {
        p.metadata.response_code = ResponseCode::Refused;
        return p;
    }
    let qtype = query.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // No zone transfers: the zones come from config files, not secondaries.
        p.metadata.response_code = ResponseCode::Refused;
        return p;
    }

    // RFC 7871 §7.1.2: a SOURCE PREFIX-LENGTH of 0 means "do not use my subnet": fall
    // back to the packet's source address.
    let client = match &subnet {
        Some(cs) if cs.source_prefix() > 0 => cs.addr(),
        _ => src,
    };
    let client = canonical(client);
    let mut decision: Option<Decision> = None;
    let res = snap.zones.resolve(query.name(), qtype, &mut || {
        let d = snap.locator.decide(client, &snap.health, false);
        let choice = match d.pop {
            Some(i) => PopChoice::One(i),
            None => PopChoice::All,
        };
        snap.count_geo(choice);
        decision = Some(d);
        choice
    });
    p.metadata.authoritative = res.authoritative;
    p.metadata.response_code = res.rcode;
    p.answers = res.answers;
    p.soa = res.soa;
    p.geo = res.geo;
    if let (Some(mut cs), Some(e)) = (subnet, p.edns.as_mut()) {
        // §7.2.1: echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS; SCOPE says for how wide a
        // network this answer holds. Answers that do not depend on location get /0.
        let scope = match (&decision, res.geo) {
            (Some(d), Some(_)) => d.scope,
            _ => 0,
        };
        cs.set_scope_prefix(scope);
        e.options_mut().insert(EdnsOption::Subnet(cs));
    }
    p
}

/// `::ffff:a.b.c.d` (a dual-stack socket's view of an IPv4 client) → `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Encodes `p` into `out`. If the answer does not fit `limit` bytes it is replaced by an
/// empty one with TC set (RFC 2181 §9: the client retries over TCP and gets it whole),
/// keeping the question and the OPT record so EDNS and ECS are still echoed.
pub(crate) fn encode(queries: &Queries, p: Prepared<'_>, out: &mut Vec<u8>, limit: usize) {
    let Prepared {
        metadata,
        answers,
        soa,
        edns,
        ..
    } = p;
    {
        let response = MessageResponseBuilder::new(queries, edns.as_ref()).build(
            metadata,
            answers.iter().copied(),
            std::iter::empty(),
            soa,
            std::iter::empty(),
        );
        let mut enc = BinEncoder::new(out);
        if let Err(e) = response.destructive_emit(&mut enc) {
            error!(error = %e, "cannot encode answer");
            out.clear();
        }
    }
    if out.len() <= limit && !out.is_empty() {
        return;
    }
    out.clear();
    let mut meta = metadata;
    if meta.response_code == ResponseCode::NoError || meta.response_code == ResponseCode::NXDomain {
        meta.truncation = true;
    } else {
        meta.response_code = ResponseCode::ServFail;
    }
    let response = MessageResponseBuilder::new(queries, edns.as_ref()).build_no_records(meta);
    let mut enc = BinEncoder::new(out);
    if response.destructive_emit(&mut enc).is_err() {
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_validation_follows_rfc7871() {
        let ok = ClientSubnet::new("81.2.69.0".parse().unwrap(), 24, 0);
        assert!(valid_ecs(&ok));
        let stray = ClientSubnet::new("81.2.69.1".parse().unwrap(), 24, 0);
        assert!(!valid_ecs(&stray));
        let scoped = ClientSubnet::new("81.2.69.0".parse().unwrap(), 24, 8);
        assert!(!valid_ecs(&scoped));
        let v6 = ClientSubnet::new("2001:db8::".parse().unwrap(), 56, 0);
        assert!(valid_ecs(&v6));
        let zero = ClientSubnet::new("0.0.0.0".parse().unwrap(), 0, 0);
        assert!(valid_ecs(&zero));
    }
}
