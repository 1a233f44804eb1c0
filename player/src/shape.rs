//! `--trace FILE`: real downloads paced to a bandwidth trace.
//!
//! A token bucket on the body reads: tokens (bits) accrue at the trace's bandwidth of the
//! moment, up to a small burst, and every chunk read from the socket waits for its tokens.
//! Reading slower than the server sends fills the socket buffers and TCP flow control slows
//! the server down, so the edge and the network see the shaped rate too. Each request first
//! waits the latency of the trace period it starts in, as in the simulator. The trace
//! loops, and its clock starts with the session.

use std::time::Duration;

use tokio::time::Instant;

use crate::trace::Trace;

/// Bits that may pass at once after an idle spell (one typical read).
const BURST_BITS: f64 = 16_384.0 * 8.0;

#[derive(Debug, Clone)]
pub struct Shaper {
    trace: Trace,
    cycle_ms: f64,
    start: Instant,
    /// Bits that may pass without waiting, at most [`BURST_BITS`].
    tokens: f64,
    /// Trace time (ms since start) up to which tokens have been counted.
    counted_ms: f64,
}

impl Shaper {
    pub fn new(trace: Trace) -> Shaper {
        let cycle_ms = trace.periods.iter().map(|p| p.duration_ms).sum::<f64>();
        Shaper {
            trace,
            cycle_ms,
            start: Instant::now(),
            tokens: BURST_BITS,
            counted_ms: 0.0,
        }
    }

    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// (period index, ms left in it) at trace time `t`.
    fn locate(&self, t: f64) -> (usize, f64) {
        let mut t = if self.cycle_ms > 0.0 {
            t % self.cycle_ms
        } else {
            0.0
        };
        for (i, p) in self.trace.periods.iter().enumerate() {
            if t < p.duration_ms {
                return (i, p.duration_ms - t);
            }
            t -= p.duration_ms;
        }
        (0, self.trace.periods[0].duration_ms)
    }

    /// The latency of the period we are in, to wait before a request's first byte.
    pub fn latency(&self) -> Duration {
        let (i, _) = self.locate(self.now_ms());
        Duration::from_secs_f64(self.trace.periods[i].latency_ms.max(0.0) / 1000.0)
    }

    /// When (trace ms) `bits` sent from `from` have gone through.
    fn finish(&self, from: f64, mut bits: f64) -> f64 {
        let mut t = from;
        // Bounded: a trace always has a period with bandwidth (validated on load).
        for _ in 0..1_000_000 {
            if bits <= 0.0 {
                break;
            }
            let (i, left) = self.locate(t);
            let bw = self.trace.periods[i].bandwidth_kbps;
            let step = left.max(1e-6);
            if bw > 0.0 && bits <= bw * step {
                return t + bits / bw;
            }
            bits -= bw * step;
            t += step;
        }
        t
    }

    /// Bits the link carries between trace times `a` and `b`.
    fn bits_between(&self, a: f64, b: f64) -> f64 {
        let mut t = a;
        let mut bits = 0.0;
        for _ in 0..1_000_000 {
            if t >= b {
                break;
            }
            let (i, left) = self.locate(t);
            let step = left.max(1e-6).min(b - t);
            bits += self.trace.periods[i].bandwidth_kbps * step;
            t += step;
        }
        bits
    }

    /// Waits until `bytes` more may be read.
    pub async fn take(&mut self, bytes: usize) {
        let now = self.now_ms().max(self.counted_ms);
        self.tokens = (self.tokens + self.bits_between(self.counted_ms, now)).min(BURST_BITS);
        self.counted_ms = now;
        let bits = bytes as f64 * 8.0;
        if self.tokens >= bits {
            self.tokens -= bits;
            return;
        }
        let need = bits - self.tokens;
        self.tokens = 0.0;
        let done = self.finish(now, need);
        self.counted_ms = done;
        let wait = done - self.now_ms();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait / 1000.0)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_trace() {
        // 8 Mbit/s = 1 MB/s: 2 MB take about two seconds after the burst.
        let mut s = Shaper::new(Trace::constant(8000.0, 0.0));
        let t0 = Instant::now();
        for _ in 0..128 {
            s.take(16_384).await;
        }
        let took = t0.elapsed().as_secs_f64();
        assert!((took - 2.08).abs() < 0.1, "{took}");
    }
}
