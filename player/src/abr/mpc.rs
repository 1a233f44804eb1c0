//! RobustMPC (Yin, Jindal, Sekar, Sinopoli, "A Control-Theoretic Approach for Dynamic
//! Adaptive Video Streaming over HTTP", SIGCOMM 2015).
//!
//! At each segment it predicts throughput as the harmonic mean of the last five downloads,
//! discounted by the largest relative prediction error of the last five (the "robust" part),
//! then tries every quality sequence over the next five segments on a simulated buffer and
//! keeps the first step of the sequence with the best linear QoE: Σ bitrate (Mbit/s) −
//! 1 × Σ |Δ bitrate| − 4.3 × rebuffer seconds. Each simulated download also pays the
//! latency estimate, and the buffer never holds more than its capacity.
//!
//! Three deviations from the paper, each measured on sabre's 4G traces with bbb.json
//! (`bench/abr.sh`) and each a field of [`MpcConfig`] so the paper's behaviour stays one
//! switch away:
//! - the prediction error is one-sided and relative to the prediction,
//!   max(0, predicted − actual) / predicted: the discount guards against over-estimates (what
//!   causes stalls) and is bounded, where the paper's |predicted − actual| / actual lets one
//!   sample during a radio outage divide the next five predictions by 40;
//! - abandonment only to avoid a stall that is near: when the buffer is down to two segments
//!   and the rest of the download, at its current rate, would outlast it; the next segment
//!   then comes at the quality abandoned to (the throughput rule abandons at any buffer
//!   level, which on 4G traces throws away most downloads during short outages);
//! - abandoned downloads are not throughput samples (as in the EWMA).

use std::collections::VecDeque;

use super::throughput::{abandon_by_throughput, ABANDON_GRACE_MS};
use super::{Abr, Choice, Ctx, Downloaded, Progress};
use crate::content::Content;

pub(crate) const HORIZON: usize = 5;
pub(crate) const PAST: usize = 5;
pub(crate) const REBUF_PENALTY: f64 = 4.3;
pub(crate) const SMOOTH_PENALTY: f64 = 1.0;
/// Quality sequences tried per decision at most: on a ten-rung ladder the horizon is four
/// segments (10 000 plans), which keeps a decision under the lab's CPU budget of 5 ms per
/// session-minute (five segments cost about 20 ms).
const MAX_PLANS: f64 = 10_000.0;

/// The knobs that differ from the paper (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MpcConfig {
    /// max(0, p − a) / p rather than |p − a| / a.
    pub one_sided_error: bool,
    /// Abandon only when the buffer is at most this many segments (and a stall is coming);
    /// `None`: the throughput rule's abandonment.
    pub abandon_reserve_segments: Option<f64>,
    /// After abandoning to q, fetch the next segment at q at most.
    pub follow_abandon: bool,
    /// Count abandoned downloads as throughput samples.
    pub abandoned_samples: bool,
}

impl MpcConfig {
    /// RobustMPC as published.
    pub(crate) const PAPER: MpcConfig = MpcConfig {
        one_sided_error: false,
        abandon_reserve_segments: None,
        follow_abandon: false,
        abandoned_samples: true,
    };
}

