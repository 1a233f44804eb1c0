//! The trace model of the ABR lab: bandwidth traces of three network families, generated
//! from a seed, so a training set and a test set are two seeds of the same model.
//!
//! Every family is a Markov chain over bandwidth states (Gilbert–Elliott style: a state
//! lasts a geometric number of one-second periods, then the chain moves), with lognormal
//! variability around the state's mean and a per-trace scale, so two traces of a family
//! differ in level as well as in shape:
//!
//! | family | states (mean kbit/s × trace scale) | latency | per-trace scale |
//! | --- | --- | --- | --- |
//! | `3g` (HSDPA-like) | good 1 600 (σ 0.35), fade 350 (σ 0.5), outage 0–60 | 80–250 ms | 0.5–2.2 |
//! | `4g` (LTE) | a measured trace of `data/abr/traces-4g`, circularly shifted, scaled and jittered (σ 0.15) | as measured | 0.6–1.4 |
//! | `fcc` (broadband) | steady at the trace's rate (σ 0.08), dip to 15–50 % for 2–10 s | 15–60 ms | 1.5–40 Mbit/s (log-uniform) |
//!
//! For `3g`: good lasts 25 s on average, fade 8 s, outage 4 s; from good the chain goes to
//! fade (80 %) or outage (20 %), from fade back to good (70 %) or outage (30 %), from
//! outage to fade. For `fcc` a dip starts with probability 0.8 % per second. Measured 4G
//! traces are split by position (even files train, odd files test) so no measured trace is
//! in both sets. Traces are 600 s long; the simulator loops them.

use std::path::Path;

use crate::trace::{Period, Trace, TraceError};

/// Length of a generated trace, one-second periods.
const PERIODS: usize = 600;

/// A network family of the trace model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    ThreeG,
    Lte,
    Fcc,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::ThreeG, Family::Lte, Family::Fcc];

    pub fn name(self) -> &'static str {
        match self {
            Family::ThreeG => "3g",
            Family::Lte => "4g",
            Family::Fcc => "fcc",
        }
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Family, String> {
        Family::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown trace family `{s}`; choose one of 3g, 4g, fcc"))
    }
}

/// Which half of the measured 4G traces a set draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// SplitMix64: small, seedable, and the same on every platform and version (a trace set is
/// named by its seed in the docs, so it must never change under a dependency update).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-12);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// Lognormal factor with median 1.
    fn lognormal(&mut self, sigma: f64) -> f64 {
        (sigma * self.normal()).exp()
    }
    /// Leaves the current state after a geometric number of periods with this mean.
    fn leaves(&mut self, mean_periods: f64) -> bool {
        self.f() < 1.0 / mean_periods
    }
}

/// `count` traces of `family` from `seed`; `lte_dir` holds the measured 4G traces.
pub fn generate(
    family: Family,
    split: Split,
    seed: u64,
    count: usize,
    lte_dir: &Path,
) -> Result<Vec<Trace>, TraceError> {
    let mut rng = Rng(seed ^ (family as u64).wrapping_mul(0x1000_0000_01B3));
    match family {
        Family::ThreeG => Ok((0..count).map(|_| three_g(&mut rng)).collect()),
        Family::Fcc => Ok((0..count).map(|_| fcc(&mut rng)).collect()),
        Family::Lte => {
            let files = crate::sim::trace_files(lte_dir).map_err(|e| TraceError::Model {
                problem: format!(
                    "cannot list the measured 4G traces in {}: {e}",
                    lte_dir.display()
                ),
            })?;
            let keep = usize::from(split == Split::Test);
            let measured = files
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == keep)
                .map(|(_, p)| Trace::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            if measured.is_empty() {
                return Err(TraceError::Model {
                    problem: format!("no measured 4G traces in {}", lte_dir.display()),
                });
            }
            Ok((0..count)
                .map(|_| {
                    let m = &measured[(rng.next_u64() % measured.len() as u64) as usize];
                    lte(&mut rng, m)
                })
                .collect())
        }
    }
}

fn period(bandwidth_kbps: f64, latency_ms: f64) -> Period {
    Period {
        duration_ms: 1000.0,
        bandwidth_kbps: bandwidth_kbps.max(0.0),
        latency_ms,
    }
}

