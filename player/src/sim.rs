//! The ABR lab: a [`Session`] driven over a bandwidth [`Trace`] on a simulated clock.
//!
//! The network model is sabre's: each request first waits one latency (the latency of the
//! period it falls in, spread across periods when it straddles one), then the body arrives
//! at the period's bandwidth; the trace loops. While a download is abandonable the model
//! advances in small steps (at least 50 ms or 12 000 bits) and asks the ABR after each
//! whether to give up. Nothing here sleeps or touches a socket: a session over a
//! ten-minute video takes well under a millisecond.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::abr::{AbrKind, Progress};
use crate::content::Content;
use crate::qoe::Summary;
use crate::session::{Fetched, SegmentRecord, Session, SessionConfig, Step};
use crate::trace::{Period, Trace};

const MIN_PROGRESS_BITS: f64 = 12_000.0;
const MIN_PROGRESS_MS: f64 = 50.0;

/// sabre's network model over a looping trace.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    periods: Vec<Period>,
    index: usize,
    time_to_next: f64,
    /// Simulated time since the start, ms.
    pub now_ms: f64,
}

impl Network {
    pub(crate) fn new(trace: &Trace) -> Network {
        let periods = trace.periods.clone();
        let time_to_next = periods[0].duration_ms;
        Network {
            periods,
            index: 0,
            time_to_next,
            now_ms: 0.0,
        }
    }

    fn cur(&self) -> Period {
        self.periods[self.index]
    }

    fn next_period(&mut self) {
        self.index = (self.index + 1) % self.periods.len();
        self.time_to_next = self.periods[self.index].duration_ms;
    }

    fn advance(&mut self, t: f64) {
        self.time_to_next -= t;
        self.now_ms += t;
    }

    /// Waits `units` latencies; returns the time it took.
    fn latency_delay(&mut self, mut units: f64) -> f64 {
        let mut total = 0.0;
        while units > 0.0 {
            let lat = self.cur().latency_ms;
            let t = units * lat;
            if t <= self.time_to_next {
                total += t;
                self.advance(t);
                units = 0.0;
            } else {
                total += self.time_to_next;
                units -= self.time_to_next / lat;
                self.now_ms += self.time_to_next;
                self.next_period();
            }
        }
        total
    }

    /// Transfers `size` bits; returns the time it took.
    fn transfer(&mut self, mut size: f64) -> f64 {
        let mut total = 0.0;
        while size > 0.0 {
            let bw = self.cur().bandwidth_kbps;
            if size <= self.time_to_next * bw {
                let t = size / bw;
                total += t;
                self.advance(t);
                size = 0.0;
            } else {
                total += self.time_to_next;
                size -= self.time_to_next * bw;
                self.now_ms += self.time_to_next;
                self.next_period();
            }
        }
        total
    }

    /// Transfers at least `min_size` bits or for at least `min_time` ms (whichever is more),
    /// at most `size`; returns (bits, ms).
    fn transfer_some(&mut self, mut size: f64, mut min_size: f64, mut min_time: f64) -> (f64, f64) {
        let (mut total_size, mut total_time) = (0.0, 0.0);
        while size > 0.0 && (min_size > 0.0 || min_time > 0.0) {
            let bw = self.cur().bandwidth_kbps;
            let (bits, time);
            if bw > 0.0 {
                let min_bits = min_size.max(min_time * bw);
                let bits_to_next = self.time_to_next * bw;
                if size <= min_bits && size <= bits_to_next {
                    bits = size;
                    time = bits / bw;
                    self.advance(time);
                } else if min_bits <= bits_to_next {
                    bits = min_bits;
                    time = bits / bw;
                    // Rounding must not keep the loop going.
                    min_size = 0.0;
                    min_time = 0.0;
                    self.advance(time);
                } else {
                    bits = bits_to_next;
                    time = self.time_to_next;
                    self.now_ms += time;
                    self.next_period();
                }
            } else {
                bits = 0.0;
                if min_size > 0.0 || min_time > self.time_to_next {
                    time = self.time_to_next;
                    self.now_ms += time;
                    self.next_period();
                } else {
                    time = min_time;
                    self.advance(time);
                }
            }
            total_size += bits;
            total_time += time;
            size -= bits;
            min_size -= bits;
            min_time -= time;
        }
        (total_size, total_time)
    }

    /// Lets `t` ms pass with no transfer.
    pub(crate) fn delay(&mut self, mut t: f64) {
        while t > self.time_to_next {
            t -= self.time_to_next;
            self.now_ms += self.time_to_next;
            self.next_period();
        }
        self.advance(t);
    }
}

