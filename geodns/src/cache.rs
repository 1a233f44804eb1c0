//! The answer cache: a finished answer, reused byte for byte (with the query's ID) when
//! the same query comes again from the same client address.
//!
//! The key is the whole query after its ID (question as sent, flags, EDNS options
//! including ECS), the client address (unless an ECS option places the client) and the
//! transport, so a hit is byte-for-byte the
//! answer the full path would give; entries carry the snapshot and health epoch they were
//! made under and are dropped when either changes. One cache per thread, so no locks: each
//! UDP thread owns one, and the stream transports (TCP, DoT, DoH) use one per runtime
//! worker thread ([`answer_stream`]). Resolvers repeat the same popular names from the
//! same addresses, which is where this pays; PowerDNS has the same idea as its packet
//! cache. A hit skips parsing, geo lookup, signing and encoding: what is left is the
//! transport's own cost.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::answer::{answer, Reply, Transport};
use crate::state::State;
use crate::wire;
use crate::zone::PopChoice;

/// [`answer`] through `cache` (see the module). Messages that are not plain queries, and
/// answers [`answer`] does not offer for caching (FORMERR, TSIG), take the full path.
pub(crate) fn answer_cached(
    state: &State,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    cache: &mut AnswerCache,
) -> Reply {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return answer(state, packet, src, transport, out, &mut None);
    }
    let started = Instant::now();
    let snap = state.current.load();
    let stamp = (snap.generation, snap.health.epoch());
    let old = cache
        .born
        .is_none_or(|b| started.duration_since(b) > ANSWER_CACHE_AGE);
    if cache.stamp != stamp || old {
        cache.entries.clear();
        cache.stamp = stamp;
        cache.born = Some(started);
    }
    cache.key.clear();
    cache.key.extend_from_slice(&packet[2..]);
    // With an ECS SOURCE PREFIX-LENGTH above 0 the answer depends on the option, never on
    // the packet's source (RFC 7871 §7.1.2): one entry serves every address of a resolver
    // pool. Otherwise the source is where the client is, and part of the key.
    let by_subnet = wire::find_opt(packet)
        .and_then(|o| o.ecs_source)
        .is_some_and(|s| s > 0);
    if !by_subnet {
        match src.ip() {
            IpAddr::V4(a) => cache.key.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => cache.key.extend_from_slice(&a.octets()),
        }
    }
    cache.key.push(
        match transport {
            Transport::Udp => 0,
            Transport::Stream => 1,
        } | u8::from(by_subnet) << 1,
    );
    if let Some(hit) = cache.entries.get(cache.key.as_slice()) {
        out.clear();
        out.extend_from_slice(&packet[..2]);
        out.extend_from_slice(&hit.answer);
        if let Some(choice) = hit.geo {
            snap.count_geo(choice);
        }
        state
            .metrics
            .query(hit.qtype, hit.rcode, hit.ecs, started.elapsed());
        return Reply::Answer;
    }
    drop(snap);
    let mut info = None;
    let reply = answer(state, packet, src, transport, out, &mut info);
    if let Some((qtype, rcode, ecs, geo)) = info {
        if out.len() >= 2 {
            if cache.entries.len() >= ANSWER_CACHE_ENTRIES {
                cache.entries.clear();
            }
            let key = cache.key.clone().into_boxed_slice();
            cache.entries.insert(
                key,
                CachedAnswer {
                    answer: out[2..].into(),
                    qtype,
                    rcode,
                    ecs,
                    geo,
                },
            );
        }
    }
    reply
}

/// Entries per UDP thread; the cache is emptied when full (cheap, and a hot set refills
/// it within a few hundred queries).
const ANSWER_CACHE_ENTRIES: usize = 8192;

/// Longest an answer stays in a thread's cache (signatures are valid for days).
const ANSWER_CACHE_AGE: Duration = Duration::from_secs(3600);

struct CachedAnswer {
    /// The encoded answer without its 2-byte ID.
    answer: Box<[u8]>,
    qtype: Option<RecordType>,
    rcode: ResponseCode,
    ecs: bool,
    geo: Option<PopChoice>,
}

#[derive(Default)]
pub(crate) struct AnswerCache {
    /// (snapshot generation, health epoch) the entries were answered under.
    stamp: (u64, u64),
    /// When the entries were first made: they are dropped after [`ANSWER_CACHE_AGE`], so
    /// a cached DNSSEC signature is never served near its expiry.
    born: Option<Instant>,
    entries: HashMap<Box<[u8]>, CachedAnswer>,
    /// Reused key buffer.
    key: Vec<u8>,
}

thread_local! {
    /// The stream transports' cache of this runtime worker thread.
    static STREAM_CACHE: RefCell<AnswerCache> = RefCell::new(AnswerCache::default());
}

/// [`answer`] for TCP, DoT and DoH through the calling thread's cache. Nothing awaits
/// while the cache is borrowed, so tasks sharing a worker thread take turns.
pub(crate) fn answer_stream(
    state: &State,
    packet: &[u8],
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> Reply {
    STREAM_CACHE.with(|c| match c.try_borrow_mut() {
        Ok(mut cache) => answer_cached(state, packet, peer, Transport::Stream, out, &mut cache),
        // Not reachable (no re-entry), but never worth a panic.
        Err(_) => answer(state, packet, peer, Transport::Stream, out, &mut None),
    })
}