fn three_g(rng: &mut Rng) -> Trace {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Good,
        Fade,
        Outage,
    }
    let scale = rng.range(0.5, 2.2);
    let latency = rng.range(80.0, 250.0);
    let mut s = S::Good;
    let mut outage_floor = rng.range(0.0, 60.0);
    let periods = (0..PERIODS)
        .map(|_| {
            let bw = match s {
                S::Good => 1600.0 * scale * rng.lognormal(0.35),
                S::Fade => 350.0 * scale * rng.lognormal(0.5),
                S::Outage => outage_floor * rng.f(),
            };
            s = match s {
                S::Good if rng.leaves(25.0) => {
                    if rng.f() < 0.8 {
                        S::Fade
                    } else {
                        S::Outage
                    }
                }
                S::Fade if rng.leaves(8.0) => {
                    if rng.f() < 0.7 {
                        S::Good
                    } else {
                        S::Outage
                    }
                }
                S::Outage if rng.leaves(4.0) => {
                    outage_floor = rng.range(0.0, 60.0);
                    S::Fade
                }
                same => same,
            };
            period(bw, latency * rng.lognormal(0.2))
        })
        .collect();
    Trace { periods }
}

fn fcc(rng: &mut Rng) -> Trace {
    let rate = (rng.range(1500f64.ln(), 40_000f64.ln())).exp();
    let latency = rng.range(15.0, 60.0);
    let mut dip_left = 0u32;
    let mut dip = 1.0;
    let periods = (0..PERIODS)
        .map(|_| {
            if dip_left == 0 && rng.f() < 0.008 {
                dip_left = rng.range(2.0, 11.0) as u32;
                dip = rng.range(0.15, 0.5);
            }
            let factor = if dip_left > 0 {
                dip_left -= 1;
                dip
            } else {
                1.0
            };
            period(
                rate * factor * rng.lognormal(0.08),
                latency * rng.lognormal(0.1),
            )
        })
        .collect();
    Trace { periods }
}

fn lte(rng: &mut Rng, measured: &Trace) -> Trace {
    let n = measured.periods.len();
    let shift = (rng.next_u64() % n as u64) as usize;
    let scale = rng.range(0.6, 1.4);
    let periods = (0..n)
        .map(|i| {
            let p = measured.periods[(i + shift) % n];
            Period {
                bandwidth_kbps: p.bandwidth_kbps * scale * rng.lognormal(0.15),
                ..p
            }
        })
        .collect();
    Trace { periods }
}

/// Writes `traces` as sabre network JSON files `{prefix}{i:03}.json` into `dir`.
pub fn write_sabre(dir: &Path, prefix: &str, traces: &[Trace]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, t) in traces.iter().enumerate() {
        let items: Vec<String> = t
            .periods
            .iter()
            .map(|p| {
                format!(
                    "{{\"duration_ms\": {}, \"bandwidth_kbps\": {:.3}, \"latency_ms\": {:.3}}}",
                    p.duration_ms, p.bandwidth_kbps, p.latency_ms
                )
            })
            .collect();
        std::fs::write(
            dir.join(format!("{prefix}{i:03}.json")),
            format!("[\n{}\n]\n", items.join(",\n")),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lte_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abr/traces-4g")
    }

    fn mean(t: &Trace) -> f64 {
        t.periods.iter().map(|p| p.bandwidth_kbps).sum::<f64>() / t.periods.len() as f64
    }

    #[test]
    fn a_seed_names_one_set_and_another_seed_another() {
        for f in Family::ALL {
            let a = generate(f, Split::Train, 1, 3, &lte_dir()).unwrap();
            let b = generate(f, Split::Train, 1, 3, &lte_dir()).unwrap();
            let c = generate(f, Split::Test, 2, 3, &lte_dir()).unwrap();
            assert_eq!(a, b, "{}", f.name());
            assert_ne!(a, c, "{}", f.name());
        }
    }

    #[test]
    fn three_g_has_outages_and_fcc_is_fast_and_steady() {
        let g = generate(Family::ThreeG, Split::Train, 7, 20, &lte_dir()).unwrap();
        let below_60 = g
            .iter()
            .flat_map(|t| &t.periods)
            .filter(|p| p.bandwidth_kbps < 60.0)
            .count();
        assert!(below_60 > 100, "{below_60} periods in outage");
        let f = generate(Family::Fcc, Split::Train, 7, 20, &lte_dir()).unwrap();
        assert!(f.iter().all(|t| mean(t) > 1000.0));
        assert!(g.iter().map(mean).sum::<f64>() < f.iter().map(mean).sum::<f64>());
    }
}
