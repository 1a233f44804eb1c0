//! Hit ratios of moka's TinyLFU and LRU policies on a simulated DASH segment workload,
//! to choose the edge's default eviction policy with numbers (the table is in the README).
//!
//! `cargo run --release -p dashcdn-edge --example policy`
//!
//! Workload (deterministic, seeded):
//! - a catalogue of 400 assets, 150 segments each, in three representations (0.4, 1.0 and
//!   2.0 MB per segment); asset popularity is Zipf(0.9);
//! - a viewer picks an asset and a representation, starts at segment 1 and watches
//!   sequentially, leaving after each segment with probability 3% (so most sessions see
//!   the first minutes, few the end: the usual VOD abandonment curve);
//! - optionally a crawler, interleaved with the viewers, fetches 30 000 distinct
//!   segments of the long tail once each (a scan: the case TinyLFU's admission guards).
//!
//! The cache is a moka `sync::Cache` configured exactly like the edge's store (byte
//! weigher, pending tasks run after each insert).

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const ASSETS: usize = 400;
const SEGMENTS: u32 = 150;
const REP_BYTES: [u32; 3] = [400_000, 1_000_000, 2_000_000];

struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// One request: key and size.
fn workload(scan: bool, requests: usize) -> Vec<(u64, u32)> {
    let mut rng = Rng(42);
    let zipf = Zipf::new(ASSETS, 0.9);
    let mut out = Vec::with_capacity(requests);
    let mut crawler = 0u64;
    while out.len() < requests {
        let asset = zipf.sample(&mut rng) as u64;
        let rep = (rng.next() % 3) as usize;
        let mut seg = 1u32;
        loop {
            let key = (asset << 32) | ((rep as u64) << 24) | seg as u64;
            out.push((key, REP_BYTES[rep]));
            if scan && out.len() % 4 == 0 && crawler < 30_000 {
                // Tail assets' late segments, each once.
                let a = (ASSETS as u64 / 2) + crawler % (ASSETS as u64 / 2);
                let s = 100 + (crawler / (ASSETS as u64 / 2)) as u32 % 50;
                out.push((1 << 62 | (a << 32) | (2 << 24) | s as u64, REP_BYTES[2]));
                crawler += 1;
            }
            seg += 1;
            if seg > SEGMENTS || rng.unit() < 0.03 || out.len() >= requests {
                break;
            }
        }
    }
    out
}

fn run(policy: EvictionPolicy, capacity: u64, reqs: &[(u64, u32)]) -> (f64, f64) {
    let cache: Cache<u64, u32> = Cache::builder()
        .max_capacity(capacity)
        .weigher(|_, v: &u32| *v)
        .eviction_policy(policy)
        .build();
    let (mut hits, mut hit_bytes, mut bytes) = (0u64, 0u64, 0u64);
    for &(key, size) in reqs {
        bytes += size as u64;
        if cache.get(&key).is_some() {
            hits += 1;
            hit_bytes += size as u64;
        } else {
            cache.insert(key, size);
            cache.run_pending_tasks();
        }
    }
    (
        hits as f64 / reqs.len() as f64,
        hit_bytes as f64 / bytes as f64,
    )
}

fn main() {
    let requests = 300_000;
    println!(
        "| workload | cache size | TinyLFU hit ratio (req / bytes) | LRU hit ratio (req / bytes) |"
    );
    println!("| --- | --- | --- | --- |");
    for scan in [false, true] {
        let reqs = workload(scan, requests);
        for gib in [2u64, 8, 32] {
            let cap = gib << 30;
            let t = run(EvictionPolicy::tiny_lfu(), cap, &reqs);
            let l = run(EvictionPolicy::lru(), cap, &reqs);
            println!(
                "| {} | {gib} GiB | {:.1}% / {:.1}% | {:.1}% / {:.1}% |",
                if scan {
                    "viewers + crawler scan"
                } else {
                    "viewers"
                },
                t.0 * 100.0,
                t.1 * 100.0,
                l.0 * 100.0,
                l.1 * 100.0
            );
        }
    }
}
