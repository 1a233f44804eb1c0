//! dash.js's ThroughputRule as sabre models it.
//!
//! The quality is the highest whose segment downloads within one segment duration at 0.9 ×
//! the EWMA throughput. The insufficient-buffer rule then caps it so the segment can arrive
//! before the buffer runs dry: at most `safety × (buffer − latency) × throughput` bits, with
//! a safety factor starting at 0.9 and decaying ×0.9 per segment to 0.5. A download is
//! abandoned when, after 500 ms, it is on course to take more than 1.8 segment durations and
//! a lower quality would be smaller than what is left to download.

use super::{Choice, Ctx, Progress};

pub(crate) const SAFETY_FACTOR: f64 = 0.9;
pub(crate) const LOW_BUFFER_SAFETY_FACTOR: f64 = 0.5;
pub(crate) const LOW_BUFFER_SAFETY_FACTOR_INIT: f64 = 0.9;
pub(crate) const ABANDON_MULTIPLIER: f64 = 1.8;
pub(crate) const ABANDON_GRACE_MS: f64 = 500.0;

#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    ibr_safety: f64,
}

impl Throughput {
    pub(crate) fn new() -> Throughput {
        Throughput {
            ibr_safety: LOW_BUFFER_SAFETY_FACTOR_INIT,
        }
    }
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput::new()
    }
}

/// The insufficient-buffer rule: the highest quality ≤ `quality` whose next-higher rung
/// still fits in `safe_size` — i.e. the first `q` whose successor would not fit.
pub(crate) fn insufficient_buffer_cap(ctx: &Ctx, quality: usize, safe_size: f64) -> Option<usize> {
    let rates = &ctx.content.bitrates_kbps;
    (0..quality).find(|&q| rates[q + 1] * ctx.content.segment_ms > safe_size)
}

/// sabre's throughput abandonment rule, shared with algorithms that have none of their own.
pub(crate) fn abandon_by_throughput(ctx: &Ctx, p: &Progress) -> Option<usize> {
    let dl_time = p.time_ms - p.ttfb_ms;
    if p.time_ms >= ABANDON_GRACE_MS && dl_time > 0.0 {
        let tput = p.downloaded_bits / dl_time;
        let left = p.size_bits - p.downloaded_bits;
        let eta = left / tput;
        if p.time_ms + eta > ABANDON_MULTIPLIER * ctx.content.segment_ms {
            let q = ctx.quality_from_throughput(tput * SAFETY_FACTOR);
            let rates = &ctx.content.bitrates_kbps;
            let estimate = p.size_bits * rates[q] / rates[p.quality];
            if q < p.quality && estimate < left {
                return Some(q);
            }
        }
    }
    None
}

impl super::Abr for Throughput {
    fn choose(&mut self, ctx: &Ctx, _segment: usize) -> Choice {
        let tput = ctx.throughput_kbps.unwrap_or(0.0);
        if tput <= 0.0 {
            return Choice::now(0);
        }
        let mut quality = ctx.quality_from_throughput(tput * SAFETY_FACTOR);
        let lat = ctx.latency_ms.unwrap_or(0.0);
        let safe_size = self.ibr_safety * (ctx.buffer_ms - lat) * tput;
        self.ibr_safety =
            (self.ibr_safety * LOW_BUFFER_SAFETY_FACTOR_INIT).max(LOW_BUFFER_SAFETY_FACTOR);
        if let Some(q) = insufficient_buffer_cap(ctx, quality, safe_size) {
            quality = q;
        }
        Choice::now(quality)
    }

    fn check_abandon(&mut self, ctx: &Ctx, p: &Progress, _buffer_ms: f64) -> Option<usize> {
        abandon_by_throughput(ctx, p)
    }
}
