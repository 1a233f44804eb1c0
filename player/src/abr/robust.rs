//! `robust`, the default (experimental rewrite in progress).

use std::collections::VecDeque;

use super::mpc::{abandon_near_stall, REBUF_PENALTY, SMOOTH_PENALTY};
use super::{Abr, Choice, Ctx, Downloaded, Progress};

/// The tuned knobs (tuned on the training set only; see `docs/player-abr.md`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RobustConfig {
    /// Plan length, segments.
    pub horizon: usize,
    /// Recent downloads kept as throughput scenarios.
    pub window: usize,
    /// Half-life of a scenario's weight, in downloads.
    pub half_life: f64,
    /// Buffer the plan should keep at its end, ms.
    pub reserve_ms: f64,
    /// QoE penalty per second below the reserve at the end of the plan.
    pub reserve_penalty: f64,
    /// Abandon when the buffer is at most this many segments and a stall is coming.
    pub abandon_reserve_segments: f64,
    /// Weight of the worst-case tail (CVaR) in the objective, 0 = expected QoE.
    pub tail_weight: f64,
    /// The tail's share of the scenario weight.
    pub tail: f64,
    /// Abandoned downloads count as samples.
    pub abandoned_samples: bool,
    /// Also cap scenarios by the session's EWMA (1) or not (0).
    pub cap_ewma: bool,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig {
            horizon: 5,
            window: 20,
            half_life: 8.0,
            reserve_ms: 15_000.0,
            reserve_penalty: 1.0,
            abandon_reserve_segments: 2.0,
            tail_weight: 0.0,
            tail: 0.2,
            abandoned_samples: true,
            cap_ewma: false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Robust {
    cfg: RobustConfig,
    samples: VecDeque<f64>,
    last: usize,
    /// After an abandonment: the next segment no higher than this.
    cap: Option<usize>,
    scen: Vec<(f64, f64)>,
}

impl Robust {
    pub(crate) fn new(cfg: RobustConfig) -> Robust {
        Robust {
            cfg,
            samples: VecDeque::new(),
            last: 0,
            cap: None,
            scen: Vec::new(),
        }
    }

    /// Best QoE of "`q1` now, then the best constant `q2`" over `steps` segments from
    /// `start` at `tput` kbit/s.
    fn score(&self, ctx: &Ctx, start: usize, steps: usize, tput: f64, q1: usize) -> f64 {
        let c = ctx.content;
        let lat = ctx.latency_ms.unwrap_or(0.0);
        let last = ctx.last_quality.unwrap_or(self.last);
        let rate = |q: usize| c.bitrates_kbps[q] / 1000.0;
        let reserve = self.cfg.reserve_ms.min(ctx.max_buffer_ms);
        // Step one.
        let dur = c.duration_ms(start);
        let mut buffer = ctx.buffer_ms.min((ctx.max_buffer_ms - dur).max(0.0));
        let dl = lat + c.size_bits(start, q1) / tput;
        let rebuf = (dl - buffer).max(0.0);
        buffer = (buffer - dl).max(0.0) + dur;
        let first = rate(q1) - SMOOTH_PENALTY * (rate(q1) - rate(last)).abs()
            - REBUF_PENALTY * rebuf / 1000.0;
        if steps == 1 {
            return first - self.cfg.reserve_penalty * (reserve - buffer).max(0.0) / 1000.0;
        }
        let mut best = f64::NEG_INFINITY;
        for q2 in 0..c.qualities() {
            let mut b = buffer;
            let mut total = first - SMOOTH_PENALTY * (rate(q2) - rate(q1)).abs();
            for step in 1..steps {
                let seg = start + step;
                let dur = c.duration_ms(seg);
                b = b.min((ctx.max_buffer_ms - dur).max(0.0));
                let dl = lat + c.size_bits(seg, q2) / tput;
                let rebuf = (dl - b).max(0.0);
                b = (b - dl).max(0.0) + dur;
                total += rate(q2) - REBUF_PENALTY * rebuf / 1000.0;
            }
            total -= self.cfg.reserve_penalty * (reserve - b).max(0.0) / 1000.0;
            if total > best {
                best = total;
            }
        }
        best
    }

    fn scenarios(&mut self, ctx: &Ctx) -> bool {
        self.scen.clear();
        let cap = if self.cfg.cap_ewma {
            ctx.throughput_kbps
        } else {
            None
        };
        if self.samples.is_empty() {
            let Some(t) = ctx.throughput_kbps else {
                return false;
            };
            self.scen.push((t, 1.0));
            return true;
        }
        let decay = 0.5f64.powf(1.0 / self.cfg.half_life.max(1e-9));
        let mut w = 1.0;
        for &s in self.samples.iter().rev() {
            let s = cap.map_or(s, |c| s.min(c));
            self.scen.push((s.max(1e-3), w));
            w *= decay;
        }
        let total: f64 = self.scen.iter().map(|s| s.1).sum();
        for s in &mut self.scen {
            s.1 /= total;
        }
        true
    }
}

impl Abr for Robust {
    fn choose(&mut self, ctx: &Ctx, segment: usize) -> Choice {
        if !self.scenarios(ctx) {
            return Choice::now(0);
        }
        let c = ctx.content;
        let steps = self
            .cfg
            .horizon
            .min(c.segments().saturating_sub(segment))
            .max(1);
        let n = c.qualities();
        // Scenarios sorted worst first, for the tail.
        let mut scen = std::mem::take(&mut self.scen);
        scen.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = (f64::NEG_INFINITY, 0);
        let mut vals = Vec::with_capacity(scen.len());
        for q1 in 0..n {
            vals.clear();
            let mut mean = 0.0;
            for &(t, w) in &scen {
                let v = self.score(ctx, segment, steps, t, q1);
                mean += w * v;
                vals.push(v);
            }
            let mut objective = mean;
            if self.cfg.tail_weight > 0.0 {
                let mut acc = 0.0;
                let mut tail = 0.0;
                for (&(_, w), &v) in scen.iter().zip(&vals) {
                    let take = w.min(self.cfg.tail - acc);
                    if take <= 0.0 {
                        break;
                    }
                    tail += take * v;
                    acc += take;
                }
                let cvar = if acc > 0.0 { tail / acc } else { mean };
                objective = (1.0 - self.cfg.tail_weight) * mean + self.cfg.tail_weight * cvar;
            }
            if objective > best.0 {
                best = (objective, q1);
            }
        }
        self.scen = scen;
        let mut q = best.1;
        if let Some(cap) = self.cap.take() {
            q = q.min(cap);
        }
        self.last = q;
        Choice::now(q)
    }

    fn report_download(&mut self, _ctx: &Ctx, d: &Downloaded) {
        if let Some(to) = d.abandoned_to {
            self.cap = Some(to);
            if !self.cfg.abandoned_samples {
                return;
            }
        } else {
            self.last = d.quality;
        }
        let dl = d.time_ms - d.ttfb_ms;
        if dl <= 0.0 || d.downloaded_bits <= 0.0 {
            return;
        }
        self.samples.push_back(d.downloaded_bits / dl);
        if self.samples.len() > self.cfg.window.max(1) {
            self.samples.pop_front();
        }
    }

    fn check_abandon(&mut self, ctx: &Ctx, p: &Progress, buffer_ms: f64) -> Option<usize> {
        abandon_near_stall(ctx, p, buffer_ms, self.cfg.abandon_reserve_segments)
    }
}
