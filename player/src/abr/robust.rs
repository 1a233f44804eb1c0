//! `robust`, the default: a model-predictive controller that plans against the session's
//! own recent throughput, sample by sample, rather than against one predicted figure.
//! Tuned on training traces of three network families and evaluated on held-out ones
//! (`docs/player-abr.md`).
//!
//! - **Scenarios, not a point forecast.** The last ten downloads' throughputs are ten
//!   equally likely futures. A steady link gives ten close scenarios and the plan uses it
//!   nearly in full; a link that has just faded or dropped out carries those samples for
//!   the next ten downloads (30 s of media), so the plan stays careful for as long as the
//!   session has recent evidence of trouble, without a tuned error discount. The spread is
//!   calibrated per session, online: it is the session's own error, not a prior about
//!   a network family.
//! - **Planning.** For each quality `q1` of the next segment and each scenario, the best
//!   continuation "`q1` now, then a constant `q2`" over eight segments (24 s) is scored by
//!   the linear QoE (bitrate − |Δ bitrate| − stall cost) on a simulated buffer with the real
//!   segment sizes, minus a penalty per second the plan ends below a 15 s buffer reserve.
//!   The choice maximises the mean over scenarios: the expected QoE, with the later
//!   decisions free to react (the recourse of `q2`).
//! - **Stall cost scaled to the ladder.** The QoE's μ = 4.3 per second of stalling is the
//!   top rung of the ladder it was chosen for (Pensieve's, 4.3 Mbit/s): a second of stall
//!   costs about a second of the best video. Planning keeps that meaning on any ladder:
//!   a stalled second costs max(μ, top rung in Mbit/s), so a 35 Mbit/s ladder does not
//!   buy 16 Mbit/s segments with stalls, and the reserve penalty (2 per second short on
//!   a ladder up to 4.3 Mbit/s) scales with it. On ladders up to 4.3 Mbit/s this is the
//!   QoE itself.
//! - **Fade guard.** A download slower than the lowest rung is a fade that stalls any
//!   quality: only the buffer rides it out. For the next 40 downloads after one, a quality
//!   above the lowest is chosen only if, at the 70th percentile of the scenarios, the buffer
//!   after it stays at 20 s (or full less a segment, if less): the session upgrades with
//!   what a full buffer leaves spare and does not spend its buffer on bitrate before the
//!   next fade. Without it the plan drains the buffer to its 15 s reserve between fades
//!   ("this quality now, a lower one later"), and the next fade stalls for the difference.
//! - **Remembered fades are scenarios.** Each fade in those 40 downloads (a run of
//!   downloads below the lowest rung) is also planned against: its rate for as long as it
//!   lasted, then the median recent rate, weighing twice a recent download for each of its
//!   downloads. An upgrade is priced by what it would cost if the next fade came now.
//! - **Re-planned abandonment.** While the guard is on, an upgraded download is planned
//!   again at each progress report, as the first step of the plan, against the rate it is
//!   going at for as long as the remembered fades lasted: when a lower quality now scores
//!   better than finishing, it is abandoned for that quality. An upgrade that meets a fade
//!   is given up at once instead of draining the buffer the guard kept.
//! - **Otherwise, abandonment** only to avoid a stall that is near (≤ 2 segments
//!   buffered), and the segment after an abandonment is no higher than the quality
//!   abandoned to. An abandoned download's rate is a scenario: it measured a real collapse.
//!
//! Cost: qualities × scenarios × qualities × horizon = 10 × (10 + remembered fades) × 10 × 8
//! steps a decision on the ten-rung ladder, about 20 decisions a session-minute, plus a
//! re-plan per progress report of an upgraded download while the guard is on: about a
//! millisecond of CPU per session-minute (`dashcdn player lab` prints it).

use std::collections::VecDeque;

use super::mpc::{abandon_near_stall, REBUF_PENALTY, SMOOTH_PENALTY};
use super::throughput::ABANDON_GRACE_MS;
use super::{Abr, Choice, Ctx, Downloaded, Progress};
use crate::content::Content;