/// Downloads one segment for `session` over `net`.
fn download(
    session: &mut Session,
    net: &mut Network,
    segment: usize,
    quality: usize,
    abandonable: bool,
) -> Fetched {
    let size = session.content().size_bits(segment, quality);
    if size <= 0.0 {
        return Fetched {
            size_bits: 0.0,
            downloaded_bits: 0.0,
            time_ms: 0.0,
            ttfb_ms: 0.0,
            abandoned_to: None,
        };
    }
    if !abandonable {
        let lat = net.latency_delay(1.0);
        let time = lat + net.transfer(size);
        return Fetched {
            size_bits: size,
            downloaded_bits: size,
            time_ms: time,
            ttfb_ms: lat,
            abandoned_to: None,
        };
    }
    let lat = net.latency_delay(1.0);
    let mut time = lat;
    let mut got = 0.0;
    let mut min_time = MIN_PROGRESS_MS - time;
    let mut min_size = MIN_PROGRESS_BITS;
    let mut abandoned_to = None;
    while got < size && abandoned_to.is_none() {
        let (bits, t) = net.transfer_some(size - got, min_size, min_time);
        time += t;
        got += bits;
        if got < size {
            abandoned_to = session.check_abandon(&Progress {
                segment,
                quality,
                size_bits: size,
                downloaded_bits: got,
                time_ms: time,
                ttfb_ms: lat,
            });
            min_time = MIN_PROGRESS_MS;
            min_size = MIN_PROGRESS_BITS;
        }
    }
    Fetched {
        size_bits: size,
        downloaded_bits: got,
        time_ms: time,
        ttfb_ms: lat,
        abandoned_to,
    }
}

/// A simulated session's result.
#[derive(Debug, Clone, Serialize)]
pub struct SimResult {
    pub summary: Summary,
    #[serde(skip)]
    pub records: Vec<SegmentRecord>,
}

/// Runs one session of `abr` over `content` and `trace`.
pub fn simulate(content: &Content, trace: &Trace, abr: AbrKind, cfg: &SessionConfig) -> SimResult {
    let mut session = Session::new(content.clone(), abr, cfg.clone());
    let mut net = Network::new(trace);
    let mut records = Vec::new();
    loop {
        match session.next_step() {
            Step::Fetch {
                segment,
                quality,
                abandonable,
            } => {
                let f = download(&mut session, &mut net, segment, quality, abandonable);
                records.push(session.fetched(f));
            }
            Step::Wait { ms, reason } => {
                net.delay(ms);
                session.waited(ms, reason);
            }
            Step::Done => break,
        }
    }
    SimResult {
        summary: session.finish(),
        records,
    }
}

/// One row of a batch table: an algorithm's means over every trace.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BatchRow {
    pub abr: String,
    pub traces: usize,
    pub avg_bitrate_kbps: f64,
    pub rebuffer_ratio: f64,
    pub rebuffer_s: f64,
    pub switches: f64,
    pub qoe_lin: f64,
    pub qoe_lin_per_segment: f64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    #[error("cannot list traces in {dir}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no trace files (*.json, *.txt, *.log) in {0}")]
    Empty(PathBuf),
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
}

/// Every trace file in `dir`, sorted.
pub(crate) fn trace_files(dir: &Path) -> Result<Vec<PathBuf>, BatchError> {
    let rd = std::fs::read_dir(dir).map_err(|source| BatchError::Dir {
        dir: dir.into(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "txt" | "log")
            )
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(BatchError::Empty(dir.into()));
    }
    Ok(files)
}

/// Runs every variant over every trace in `dir`; one row per variant.
pub(crate) fn batch(
    content: &Content,
    dir: &Path,
    variants: &[Variant],
    cfg: &SessionConfig,
) -> Result<Vec<BatchRow>, BatchError> {
    let traces = trace_files(dir)?
        .iter()
        .map(|p| Trace::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(run_all(content, &traces, variants, cfg)
        .iter()
        .zip(variants)
        .map(|(sums, v)| row(v.name(), sums))
        .collect())
}

/// An algorithm in one of sabre's two modes (`ao`: its `-ao`, oscillation-minimising).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub abr: AbrKind,
    pub ao: bool,
}

impl Variant {
    pub fn name(self) -> String {
        if self.ao {
            format!("{}-ao", self.abr)
        } else {
            self.abr.name().to_string()
        }
    }

