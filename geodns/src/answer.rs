//! One answer: a query's bytes in, the response's bytes out, shared by every transport.
//!
//! [`answer`] reads the message (refusing what hickory's decoder lets through, see
//! [`crate::wire`]), [`prepare`] decides the answer from the current snapshot (EDNS,
//! Client Subnet, TSIG, the zone lookup, the geo choice), `encode` writes it, compressing
//! answer names against the question, and truncates what does not fit (RFC 2181 §9).
//!
//! Why our own handler rather than hickory's `Catalog`: the catalog builds a fresh EDNS
//! record for each reply and so never echoes the EDNS Client Subnet option, and geo answers
//! need the option echoed with its scope (RFC 7871 §7.2.1).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_proto::op::{
    emit_message_parts, Edns, Header, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::tsig::{TsigError, TSIG};
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageRequest, Queries};
use tracing::{debug, error};

use crate::dnssec::{self, Signer};
use crate::geo::Decision;
use crate::state::{Snapshot, State};
use crate::wire;

use crate::zone::PopChoice;

/// What a cached copy of an answer needs for metrics: query type, rcode, ECS present,
/// the PoP choice.
pub(crate) type AnswerInfo = (Option<RecordType>, ResponseCode, bool, Option<PopChoice>);

/// How the message came: UDP answers are capped by the client's EDNS payload size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    /// TCP, DoT, DoH: a length-framed message of up to 64 KiB.
    Stream,
}

/// What answering one message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Nothing to send: not a query (or not even a header).
    Nothing,
    /// `out` holds the answer.
    Answer,
    /// `out` holds the FORMERR for a message that could not be read; a stream transport
    /// closes the connection after sending it (its framing can no longer be trusted).
    Malformed,
}

/// Answers one DNS message into `out`. `info` receives what a cached copy of this answer
/// needs for metrics (only for answers worth caching).
pub(crate) fn answer(
    state: &State,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    info: &mut Option<AnswerInfo>,
) -> Reply {
    let started = Instant::now();
    // Fewer than 12 bytes: not even a header to answer to (RFC 1035 §4.1.1).
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        debug!(%src, len = packet.len(), "dropped message shorter than a DNS header");
        return Reply::Nothing;
    };
    if header.metadata.message_type == MessageType::Response {
        // Never answer a response: that is how reflection loops start.
        return Reply::Nothing;
    }
    let parsed = if wire::question_points_back(packet) {
        Err("question name points into the header".to_string())
    } else {
        let protocol = match transport {
            Transport::Udp => Protocol::Udp,
            Transport::Stream => Protocol::Tcp,
        };
        Request::from_bytes(packet.to_vec(), src, protocol).map_err(|e| e.to_string())
    };
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            debug!(%src, error = %e, "malformed query: FORMERR");
            let snap = state.current.load();
            write_error(
                out,
                &header.metadata,
                wire::find_opt(packet),
                snap.config.max_udp_payload,
            );
            state
                .metrics
                .query(None, ResponseCode::FormErr, false, started.elapsed());
            return Reply::Malformed;
        }
    };
    let snap = state.current.load();
    let p = prepare(&snap, &request, packet, src.ip());
    let limit = match (transport, &request.edns) {
        (Transport::Stream, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => {
            usize::from(e.max_payload().clamp(512, snap.config.max_udp_payload))
        }
        (Transport::Udp, None) => 512,
    };
    let (qtype, rcode, ecs, geo) = (p.qtype, p.metadata.response_code, p.ecs, p.geo);
    let cacheable = p.tsig.is_none();
    encode(&request.queries, &p, out, limit);
    state.metrics.query(qtype, rcode, ecs, started.elapsed());
    if cacheable {
        *info = Some((qtype, rcode, ecs, geo));
    }
    Reply::Answer
}

/// A header-only FORMERR to a message that could not be read: id and opcode echoed, no
/// question (it could not be read), and an OPT when the query had one: RFC 6891 §7,
/// "responders MUST include an OPT record in their respective responses" (DO copied).
fn write_error(out: &mut Vec<u8>, query: &Metadata, opt: Option<wire::RawOpt>, payload: u16) {
    let mut meta = Metadata::response_from_request(query);
    meta.response_code = ResponseCode::FormErr;
    meta.recursion_available = false;
    let edns = opt.map(|o| {
        let mut e = Edns::new();
        e.set_max_payload(payload)
            .set_version(0)
            .set_dnssec_ok(o.dnssec_ok);
        e
    });
    let none = std::iter::empty::<&Record>;
    let mut enc = BinEncoder::new(out);
    if let Err(e) = emit_message_parts(
        &meta,
        &mut std::iter::empty::<&hickory_proto::op::Query>(),
        &mut none(),
        &mut none(),
        &mut none(),
        edns.as_ref(),
        None,
        &mut enc,
    ) {
        error!(error = %e, "cannot encode FORMERR");
        out.clear();
    }
}