/// The tuned knobs (tuned on the training set only; see `docs/player-abr.md`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RobustConfig {
    /// Plan length, segments.
    pub horizon: usize,
    /// Recent downloads kept as throughput scenarios.
    pub window: usize,
    /// Weight of a second of rebuffering in planning, in units of max(μ, top rung Mbit/s).
    pub stall_weight: f64,
    /// Buffer the plan should keep at its end, ms.
    pub reserve_ms: f64,
    /// Penalty per second below the reserve at the end of the plan, in units of
    /// max(1, top rung Mbit/s / μ) QoE.
    pub reserve_penalty: f64,
    /// Abandon when the buffer is at most this many segments and a stall is coming.
    pub abandon_reserve_segments: f64,
    /// Downloads remembered as evidence of a network that falls below the lowest rung.
    pub memory: usize,
    /// While the memory holds a download slower than the lowest rung: a quality above the
    /// lowest only if the buffer after it, at the `guard_quantile` of the scenarios, is at
    /// least this, ms (capped at a full buffer less one segment).
    pub guard_ms: f64,
    /// The scenario quantile (0 = slowest, 1 = fastest) the guard plans with.
    pub guard_quantile: f64,
    /// Each remembered download slower than the lowest rung is also a scenario (its fade's
    /// rate for the fade's length, then the median), with this weight relative to a recent
    /// download's.
    pub fade_weight: f64,
    /// While the guard is on, plan again during an upgraded download, with it as the first
    /// step, and abandon it when a lower quality now scores better.
    pub guard_abandon: bool,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig {
            horizon: 8,
            window: 10,
            stall_weight: 1.0,
            reserve_ms: 15_000.0,
            reserve_penalty: 2.0,
            abandon_reserve_segments: 2.0,
            memory: 40,
            guard_ms: 20_000.0,
            guard_quantile: 0.7,
            fade_weight: 2.0,
            guard_abandon: true,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Robust {
    cfg: RobustConfig,
    /// Recent download throughputs, kbit/s: the scenarios.
    samples: VecDeque<f64>,
    /// A longer memory of downloads: (throughput kbit/s, download time ms).
    memory: VecDeque<(f64, f64)>,
    last: usize,
    /// After an abandonment: the next segment no higher than this.
    cap: Option<usize>,
    /// The fades in memory as of the last decision (see [`Robust::find_fades`]); the guard
    /// is on while there is one. Memory changes only when a download ends, so the download
    /// in flight is judged against these.
    fades: Vec<(Link, usize)>,
}

impl Robust {
    pub(crate) fn new(cfg: RobustConfig) -> Robust {
        Robust {
            cfg,
            samples: VecDeque::new(),
            memory: VecDeque::new(),
            last: 0,
            cap: None,
            fades: Vec::new(),
        }
    }

    /// Best QoE of "`q1` now, then the best constant `q2`" over `steps` segments from
    /// `start`, if the network behaves as `link`. With `left`, the first segment is a
    /// download in flight (at `q1`) with this many bits still to come.
    fn score(
        &self,
        ctx: &Ctx,
        start: usize,
        steps: usize,
        link: Link,
        q1: usize,
        left: Option<f64>,
    ) -> f64 {
        let c = ctx.content;
        let lat = ctx.latency_ms.unwrap_or(0.0);
        // The quality played last (not one abandoned midway) is what a switch is from.
        let last = ctx.last_quality.unwrap_or(self.last);
        let rate = |q: usize| c.bitrates_kbps[q] / 1000.0;
        // A second of stalling costs at least a second of the top rung (see the module docs).
        let scale = (rate(c.top()) / REBUF_PENALTY).max(1.0);
        let stall = scale * self.cfg.stall_weight * REBUF_PENALTY / 1000.0;
        let reserve = self.cfg.reserve_ms.min(ctx.max_buffer_ms);
        let short = |b: f64| scale * self.cfg.reserve_penalty * (reserve - b).max(0.0) / 1000.0;
        // One segment at quality q from buffer b at plan time `at`: (buffer after, rebuffer
        // ms, plan time after).
        let step = |b: f64, at: f64, seg: usize, q: usize| {
            let dur = c.duration_ms(seg);
            // A full buffer waits before the request: it cannot hold more.
            let room = (ctx.max_buffer_ms - dur).max(0.0);
            let at = at + (b - room).max(0.0);
            let b = b.min(room);
            let dl = lat + link.transfer_ms(at + lat, c.size_bits(seg, q));
            ((b - dl).max(0.0) + dur, (dl - b).max(0.0), at + dl)
        };
        let (buffer, rebuf, at) = match left {
            Some(bits) => {
                let dl = link.transfer_ms(0.0, bits);
                let b = ctx.buffer_ms;
                (
                    (b - dl).max(0.0) + c.duration_ms(start),
                    (dl - b).max(0.0),
                    dl,
                )
            }
            None => step(ctx.buffer_ms, 0.0, start, q1),
        };
        let first = rate(q1) - SMOOTH_PENALTY * (rate(q1) - rate(last)).abs() - stall * rebuf;
        if steps == 1 {
            return first - short(buffer);
        }
        let mut best = f64::NEG_INFINITY;
        for q2 in 0..c.qualities() {
            let (mut b, mut now) = (buffer, at);
            let mut total = first - SMOOTH_PENALTY * (rate(q2) - rate(q1)).abs();
            for seg in start + 1..start + steps {
                let (after, rebuf, t) = step(b, now, seg, q2);
                (b, now) = (after, t);
                total += rate(q2) - stall * rebuf;
            }
            best = best.max(total - short(b));
        }
        best
    }
}

impl Robust {
    /// The median of the recent downloads' throughputs, kbit/s.
    fn median(&self) -> f64 {
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted
            .get(sorted.len() / 2)
            .copied()
            .unwrap_or(0.0)
            .max(1e-3)
    }

    /// Segments a plan from `segment` looks ahead.
    fn steps(&self, c: &Content, segment: usize) -> usize {
        self.cfg
            .horizon
            .min(c.segments().saturating_sub(segment))
            .max(1)
    }

    /// The fades in memory (runs of downloads slower than the lowest rung), each as a link
    /// that gives the run's rate for the run's length and then the median recent rate, with
    /// the number of downloads in the run (its weight: a long fade is as likely to recur as
    /// its share of the memory).
    fn find_fades(&self, lowest: f64) -> Vec<(Link, usize)> {
        let after = self.median();
        let mut out = Vec::new();
        let mut run = (0.0, 0.0, 0);
        for &(t, ms) in self
            .memory
            .iter()
            .chain(std::iter::once(&(f64::INFINITY, 0.0)))
        {
            if t < lowest {
                run = (run.0 + t * ms, run.1 + ms, run.2 + 1);
            } else if run.2 > 0 {
                let link = Link {
                    kbps: (run.0 / run.1.max(1e-3)).max(1e-3),
                    until_ms: run.1,
                    after_kbps: after,
                };
                out.push((link, run.2));
                run = (0.0, 0.0, 0);
            }
        }
        out
    }
}

/// A planning scenario: `kbps` for the first `until_ms` of the plan, then `after_kbps`.
#[derive(Debug, Clone, Copy)]
struct Link {
    kbps: f64,
    until_ms: f64,
    after_kbps: f64,
}

impl Link {
    fn steady(kbps: f64) -> Link {
        let kbps = kbps.max(1e-3);
        Link {
            kbps,
            until_ms: 0.0,
            after_kbps: kbps,
        }
    }

    /// Time to receive `bits` starting at plan time `at`, ms.
    fn transfer_ms(&self, at: f64, bits: f64) -> f64 {
        let slow = (self.until_ms - at).max(0.0);
        if bits <= self.kbps * slow {
            bits / self.kbps
        } else {
            slow + (bits - self.kbps * slow) / self.after_kbps
        }
    }
}

impl Abr for Robust {
    fn choose(&mut self, ctx: &Ctx, segment: usize) -> Choice {
        // Before the first report, the session's estimate (from the first segment).
        if self.samples.is_empty() {
            let Some(t) = ctx.throughput_kbps else {
                return Choice::now(0);
            };
            self.samples.push_back(t);
        }
        self.samples.make_contiguous();
        let scenarios = self.samples.as_slices().0;
        let c = ctx.content;
        let steps = self.steps(c, segment);
        // The guard: after a download slower than the lowest rung (a fade that stalls any
        // quality), rise above the lowest only while the buffer stays nearly full.
        self.fades = self.find_fades(c.bitrates_kbps[0]);
        let guard = (!self.fades.is_empty() && self.cfg.guard_ms > 0.0).then(|| {
            let mut sorted = scenarios.to_vec();
            sorted.sort_by(f64::total_cmp);
            let i = (self.cfg.guard_quantile.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round();
            sorted[i as usize].max(1e-3)
        });
        let lat = ctx.latency_ms.unwrap_or(0.0);
        let mut best = (f64::NEG_INFINITY, 0);
        for q1 in 0..c.qualities() {
            if let (Some(t), true) = (guard, q1 > 0) {
                let dur = c.duration_ms(segment);
                let b = ctx.buffer_ms.min((ctx.max_buffer_ms - dur).max(0.0));
                let after = (b - lat - c.size_bits(segment, q1) / t).max(0.0) + dur;
                if after < self.cfg.guard_ms.min(ctx.max_buffer_ms - dur) {
                    continue;
                }
            }
            let mut total: f64 = scenarios
                .iter()
                .map(|&t| self.score(ctx, segment, steps, Link::steady(t), q1, None))
                .sum();
            if self.cfg.fade_weight > 0.0 {
                for &(fade, n) in &self.fades {
                    let w = self.cfg.fade_weight * n as f64;
                    total += w * self.score(ctx, segment, steps, fade, q1, None);
                }
            }
            if total > best.0 {
                best = (total, q1);
            }
        }
        let mut q = best.1;
        if let Some(cap) = self.cap.take() {
            q = q.min(cap);
        }
        self.last = q;
        Choice::now(q)
    }

    fn report_download(&mut self, _ctx: &Ctx, d: &Downloaded) {
        match d.abandoned_to {
            Some(to) => self.cap = Some(to),
            None => self.last = d.quality,
        }
        let dl = d.time_ms - d.ttfb_ms;
        if dl <= 0.0 || d.downloaded_bits <= 0.0 {
            return;
        }
        self.samples.push_back(d.downloaded_bits / dl);
        if self.samples.len() > self.cfg.window.max(1) {
            self.samples.pop_front();
        }
        self.memory.push_back((d.downloaded_bits / dl, dl));
        if self.memory.len() > self.cfg.memory {
            self.memory.pop_front();
        }
    }

    fn check_abandon(&mut self, ctx: &Ctx, p: &Progress, buffer_ms: f64) -> Option<usize> {
        let c = ctx.content;
        let dl = p.time_ms - p.ttfb_ms;
        let replan = self.cfg.guard_abandon
            && p.quality > 0
            && p.time_ms >= ABANDON_GRACE_MS
            && dl > 0.0
            && p.downloaded_bits > 0.0
            && !self.fades.is_empty();
        if !replan {
            return abandon_near_stall(ctx, p, buffer_ms, self.cfg.abandon_reserve_segments);
        }
        // While the guard is on, plan again with the download in flight as the first step:
        // the link gives the rate this download is going at for as long as the remembered
        // fades lasted, then the median recent rate. Abandon when a lower quality now
        // scores better than finishing; otherwise as any download (near a stall).
        let fades = &self.fades;
        let link = Link {
            kbps: (p.downloaded_bits / dl).max(1e-3),
            until_ms: fades.iter().map(|f| f.0.until_ms).sum::<f64>() / fades.len() as f64,
            // Every fade recovers to the median recent rate.
            after_kbps: fades[0].0.after_kbps,
        };
        let seg = p.segment;
        let steps = self.steps(c, seg);
        let ctx = Ctx { buffer_ms, ..*ctx };
        let finish = self.score(
            &ctx,
            seg,
            steps,
            link,
            p.quality,
            Some(p.size_bits - p.downloaded_bits),
        );
        let (best, q) = (0..p.quality)
            .map(|q| (self.score(&ctx, seg, steps, link, q, None), q))
            .max_by(|a, b| a.0.total_cmp(&b.0))?;
        if best > finish {
            return Some(q);
        }
        abandon_near_stall(&ctx, p, buffer_ms, self.cfg.abandon_reserve_segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    fn ctx(c: &Content, buffer_ms: f64) -> Ctx<'_> {
        Ctx {
            content: c,
            buffer_ms,
            max_buffer_ms: 25_000.0,
            throughput_kbps: Some(3_000.0),
            latency_ms: Some(100.0),
            last_quality: Some(0),
        }
    }

    fn report(r: &mut Robust, c: &Content, kbps: f64) {
        let bits = c.size_bits(0, 0);
        r.report_download(
            &ctx(c, 10_000.0),
            &Downloaded {
                quality: 0,
                downloaded_bits: bits,
                time_ms: 100.0 + bits / kbps,
                ttfb_ms: 100.0,
                abandoned_to: None,
            },
        );
    }

    #[test]
    fn after_a_fade_below_the_lowest_rung_it_upgrades_only_from_a_full_buffer() {
        // 1 and 2.5 Mbit/s, 3 s segments; the link gives 3 Mbit/s.
        let c = Content::uniform(vec![1_000.0, 2_500.0], 3_000.0, 100);
        let fresh = |fade: bool| {
            let mut r = Robust::new(RobustConfig::default());
            if fade {
                report(&mut r, &c, 300.0);
            }
            for _ in 0..RobustConfig::default().window {
                report(&mut r, &c, 3_000.0);
            }
            r
        };
        // No fade seen: 12 s of buffer is enough to take 2.5 Mbit/s at 3 Mbit/s.
        assert_eq!(fresh(false).choose(&ctx(&c, 12_000.0), 10).quality, 1);
        // A fade seen (and out of the ten scenarios): the same buffer stays at the lowest
        // rung, and a full one upgrades.
        assert_eq!(fresh(true).choose(&ctx(&c, 12_000.0), 10).quality, 0);
        assert_eq!(fresh(true).choose(&ctx(&c, 22_000.0), 10).quality, 1);
    }

    #[test]
    fn a_fade_is_remembered_as_a_scenario_with_its_rate_and_length() {
        let c = Content::uniform(vec![1_000.0, 2_500.0], 3_000.0, 100);
        let mut r = Robust::new(RobustConfig::default());
        for kbps in [3_000.0, 400.0, 200.0, 3_000.0, 3_000.0] {
            report(&mut r, &c, kbps);
        }
        let fades = r.find_fades(c.bitrates_kbps[0]);
        assert_eq!(fades.len(), 1, "{fades:?}");
        // Two lowest-rung segments (3 Mbit) at 400 and 200 kbit/s: 7.5 + 15 s, 266.7 kbit/s.
        let (f, n) = fades[0];
        assert_eq!(n, 2);
        assert!((f.until_ms - 22_500.0).abs() < 1.0, "{f:?}");
        assert!((f.kbps - 266.7).abs() < 0.1, "{f:?}");
        assert_eq!(f.after_kbps, 3_000.0);
        // The link gives the fade's rate until it ends, then the median.
        assert!((f.transfer_ms(0.0, 2_000_000.0) - 7_500.0).abs() < 1.0);
        assert!(
            (f.transfer_ms(22_000.0, 3_000_000.0) - (500.0 + 2_866_667.0 / 3_000.0)).abs() < 1.0
        );
    }

    #[test]
    fn after_a_fade_an_upgrade_that_meets_another_is_abandoned_early() {
        let c = Content::uniform(vec![1_000.0, 2_500.0], 3_000.0, 100);
        let progress = Progress {
            segment: 10,
            quality: 1,
            size_bits: c.size_bits(10, 1),
            // 2 s at 300 kbit/s: 6.9 of 7.5 Mbit left, 23 s more at this rate.
            downloaded_bits: 600_000.0,
            time_ms: 2_100.0,
            ttfb_ms: 100.0,
        };
        let run = |fade: bool| {
            let mut r = Robust::new(RobustConfig::default());
            if fade {
                // A 20 s fade: two lowest-rung segments at 300 kbit/s.
                report(&mut r, &c, 300.0);
                report(&mut r, &c, 300.0);
            }
            for _ in 0..RobustConfig::default().window {
                report(&mut r, &c, 6_000.0);
            }
            assert_eq!(r.choose(&ctx(&c, 22_000.0), 10).quality, 1);
            r.check_abandon(&ctx(&c, 20_000.0), &progress, 20_000.0)
        };
        // A network that has faded below the lowest rung for 20 s: if this fade lasts as
        // long, finishing leaves 3 s of buffer; the 3 Mbit lowest-rung segment instead (10 s
        // at this rate) leaves 13 s.
        assert_eq!(run(true), Some(0));
        // No fade seen: 20 s of buffer is far from a stall; the download goes on.
        assert_eq!(run(false), None);
    }
}