    /// sabre's algorithms in both modes (`-ao` only where it changes something).
    pub fn sabre() -> Vec<Variant> {
        let mut v: Vec<Variant> = AbrKind::SABRE
            .iter()
            .map(|&abr| Variant { abr, ao: false })
            .collect();
        v.extend(
            AbrKind::SABRE
                .iter()
                .filter(|a| a.has_ao())
                .map(|&abr| Variant { abr, ao: true }),
        );
        v
    }
}

/// Every variant over every trace: `result[variant][trace]`.
pub fn run_all(
    content: &Content,
    traces: &[Trace],
    variants: &[Variant],
    cfg: &SessionConfig,
) -> Vec<Vec<Summary>> {
    variants
        .iter()
        .map(|v| {
            let cfg = SessionConfig {
                ao: v.ao,
                ..cfg.clone()
            };
            traces
                .iter()
                .map(|t| simulate(content, t, v.abr, &cfg).summary)
                .collect()
        })
        .collect()
}

/// The means of one variant's sessions as a table row.
pub(crate) fn row(name: String, sums: &[Summary]) -> BatchRow {
    let n = sums.len().max(1) as f64;
    let mean = |f: fn(&Summary) -> f64| sums.iter().map(f).sum::<f64>() / n;
    BatchRow {
        abr: name,
        traces: sums.len(),
        avg_bitrate_kbps: mean(|s| s.avg_bitrate_kbps),
        rebuffer_ratio: mean(|s| s.rebuffer_ratio),
        rebuffer_s: mean(|s| s.rebuffer_s),
        switches: mean(|s| s.switches as f64),
        qoe_lin: mean(|s| s.qoe_lin),
        qoe_lin_per_segment: mean(|s| s.qoe_lin_per_segment),
    }
}

/// The verdict, as one line: `default` (name, mean QoE, mean rebuffer s) against
/// the best of sabre's algorithms in either mode among `rows` (the same triples), if any.
/// The lab's table and the batch table both end a block with it.
pub(crate) fn sabre_verdict(
    default: (&str, f64, f64),
    rows: &[(&str, f64, f64)],
) -> Option<String> {
    let names: Vec<String> = Variant::sabre().into_iter().map(Variant::name).collect();
    let sabre: Vec<&(&str, f64, f64)> = rows
        .iter()
        .filter(|r| names.iter().any(|n| n == r.0))
        .collect();
    let best = sabre.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let least = sabre.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    Some(format!(
        "{} vs best of sabre ({}): QoE {:+.1}%, rebuffer {:.2} s vs {:.2} s (least of sabre's {:.2} s)\n",
        default.0,
        best.0,
        (default.1 - best.1) / best.1.abs().max(1e-9) * 100.0,
        default.2,
        best.2,
        least
    ))
}

