//! `lolp`: a low-latency rule for live streams, in the spirit of dash.js's LoL+ (Bentaleb
//! et al., "Catching the Moment with LoL+ in Twitch-like Low-Latency Live Streaming
//! Platforms", IEEE TMM 2022) and L2A-LL: the quality is chosen from the throughput
//! measured inside chunk bursts and the live buffer, keeping only rungs that play without
//! the latency growing.
//!
//! Why a rule of its own: in low-latency live the buffer is about one target latency
//! (1–3 s), far below what the on-demand rules plan with. A buffer-based rule (BOLA, BBA)
//! never leaves its lowest rungs there, and an MPC that keeps a buffer reserve plays a
//! rung below what the link carries (the reserve is most of the buffer). What bounds a
//! live quality is different: a rung is sustainable when each chunk downloads faster than
//! it is played — at the catch-up playback rate, not only at 1× — so that the latency does
//! not grow. This rule asks exactly that.
//!
//! - **Throughput**: the harmonic mean of the last [`SAMPLES`] segments' burst throughput
//!   (the live session measures only inside each chunk's burst, see `stream::live`),
//!   weighted by their bits — Σ bits / Σ burst time. The harmonic mean is LoL+'s choice:
//!   one fast burst does not lift it much, one slow one pulls it down; the weights keep
//!   the small chunks of a low rung, which fit in one TCP burst and look instantaneous,
//!   from lifting the estimate above the link.
//! - **Candidates**: every rung whose bitrate × [`CATCH_UP_RATE`] fits in `safety` × the
//!   estimate; `safety` is [`SAFETY`], or [`SAFETY_LOW`] when the buffer holds less than
//!   the next chunk of the current rung takes to arrive (time to first byte + its burst
//!   at the estimate): the playhead is about to catch the download up, be careful.
//! - **Choice**: the highest candidate, but up one rung at a time, and only with twice
//!   the new rung's chunk arrival time buffered (its first chunk must not stall); a step
//!   down is immediate, to any rung. One rung at a time because what a low rung measures
//!   overstates the link: its chunks are small enough to cross in one burst of the
//!   sender's window, so they look instantaneous; the next rung's bigger chunks measure
//!   the link better before the one above is tried. (LoL+ scores
//!   the candidates with a QoE of bitrate, latency, buffer and switches; with candidates
//!   restricted to rungs that add no latency, that score is highest for the top one, so
//!   the score is left out.)
//! - **Startup**: the lowest rung until a throughput is measured (as LoL+).
//!
//! The live session builds it with the stream's chunk duration ([`Lolp::new`]); for `player
//! simulate` the chunk is a quarter segment.

use super::{Choice, Ctx, Downloaded};

/// Burst-throughput samples kept.
pub(crate) const SAMPLES: usize = 4;
/// Fraction of the estimate a sustained rung may use.
pub(crate) const SAFETY: f64 = 0.85;
/// … with under one chunk buffered.
pub(crate) const SAFETY_LOW: f64 = 0.6;
/// Playback rate a rung must sustain (the catch-up rate of a typical ServiceDescription).
pub(crate) const CATCH_UP_RATE: f64 = 1.05;

#[derive(Debug, Clone)]
pub(crate) struct Lolp {
    chunk_ms: f64,
    /// (bits, burst ms) of the last downloads.
    samples: Vec<(f64, f64)>,
}

impl Lolp {
    /// A rule for chunks of `chunk_ms` (the whole segment when it is not chunked).
    pub(crate) fn new(chunk_ms: f64) -> Lolp {
        Lolp {
            chunk_ms: chunk_ms.max(1.0),
            samples: Vec::with_capacity(SAMPLES),
        }
    }

    /// The bit-weighted harmonic mean of the samples, else the session's estimate.
    fn estimate(&self, ctx: &Ctx) -> Option<f64> {
        if self.samples.is_empty() {
            return ctx.throughput_kbps.filter(|t| *t > 0.0);
        }
        let bits: f64 = self.samples.iter().map(|s| s.0).sum();
        let ms: f64 = self.samples.iter().map(|s| s.1).sum();
        Some(bits / ms.max(1e-3))
    }
}

impl super::Abr for Lolp {
    fn first_quality(&mut self, _ctx: &Ctx) -> usize {
        0
    }

    fn choose(&mut self, ctx: &Ctx, _segment: usize) -> Choice {
        let Some(tput) = self.estimate(ctx) else {
            return Choice::now(0);
        };
        let rates = &ctx.content.bitrates_kbps;
        let chunk_ms = self.chunk_ms.min(ctx.content.segment_ms);
        let last = ctx.last_quality.unwrap_or(0).min(ctx.content.top());
        // How long the next chunk of rung q takes to arrive, ms.
        let arrival =
            |q: usize| ctx.latency_ms.unwrap_or(0.0) + chunk_ms * rates[q] * CATCH_UP_RATE / tput;
        let low = ctx.buffer_ms < arrival(last);
        let safety = if low { SAFETY_LOW } else { SAFETY };
        let sustainable = |q: usize| rates[q] * CATCH_UP_RATE <= safety * tput;
        let best = (1..rates.len())
            .rev()
            .find(|&q| {
                sustainable(q)
                    && (q <= last || (q == last + 1 && ctx.buffer_ms >= 2.0 * arrival(q)))
            })
            .unwrap_or(0);
        Choice::now(best)
    }

