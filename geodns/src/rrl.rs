//! Response rate limiting of UDP answers, in the manner of BIND and Knot RRL.
//!
//! A spoofed flood makes an authoritative server an amplifier aimed at the spoofed
//! address. Each UDP response is charged to a bucket keyed by the client's network (/24
//! for IPv4, /56 for IPv6: one host can spoof its neighbours, and resolvers' pools span
//! such networks) and the answer (question name lowercased, type, RCODE): a token bucket
//! of `responses_per_second` tokens per second, one second deep. A response without a
//! token is withheld; every `slip`-th withheld one is sent truncated instead (TC=1, no
//! records), so a real client caught in the flood retries over TCP, which cannot be
//! spoofed and is never limited. Networks in `exempt` are never limited.
//!
//! The table is sharded by key so the UDP threads rarely meet on one lock; when a shard
//! grows past [`SHARD_ENTRIES`], buckets idle for a second (full again) are forgotten, so
//! a flood from many spoofed sources costs bounded memory. With `responses_per_second = 0`
//! nothing here runs.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::RrlConfig;
use crate::wire;

const SHARDS: usize = 16;
/// Buckets per shard before idle ones are swept.
const SHARD_ENTRIES: usize = 8192;

/// What to do with one UDP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    /// Send the truncated form (see [`truncate`]).
    Slip,
    Drop,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Responses withheld so far (every `slip`-th of them slips).
    withheld: u32,
}

pub(crate) struct Rrl {
    rate: f64,
    slip: u32,
    exempt: Vec<IpNet>,
    hasher: std::hash::RandomState,
    shards: Vec<Mutex<HashMap<u64, Bucket>>>,
}

impl Rrl {
    /// `None` when rate limiting is off.
    pub(crate) fn new(config: &RrlConfig) -> Option<Rrl> {
        if config.responses_per_second == 0 {
            return None;
        }
        Some(Rrl {
            rate: f64::from(config.responses_per_second),
            slip: config.slip,
            exempt: config.exempt.clone(),
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// `client` is in an `exempt` network: never limited (checked before the clock is
    /// read, so exempt resolvers pay only this).
    pub(crate) fn exempt(&self, client: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(&client))
    }

    /// Charges `response` (about to go to `client`) to its bucket.
    pub(crate) fn check(&self, client: IpAddr, response: &[u8], now: Instant) -> Verdict {
        if self.exempt(client) {
            return Verdict::Send;
        }
        let key = self.key(client, response);
        let mut shard = self.shards[key as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if shard.len() >= SHARD_ENTRIES {
            shard.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(1));
        }
        let b = shard.entry(key).or_insert(Bucket {
            tokens: self.rate,
            last: now,
            withheld: 0,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Send;
        }
        b.withheld = b.withheld.wrapping_add(1);
        if self.slip > 0 && b.withheld.is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    fn key(&self, client: IpAddr, response: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        match client {
            IpAddr::V4(a) => h.write_u32(u32::from(a) & 0xffff_ff00),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => h.write_u32(u32::from(v4) & 0xffff_ff00),
                None => h.write_u128(u128::from(a) & !((1u128 << 72) - 1)),
            },
        }
        // The answer: question (name folded to lowercase, type, class) and RCODE.
        let question = wire::question_end(response).map_or(&[][..], |end| &response[12..end]);
        for &b in question {
            h.write_u8(b.to_ascii_lowercase());
        }
        h.write_u8(response.get(3).map_or(0, |f| f & 0x0f));
        h.finish()
    }
}

/// Cuts `response` to its header, question and OPT record (RFC 6891 §7: kept whenever
/// the query had one) with TC set and no records (RFC 2181 §9: the client retries over TCP).
pub(crate) fn truncate(response: &mut Vec<u8>) {
    let opt = wire::find_opt(response).map(|o| response[o.range.0..o.range.1].to_vec());
    let end = wire::question_end(response).unwrap_or(12.min(response.len()));
    response.truncate(end);
    if response.len() >= 12 {
        response[2] |= 0x02;
        response[6..12].fill(0);
        if let Some(opt) = opt {
            response[11] = 1;
            response.extend_from_slice(&opt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrl(rps: u32, slip: u32, exempt: &[&str]) -> Rrl {
        Rrl::new(&RrlConfig {
            responses_per_second: rps,
            slip,
            exempt: exempt.iter().map(|e| e.parse().unwrap()).collect(),
        })
        .unwrap()
    }

    /// id, flags (QR AA), one question `a.test A IN`, one answer.
    fn response(name: &str) -> Vec<u8> {
        let mut r = vec![0, 1, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        r.push(name.len() as u8);
        r.extend_from_slice(name.as_bytes());
        r.extend_from_slice(&[4, b't', b'e', b's', b't', 0, 0, 1, 0, 1]);
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        r
    }

    #[test]
    fn a_flood_gets_the_rate_and_every_slip_th_withheld_response_truncated() {
        let r = rrl(10, 2, &[]);
        let t0 = Instant::now();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..30)
            .map(|_| r.check(client, &response("a"), t0))
            .collect();
        let count = |v| verdicts.iter().filter(|&&x| x == v).count();
        assert_eq!(count(Verdict::Send), 10, "one second's worth");
        assert_eq!(count(Verdict::Slip), 10);
        assert_eq!(count(Verdict::Drop), 10);
        // Its neighbour in the same /24, same answer, shares the bucket; 0x20 case too.
        let neighbour: IpAddr = "192.0.2.99".parse().unwrap();
        assert_ne!(r.check(neighbour, &response("A"), t0), Verdict::Send);
        // Another network, or another answer, has its own.
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(r.check(other, &response("a"), t0), Verdict::Send);
        assert_eq!(r.check(client, &response("b"), t0), Verdict::Send);
        // Half a second refills half the bucket.
        let later = t0 + Duration::from_millis(500);
        let sent = (0..10)
            .filter(|_| r.check(client, &response("a"), later) == Verdict::Send)
            .count();
        assert_eq!(sent, 5);
    }

    #[test]
    fn exempt_networks_and_slip_zero() {
        let r = rrl(1, 0, &["192.0.2.0/24"]);
        let t0 = Instant::now();
        let exempt: IpAddr = "192.0.2.7".parse().unwrap();
        assert!((0..100).all(|_| r.check(exempt, &response("a"), t0) == Verdict::Send));
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(r.check(other, &response("a"), t0), Verdict::Send);
        assert!((0..10).all(|_| r.check(other, &response("a"), t0) == Verdict::Drop));
    }

    #[test]
    fn truncation_keeps_the_opt_record() {
        let mut r = response("a");
        r[11] = 1; // ARCOUNT: the OPT below
        let opt = [0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0];
        r.extend_from_slice(&opt);
        truncate(&mut r);
        assert_eq!(&r[4..12], [0, 1, 0, 0, 0, 0, 0, 1]);
        assert!(r.ends_with(&opt));
        assert_eq!(r.len(), 12 + 8 + 4 + opt.len());
    }

    #[test]
    fn truncation_keeps_the_question_and_sets_tc() {
        let mut r = response("a");
        truncate(&mut r);
        assert_eq!(
            r.len(),
            12 + (2 + 5 + 1) + 4,
            "header, a.test, type and class"
        );
        assert_eq!(r[2] & 0x02, 0x02);
        assert_eq!(&r[4..12], [0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