/// The batch table as a paper would print it, and [`sabre_verdict`] under it when the rows
/// hold the default algorithm and sabre's.
pub(crate) fn batch_table(rows: &[BatchRow]) -> String {
    let mut s = format!(
        "{:<12} {:>6} {:>12} {:>10} {:>10} {:>9} {:>10} {:>9}\n",
        "abr", "traces", "bitrate kb/s", "rebuf %", "rebuf s", "switches", "QoE lin", "QoE/seg"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:>6} {:>12.1} {:>10.3} {:>10.2} {:>9.1} {:>10.2} {:>9.3}\n",
            r.abr,
            r.traces,
            r.avg_bitrate_kbps,
            r.rebuffer_ratio * 100.0,
            r.rebuffer_s,
            r.switches,
            r.qoe_lin,
            r.qoe_lin_per_segment
        ));
    }
    let triples: Vec<(&str, f64, f64)> = rows
        .iter()
        .map(|r| (r.abr.as_str(), r.qoe_lin, r.rebuffer_s))
        .collect();
    if let Some(v) = triples
        .iter()
        .find(|r| r.0 == AbrKind::DEFAULT.name())
        .and_then(|&d| sabre_verdict(d, &triples))
    {
        s.push_str(&v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> (Content, Trace) {
        let movie =
            Content::from_sabre_json(include_str!("../tests/data/example-movie.json"), "movie")
                .unwrap();
        let net = Trace::parse(include_str!("../tests/data/example-network.json"), "net").unwrap();
        (movie, net)
    }

    fn played_in(abr: AbrKind, ao: bool) -> Summary {
        let (m, n) = example();
        let cfg = SessionConfig {
            ao,
            ..SessionConfig::default()
        };
        simulate(&m, &n, abr, &cfg).summary
    }

    /// sabre's figures on its own example (time-average played bitrate, kbit/s).
    fn assert_sabre(abr: AbrKind, expected: f64) {
        assert_sabre_in(abr, false, expected)
    }

    fn assert_sabre_in(abr: AbrKind, ao: bool, expected: f64) {
        let s = played_in(abr, ao);
        assert!(
            (s.time_avg_bitrate_kbps - expected).abs() < 0.05,
            "{abr}: time-average played bitrate {:.3}, sabre says {expected}",
            s.time_avg_bitrate_kbps
        );
        assert_eq!(s.rebuffer_count, 0, "{abr} rebuffered: {s:?}");
        assert_eq!(s.rebuffer_s, 0.0, "{abr} rebuffered: {s:?}");
    }

    /// The same example in `-ao` mode. These are our port's figures (sabre's `-ao` code path
    /// is six lines, ported as written); `bench/abr.sh` runs sabre itself and compares.
    #[test]
    fn sabre_fidelity_ao() {
        assert_sabre_in(AbrKind::Bola, true, 2250.3);
        assert_sabre_in(AbrKind::Bolae, true, 2373.9);
        assert_sabre_in(AbrKind::Dynamic, true, 2257.5);
        // -ao does not change the throughput rule.
        assert_sabre_in(AbrKind::Throughput, true, 1963.8);
    }

    #[test]
    fn sabre_fidelity_bolae() {
        assert_sabre(AbrKind::Bolae, 2911.9);
    }

    #[test]
    fn sabre_fidelity_throughput() {
        assert_sabre(AbrKind::Throughput, 1963.8);
    }

    #[test]
    fn sabre_fidelity_dynamic() {
        assert_sabre(AbrKind::Dynamic, 2905.4);
    }

    #[test]
    fn sabre_fidelity_bola() {
        assert_sabre(AbrKind::Bola, 2876.6);
    }

    #[test]
    fn every_algorithm_plays_every_segment() {
        let (m, n) = example();
        for abr in AbrKind::ALL {
            let s = simulate(&m, &n, abr, &SessionConfig::default()).summary;
            assert_eq!(s.segments as usize, m.segments(), "{abr}");
            assert!((s.media_s * 1000.0 - m.total_ms()).abs() < 1e-6, "{abr}");
            // Wall time = startup + media + stalls.
            assert!(
                (s.session_s - (s.startup_s + s.media_s + s.rebuffer_s)).abs() < 1e-6,
                "{abr}: {s:?}"
            );
        }
    }

    #[test]
    fn a_starved_link_rebuffers() {
        let (m, _) = example();
        // 200 kbit/s cannot carry even the 230 kbit/s rung.
        let slow = Trace::constant(200.0, 50.0);
        for abr in AbrKind::ALL {
            let s = simulate(&m, &slow, abr, &SessionConfig::default()).summary;
            assert!(s.rebuffer_s > 0.0 && s.rebuffer_count > 0, "{abr}: {s:?}");
            assert!(s.qoe_lin < 0.0, "{abr}: {s:?}");
        }
    }

    #[test]
    fn a_batch_runs_sabre_in_both_modes_and_ends_with_the_verdict() {
        let (movie, _) = example();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            include_str!("../tests/data/example-network.json"),
        )
        .unwrap();
        let mut variants = vec![Variant {
            abr: AbrKind::Robust,
            ao: false,
        }];
        variants.extend(Variant::sabre());
        let rows = batch(&movie, dir.path(), &variants, &SessionConfig::default()).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.abr.as_str()).collect();
        assert_eq!(
            names,
            [
                "robust",
                "bola",
                "bolae",
                "throughput",
                "dynamic",
                "bola-ao",
                "bolae-ao",
                "dynamic-ao"
            ]
        );
        // Each row is its variant's session: bola-ao plays sabre's -ao figure.
        let bola_ao = &rows[5];
        assert!(
            (bola_ao.avg_bitrate_kbps - played_in(AbrKind::Bola, true).avg_bitrate_kbps).abs()
                < 1e-9
        );
        let best = rows[1..]
            .iter()
            .max_by(|a, b| a.qoe_lin.total_cmp(&b.qoe_lin))
            .unwrap();
        let table = batch_table(&rows);
        let last = table.lines().last().unwrap();
        assert!(
            last.starts_with("robust vs best of sabre")
                && last.contains(&format!("({})", best.abr)),
            "{table}"
        );
        // Without robust or without sabre's algorithms there is nothing to compare.
        assert!(!batch_table(&rows[1..]).contains("vs best of sabre"));
        assert!(!batch_table(&rows[..1]).contains("vs best of sabre"));
    }
}
