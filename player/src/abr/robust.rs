//! `robust`, the default: a pruned model-predictive controller with an uncertainty-aware
//! throughput predictor and a buffer reserve, tuned on training traces of three network
//! families and evaluated on held-out ones (`docs/player-abr.md`).
//!
//! - **Prediction.** The harmonic mean of the last five downloads, never above sabre's
//!   conservative EWMA (the min of a fast and a slow half-life), divided by
//!   `1 + err_weight × e`, where `e` is the largest one-sided over-estimate of the last
//!   five predictions, max(0, predicted − actual) / predicted. A network that has just
//!   surprised us is trusted less; a steady one is used nearly in full.
//! - **Planning.** Over the next five segments, plans of the form "`q1` now, then `q2` for
//!   the rest" (qualities² plans, not qualities⁵: 100 on a ten-rung ladder), scored by the
//!   linear QoE itself (bitrate − |Δ bitrate| − 4.3 × rebuffer s) on a simulated buffer with
//!   the actual segment sizes, minus a penalty for ending the horizon below a buffer
//!   reserve: what keeps a deep fade or an outage that no predictor sees coming from
//!   becoming a stall.
//! - **Abandonment** only to avoid a stall that is near (RobustMPC's rule here), and the
//!   segment after an abandonment is no higher than the quality abandoned to.
//!
//! Cost: 100 plans × 5 steps per decision, about 20 decisions a minute: far below a
//! millisecond per session-minute.

use std::collections::VecDeque;

use super::mpc::{abandon_near_stall, REBUF_PENALTY, SMOOTH_PENALTY};
use super::{Abr, Choice, Ctx, Downloaded, Progress};

const PAST: usize = 5;

/// The tuned knobs (tuned on the training set only; see `docs/player-abr.md`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RobustConfig {
    /// Plan length, segments.
    pub horizon: usize,
    /// Weight of the recent over-estimate in the prediction's discount.
    pub err_weight: f64,
    /// Buffer the plan should keep at its end, ms.
    pub reserve_ms: f64,
    /// QoE penalty per second below the reserve at the end of the plan.
    pub reserve_penalty: f64,
    /// Abandon when the buffer is at most this many segments and a stall is coming.
    pub abandon_reserve_segments: f64,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig {
            horizon: 5,
            err_weight: 1.0,
            reserve_ms: 15_000.0,
            reserve_penalty: 3.0,
            abandon_reserve_segments: 2.0,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Robust {
    cfg: RobustConfig,
    samples: VecDeque<f64>,
    errors: VecDeque<f64>,
    last_prediction: Option<f64>,
    last: usize,
    /// After an abandonment: the next segment no higher than this.
    cap: Option<usize>,
}

impl Robust {
    pub(crate) fn new(cfg: RobustConfig) -> Robust {
        Robust {
            cfg,
            samples: VecDeque::new(),
            errors: VecDeque::new(),
            last_prediction: None,
            last: 0,
            cap: None,
        }
    }

    fn predict(&self, ewma: Option<f64>) -> Option<f64> {
        let hm = if self.samples.is_empty() {
            ewma?
        } else {
            self.samples.len() as f64 / self.samples.iter().map(|s| 1.0 / s).sum::<f64>()
        };
        let base = ewma.map_or(hm, |e| hm.min(e));
        let err = self.errors.iter().copied().fold(0.0, f64::max);
        Some(base / (1.0 + self.cfg.err_weight * err))
    }

    /// QoE of "`q1` now, then `q2`" over `steps` segments from `start`.
    fn score(&self, ctx: &Ctx, start: usize, steps: usize, tput: f64, q1: usize, q2: usize) -> f64 {
        let c = ctx.content;
        let lat = ctx.latency_ms.unwrap_or(0.0);
        let mut buffer = ctx.buffer_ms;
        // The quality played last (not one abandoned midway) is what a switch is from.
        let mut last = ctx.last_quality.unwrap_or(self.last);
        let mut total = 0.0;
        for step in 0..steps {
            let seg = start + step;
            let q = if step == 0 { q1 } else { q2 };
            let dur = c.duration_ms(seg);
            // A full buffer waits before the request: it cannot hold more.
            buffer = buffer.min((ctx.max_buffer_ms - dur).max(0.0));
            let dl = lat + c.size_bits(seg, q) / tput;
            let rebuf = (dl - buffer).max(0.0);
            buffer = (buffer - dl).max(0.0) + dur;
            let r = c.bitrates_kbps[q] / 1000.0;
            total += r
                - SMOOTH_PENALTY * (r - c.bitrates_kbps[last] / 1000.0).abs()
                - REBUF_PENALTY * rebuf / 1000.0;
            last = q;
        }
        let short = (self.cfg.reserve_ms.min(ctx.max_buffer_ms) - buffer).max(0.0);
        total - self.cfg.reserve_penalty * short / 1000.0
    }
}

impl Abr for Robust {
    fn choose(&mut self, ctx: &Ctx, segment: usize) -> Choice {
        let Some(tput) = self.predict(ctx.throughput_kbps) else {
            return Choice::now(0);
        };
        self.last_prediction = Some(tput);
        let c = ctx.content;
        let steps = self
            .cfg
            .horizon
            .min(c.segments().saturating_sub(segment))
            .max(1);
        let n = c.qualities();
        let mut best = (f64::NEG_INFINITY, 0);
        for q1 in 0..n {
            for q2 in 0..n {
                if steps == 1 && q2 > 0 {
                    break;
                }
                let s = self.score(ctx, segment, steps, tput, q1, q2);
                if s > best.0 {
                    best = (s, q1);
                }
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
        if let Some(to) = d.abandoned_to {
            self.cap = Some(to);
            self.last_prediction = None;
            return;
        }
        self.last = d.quality;
        let dl = d.time_ms - d.ttfb_ms;
        if dl <= 0.0 || d.downloaded_bits <= 0.0 {
            self.last_prediction = None;
            return;
        }
        let actual = d.downloaded_bits / dl;
        if let Some(p) = self.last_prediction.take() {
            self.errors.push_back((p - actual).max(0.0) / p);
            if self.errors.len() > PAST {
                self.errors.pop_front();
            }
        }
        self.samples.push_back(actual);
        if self.samples.len() > PAST {
            self.samples.pop_front();
        }
    }

    fn check_abandon(&mut self, ctx: &Ctx, p: &Progress, buffer_ms: f64) -> Option<usize> {
        abandon_near_stall(ctx, p, buffer_ms, self.cfg.abandon_reserve_segments)
    }
}