/// An answer ready to encode: borrowed from the snapshot.
pub(crate) struct Prepared<'a> {
    pub(crate) metadata: Metadata,
    pub(crate) answers: Vec<&'a Record>,
    pub(crate) soa: Option<&'a Record>,
    pub(crate) edns: Option<Edns>,
    /// RRSIGs of the answer section (DNSSEC, when the query has DO).
    pub(crate) signed_answers: Vec<Record>,
    /// RRSIG of the SOA, the denial NSEC and its RRSIG.
    pub(crate) signed_authority: Vec<Record>,
    /// The unsigned TSIG of a NOTAUTH/BADKEY answer (RFC 8945 §5.2.2).
    pub(crate) tsig: Option<Record<TSIG>>,
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

/// Builds the answer to `request` (whose bytes are `packet`) from `snap`.
pub(crate) fn prepare<'a>(
    snap: &'a Snapshot,
    request: &MessageRequest,
    packet: &[u8],
    src: IpAddr,
) -> Prepared<'a> {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = false;
    let mut p = Prepared {
        metadata: meta,
        answers: Vec::new(),
        soa: None,
        edns: None,
        signed_answers: Vec::new(),
        signed_authority: Vec::new(),
        tsig: None,
        qtype: request.queries.queries().first().map(|q| q.query_type()),
        ecs: false,
        geo: None,
    };
    let mut subnet: Option<ClientSubnet> = None;
    if let Some(req_edns) = &request.edns {
        let mut e = Edns::new();
        e.set_max_payload(snap.config.max_udp_payload)
            .set_version(0)
            // RFC 3225 §3: "the DO bit of the query MUST be copied in the response".
            .set_dnssec_ok(req_edns.flags().dnssec_ok);
        p.edns = Some(e);
        // RFC 6891 §6.1.3: a version we do not implement gets BADVERS.
        if req_edns.version() > 0 {
            p.metadata.response_code = ResponseCode::BADVERS;
            return p;
        }
        if let Some(EdnsOption::Subnet(cs)) = req_edns.option(EdnsCode::Subnet) {
            p.ecs = true;
            // RFC 7871 §6: "A server receiving an ECS option that uses either too few or
            // too many ADDRESS octets, or that has non-zero ADDRESS bits set beyond
            // SOURCE PREFIX-LENGTH, SHOULD return FORMERR". The decoder drops surplus
            // octets, so their count is read from the bytes.
            let bad_length = wire::find_opt(packet).is_some_and(|o| o.ecs_bad_length);
            if bad_length || !valid_ecs(cs) {
                p.metadata.response_code = ResponseCode::FormErr;
                return p;
            }
            subnet = Some(*cs);
        }
    }
    if let Some(sig) = &request.signature {
        // RFC 8945 §5.2.2: "If a non-forwarding server does not recognize the key or
        // algorithm used by the client ..., the error response MUST be generated with
        // RCODE 9 (NOTAUTH) and TSIG ERROR 17 (BADKEY). This response MUST be unsigned".
        // We hold no TSIG keys (no transfers, no updates), so every key is unknown.
        p.metadata.response_code = ResponseCode::NotAuth;
        let t = &sig.data;
        let rdata = TSIG::new(
            t.algorithm.clone(),
            t.time,
            t.fudge,
            Vec::new(),
            request.metadata.id,
            Some(TsigError::BadKey),
            Vec::new(),
        );
        let mut rec = Record::from_rdata(sig.name.clone(), 0, rdata);
        rec.dns_class = DNSClass::ANY;
        p.tsig = Some(rec);
        return p;
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
    // RFC 7871 §7.2.1 on CNAME chains under ECS: answer the CNAME alone when its target
    // is geo-routed, so the resolver asks for the target with the subnet and caches the
    // CNAME for everyone (it does not depend on where the client is).
    let res = snap
        .zones
        .resolve(query.name(), qtype, subnet.is_some(), &mut || {
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
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    if let (Some(signer), true) = (&snap.signer, dnssec_ok) {
        add_signatures(signer, &mut p, res.denied);
    }
    if let (Some(mut cs), Some(e)) = (subnet, p.edns.as_mut()) {
        cs.set_scope_prefix(ecs_scope(
            &cs,
            decision.as_ref().filter(|_| res.geo.is_some()),
        ));
        e.options_mut().insert(EdnsOption::Subnet(cs));
    }
    p
}

/// DNSSEC (RFC 4035 §3.1): an RRSIG beside every RRset of the answer, and for a negative
/// answer the SOA's RRSIG and a compact denial (RFC 9824, see [`crate::dnssec`]): an
/// NSEC at the denied name, which turns NXDOMAIN into NOERROR.
fn add_signatures(
    signer: &Signer,
    p: &mut Prepared<'_>,
    denied: Option<(LowerName, Option<Vec<RecordType>>)>,
) {
    let mut i = 0;
    while i < p.answers.len() {
        let first = p.answers[i];
        let mut j = i + 1;
        while j < p.answers.len()
            && p.answers[j].record_type() == first.record_type()
            && p.answers[j].name == first.name
        {
            j += 1;
        }
        p.signed_answers
            .extend(signer.sign(&p.answers[i..j]).iter().cloned());
        i = j;
    }
    let (Some(soa), Some((name, types))) = (p.soa, denied) else {
        return;
    };
    let name = Name::from(name);
    if !signer.signs(&name) {
        return;
    }
    p.signed_authority
        .extend(signer.sign(&[soa]).iter().cloned());
    let exists = types.is_some();
    if let Some(nsec) = dnssec::nsec(&name, soa.ttl, types.as_deref().unwrap_or(&[]), exists) {
        let sigs = signer.sign(&[&nsec]);
        p.signed_authority.push(nsec);
        p.signed_authority.extend(sigs.iter().cloned());
    }
    if p.metadata.response_code == ResponseCode::NXDomain {
        p.metadata.response_code = ResponseCode::NoError;
    }
}

/// RFC 7871 §7.2.1: echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS; SCOPE PREFIX-LENGTH
/// says for how wide a network of the option's family the answer holds.
/// - An answer that does not depend on the location (`decision` is `None`) holds for all: /0.
/// - "A SOURCE PREFIX-LENGTH value of 0 means that the Recursive Resolver MUST NOT add
///   address information ... the SCOPE PREFIX-LENGTH in the response MUST also be 0."
/// - An IPv4-mapped IPv6 address is located as IPv4, but its scope is counted in IPv6
///   bits (96 + the IPv4 scope): an IPv4-sized scope in an IPv6 option would claim the
///   answer for a whole `::/27`.
fn ecs_scope(cs: &ClientSubnet, decision: Option<&Decision>) -> u8 {
    let Some(d) = decision else { return 0 };
    if cs.source_prefix() == 0 {
        return 0;
    }
    match cs.addr() {
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => (96 + d.scope).min(128),
        _ => d.scope,
    }
}

/// `::ffff:a.b.c.d` (a dual-stack socket's view of an IPv4 client) → `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Writes `p` with or without its records. The question is written from the query as
/// parsed (its case as sent, RFC 4343), so answer names compress against it.
fn emit(
    queries: &Queries,
    p: &Prepared<'_>,
    metadata: &Metadata,
    records: bool,
    out: &mut Vec<u8>,
) -> Result<(), hickory_proto::ProtoError> {
    let mut enc = BinEncoder::new(out);
    let mut qs = queries.queries().iter().map(|q| q.original());
    let take = if records { usize::MAX } else { 0 };
    let mut answers = p
        .answers
        .iter()
        .copied()
        .chain(&p.signed_answers)
        .take(take);
    let mut authority = p.soa.iter().copied().chain(&p.signed_authority).take(take);
    emit_message_parts(
        metadata,
        &mut qs,
        &mut answers,
        &mut authority,
        &mut std::iter::empty::<&Record>(),
        p.edns.as_ref(),
        p.tsig.as_ref(),
        &mut enc,
    )
    .map(|_| ())
}

/// Encodes `p` into `out`. If the answer does not fit `limit` bytes it is replaced by an
/// empty one with TC set (RFC 2181 §9: the client retries over TCP and gets it whole),
/// keeping the question and the OPT record so EDNS and ECS are still echoed.
fn encode(queries: &Queries, p: &Prepared<'_>, out: &mut Vec<u8>, limit: usize) {
    out.clear();
    if let Err(e) = emit(queries, p, &p.metadata, true, out) {
        error!(error = %e, "cannot encode answer");
        out.clear();
    }
    if out.len() <= limit && !out.is_empty() {
        return;
    }
    out.clear();
    let mut meta = p.metadata;
    if meta.response_code == ResponseCode::NoError || meta.response_code == ResponseCode::NXDomain {
        meta.truncation = true;
    } else {
        meta.response_code = ResponseCode::ServFail;
    }
    if emit(queries, p, &meta, false, out).is_err() {
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