    fn report_download(&mut self, _ctx: &Ctx, d: &Downloaded) {
        let dl_ms = d.time_ms - d.ttfb_ms;
        if d.abandoned_to.is_some() || dl_ms <= 0.0 || d.downloaded_bits <= 0.0 {
            return;
        }
        if self.samples.len() == SAMPLES {
            self.samples.remove(0);
        }
        self.samples.push((d.downloaded_bits, dl_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abr::Abr;
    use crate::content::Content;

    fn ctx(content: &Content, buffer_ms: f64, last: usize) -> Ctx<'_> {
        Ctx {
            content,
            buffer_ms,
            max_buffer_ms: 30_000.0,
            throughput_kbps: None,
            latency_ms: None,
            last_quality: Some(last),
        }
    }

    fn feed(r: &mut Lolp, c: &Content, kbps: f64) {
        r.report_download(
            &ctx(c, 1500.0, 0),
            &Downloaded {
                quality: 0,
                // 100 kbit at `kbps` (bits per ms).
                downloaded_bits: 100_000.0,
                time_ms: 10.0 + 100_000.0 / kbps,
                ttfb_ms: 10.0,
                abandoned_to: None,
            },
        );
    }

    #[test]
    fn climbs_to_what_the_link_sustains_and_drops_at_once() {
        let c = Content::uniform(vec![150.0, 400.0, 800.0], 2000.0, 100);
        let mut r = Lolp::new(500.0);
        assert_eq!(r.first_quality(&ctx(&c, 0.0, 0)), 0);
        // Nothing measured: the lowest rung.
        assert_eq!(r.choose(&ctx(&c, 1500.0, 0), 1).quality, 0);
        // A 4 Mbit/s link: up to the top, one rung at a time.
        feed(&mut r, &c, 4000.0);
        assert_eq!(r.choose(&ctx(&c, 1500.0, 0), 1).quality, 1);
        assert_eq!(r.choose(&ctx(&c, 1500.0, 1), 1).quality, 2);
        // 600 kbit/s: 800 does not fit, 400 does (× 1.05 < 0.85 × 600).
        let mut r = Lolp::new(500.0);
        for _ in 0..SAMPLES {
            feed(&mut r, &c, 600.0);
        }
        assert_eq!(r.choose(&ctx(&c, 1500.0, 2), 1).quality, 1);
        // The same link with less buffered than the next chunk takes (350 ms): the
        // careful factor, 0.6 × 600 = 360 < 400 × 1.05, so the lowest rung.
        assert_eq!(r.choose(&ctx(&c, 300.0, 1), 1).quality, 0);
        // No step up without twice the new rung's chunk time (2 × 21 ms) buffered,
        // however fast the link.
        let mut r = Lolp::new(500.0);
        feed(&mut r, &c, 10_000.0);
        assert_eq!(r.choose(&ctx(&c, 30.0, 0), 1).quality, 0);
        assert_eq!(r.choose(&ctx(&c, 50.0, 0), 1).quality, 1);
        assert_eq!(
            r.choose(&ctx(&c, 30.0, 2), 1).quality,
            2,
            "holding is no step up"
        );
    }

    #[test]
    fn a_small_chunk_that_looked_instant_does_not_lift_the_estimate() {
        let c = Content::uniform(vec![150.0, 400.0, 800.0], 2000.0, 100);
        let mut r = Lolp::new(500.0);
        let mut add = |bits: f64, ms: f64| {
            r.report_download(
                &ctx(&c, 1500.0, 0),
                &Downloaded {
                    quality: 0,
                    downloaded_bits: bits,
                    time_ms: ms + 5.0,
                    ttfb_ms: 5.0,
                    abandoned_to: None,
                },
            )
        };
        // 300 kbit of the low rung in 10 ms (30 Mbit/s: one socket burst), then 800 kbit
        // of the middle one in 1300 ms (≈ 615 kbit/s, the link).
        add(300_000.0, 10.0);
        add(800_000.0, 1300.0);
        let e = r.estimate(&ctx(&c, 1500.0, 1)).unwrap();
        assert!(e < 900.0, "{e}");
        assert_eq!(r.choose(&ctx(&c, 1500.0, 1), 1).quality, 1);
    }

    #[test]
    fn the_harmonic_mean_is_pulled_down_by_a_slow_burst() {
        let c = Content::uniform(vec![150.0, 400.0, 800.0], 2000.0, 100);
        let mut r = Lolp::new(500.0);
        for k in [4000.0, 4000.0, 400.0, 400.0] {
            feed(&mut r, &c, k);
        }
        // ≈ 727 kbit/s where the arithmetic mean says 2200.
        let e = r.estimate(&ctx(&c, 1500.0, 0)).unwrap();
        assert!(e < 800.0 && e > 400.0, "{e}");
        assert_eq!(r.choose(&ctx(&c, 1500.0, 2), 1).quality, 1);
    }
}