impl Default for MpcConfig {
    fn default() -> Self {
        MpcConfig {
            one_sided_error: true,
            abandon_reserve_segments: Some(2.0),
            follow_abandon: true,
            abandoned_samples: false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RobustMpc {
    pub cfg: MpcConfig,
    cap: Option<usize>,
    max_buffer_ms: f64,
    samples: VecDeque<f64>,
    errors: VecDeque<f64>,
    last_prediction: Option<f64>,
    last: usize,
}

impl RobustMpc {
    pub(crate) fn with_config(content: &Content, max_buffer_ms: f64, cfg: MpcConfig) -> RobustMpc {
        let mut m = RobustMpc::new(content, max_buffer_ms);
        m.cfg = cfg;
        m
    }

    pub(crate) fn new(_content: &Content, max_buffer_ms: f64) -> RobustMpc {
        RobustMpc {
            cfg: MpcConfig::default(),
            cap: None,
            max_buffer_ms,
            samples: VecDeque::new(),
            errors: VecDeque::new(),
            last_prediction: None,
            last: 0,
        }
    }

    fn predict(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let hm = self.samples.len() as f64 / self.samples.iter().map(|s| 1.0 / s).sum::<f64>();
        let err = self.errors.iter().copied().fold(0.0, f64::max);
        Some(hm / (1.0 + err))
    }
}

struct Plan<'a> {
    ctx: &'a Ctx<'a>,
    start: usize,
    steps: usize,
    tput: f64,
    latency: f64,
    max_buffer: f64,
}

impl Plan<'_> {
    /// Best total reward reachable from `step` with `buffer` ms buffered after `last`.
    fn best(&self, step: usize, buffer: f64, last: usize) -> f64 {
        if step == self.steps {
            return 0.0;
        }
        let c = self.ctx.content;
        let seg = self.start + step;
        let dur = c.duration_ms(seg);
        let buf = buffer.min((self.max_buffer - dur).max(0.0));
        let mut best = f64::NEG_INFINITY;
        for q in 0..c.qualities() {
            let dl = self.latency + c.size_bits(seg, q) / self.tput;
            let rebuf = (dl - buf).max(0.0);
            let after = (buf - dl).max(0.0) + dur;
            let r = c.bitrates_kbps[q] / 1000.0;
            let reward = r
                - SMOOTH_PENALTY * (r - c.bitrates_kbps[last] / 1000.0).abs()
                - REBUF_PENALTY * rebuf / 1000.0;
            let total = reward + self.best(step + 1, after, q);
            if total > best {
                best = total;
            }
        }
        best
    }
}

impl Abr for RobustMpc {
    fn choose(&mut self, ctx: &Ctx, segment: usize) -> Choice {
        if self.samples.is_empty() {
            if let Some(t) = ctx.throughput_kbps {
                self.samples.push_back(t);
            }
        }
        let Some(tput) = self.predict() else {
            return Choice::now(0);
        };
        self.last_prediction = Some(tput);
        let c = ctx.content;
        let mut steps = HORIZON.min(c.segments().saturating_sub(segment)).max(1);
        // Exhaustive search is qualities^steps: keep it bounded on long ladders.
        while steps > 1 && (c.qualities() as f64).powi(steps as i32) > MAX_PLANS {
            steps -= 1;
        }
        let plan = Plan {
            ctx,
            start: segment,
            steps,
            tput,
            latency: ctx.latency_ms.unwrap_or(0.0),
            max_buffer: self.max_buffer_ms,
        };
        // The first step decides; the rest of the horizon only scores it.
        let dur = c.duration_ms(segment);
        let buf = ctx.buffer_ms.min((self.max_buffer_ms - dur).max(0.0));
        let mut best = (f64::NEG_INFINITY, 0);
        for q in 0..c.qualities() {
            let dl = plan.latency + c.size_bits(segment, q) / tput;
            let rebuf = (dl - buf).max(0.0);
            let after = (buf - dl).max(0.0) + dur;
            let r = c.bitrates_kbps[q] / 1000.0;
            let reward = r
                - SMOOTH_PENALTY * (r - c.bitrates_kbps[self.last] / 1000.0).abs()
                - REBUF_PENALTY * rebuf / 1000.0;
            let total = reward + plan.best(1, after, q);
            if total > best.0 {
                best = (total, q);
            }
        }
        let mut q = best.1;
        if let Some(c) = self.cap.take() {
            q = q.min(c);
        }
        self.last = q;
        Choice::now(q)
    }

    fn report_download(&mut self, _ctx: &Ctx, d: &Downloaded) {
        let dl = d.time_ms - d.ttfb_ms;
        // An abandoned download measured the worst moment of a collapse, cut short: as in
        // the EWMA, it is not a throughput sample.
        if let Some(to) = d.abandoned_to {
            if self.cfg.follow_abandon {
                self.cap = Some(to);
            }
        }
        if dl <= 0.0
            || d.downloaded_bits <= 0.0
            || (d.abandoned_to.is_some() && !self.cfg.abandoned_samples)
        {
            self.last_prediction = None;
            return;
        }
        let actual = d.downloaded_bits / dl;
        if let Some(p) = self.last_prediction.take() {
            let e = if self.cfg.one_sided_error {
                (p - actual).max(0.0) / p
            } else {
                (p - actual).abs() / actual
            };
            self.errors.push_back(e);
            if self.errors.len() > PAST {
                self.errors.pop_front();
            }
        }
        self.samples.push_back(actual);
        if self.samples.len() > PAST {
            self.samples.pop_front();
        }
        if d.abandoned_to.is_none() {
            self.last = d.quality;
        }
    }

    fn check_abandon(&mut self, ctx: &Ctx, p: &Progress, buffer_ms: f64) -> Option<usize> {
        let Some(reserve) = self.cfg.abandon_reserve_segments else {
            return abandon_by_throughput(ctx, p);
        };
        abandon_near_stall(ctx, p, buffer_ms, reserve)
    }
}

/// Abandons only to avoid a stall that is near (see the module docs); `reserve` in segments.
pub(crate) fn abandon_near_stall(
    ctx: &Ctx,
    p: &Progress,
    buffer_ms: f64,
    reserve: f64,
) -> Option<usize> {
    // When the buffer is low and the rest of this download, at the rate it is going, would
    // outlast it: switch to the best quality that would not (or the lowest), if that is
    // less to download than what is left.
    let dl = p.time_ms - p.ttfb_ms;
    if p.time_ms < ABANDON_GRACE_MS || dl <= 0.0 || p.downloaded_bits <= 0.0 {
        return None;
    }
    let rate = p.downloaded_bits / dl;
    let left = p.size_bits - p.downloaded_bits;
    if left / rate <= buffer_ms {
        return None;
    }
    if buffer_ms > reserve * ctx.content.segment_ms {
        return None;
    }
    let rates = &ctx.content.bitrates_kbps;
    let lat = ctx.latency_ms.unwrap_or(0.0);
    let size_at = |q: usize| p.size_bits * rates[q] / rates[p.quality];
    let q = (0..p.quality)
        .rev()
        .find(|&q| lat + size_at(q) / rate <= buffer_ms)
        .unwrap_or(0);
    (q < p.quality && size_at(q) < left).then_some(q)
}
