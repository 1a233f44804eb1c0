//! The playback buffer and what playing it out costs: played bitrate, switches, stalls.
//!
//! The model is sabre's: the buffer holds whole segments (quality, duration); playing for
//! `t` ms consumes the head segment, a segment counts as "played" (bitrate, switch) the
//! moment it starts playing, and time that finds the buffer empty is rebuffering. A stall
//! counts as one event when the buffer runs dry during a stretch of play; time that finds it
//! already empty extends the same stall.

use std::collections::VecDeque;

/// Below this (ms), time left over by float arithmetic is treated as none.
const TIME_EPSILON_MS: f64 = 1e-6;

/// Accumulated playback metrics (ms, kbit/s).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Playback {
    /// Wall time since the session started: startup + playing + stalled.
    pub total_ms: f64,
    /// Time before playback started.
    pub startup_ms: f64,
    pub rebuffer_ms: f64,
    pub rebuffer_events: u32,
    /// Σ bitrate of every segment that started playing (sabre's "total played bitrate").
    pub played_bitrate_sum: f64,
    /// Σ bitrate × duration of played segments (kbit/s·ms).
    pub played_bitrate_ms: f64,
    /// Σ duration of played segments.
    pub played_media_ms: f64,
    pub played_segments: u32,
    /// Quality switches between consecutive played segments, and Σ |Δ bitrate| (kbit/s).
    pub switches: u32,
    pub switch_kbps: f64,
    pub last_played: Option<usize>,
    /// Bitrates (kbit/s) of played segments in order, for the QoE score.
    pub played: Vec<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Buffer {
    /// (quality, duration ms) of buffered segments, head first.
    segments: VecDeque<(usize, f64)>,
    /// How much of the head segment has played already (sabre's `buffer_fcc`).
    head_played_ms: f64,
    level_total: f64,
    /// Playback has started (startup threshold reached).
    pub playing: bool,
    pub metrics: Playback,
}

impl Buffer {
    pub(crate) fn new() -> Buffer {
        Buffer {
            segments: VecDeque::new(),
            head_played_ms: 0.0,
            level_total: 0.0,
            playing: false,
            metrics: Playback::default(),
        }
    }

    /// Seconds of media buffered, ms.
    pub(crate) fn level_ms(&self) -> f64 {
        self.level_total - self.head_played_ms
    }

    pub(crate) fn push(&mut self, quality: usize, duration_ms: f64) {
        self.segments.push_back((quality, duration_ms));
        self.level_total += duration_ms;
    }

    fn pop(&mut self) {
        if let Some((_, d)) = self.segments.pop_front() {
            self.level_total -= d;
        }
        if self.segments.is_empty() {
            self.level_total = 0.0;
        }
    }

    /// Lets `time` ms of wall time pass: plays the buffer out, or stalls, or (before
    /// playback starts) counts startup.
    pub(crate) fn deplete(&mut self, mut time: f64, bitrates: &[f64]) {
        let m = &mut self.metrics;
        if !self.playing {
            m.startup_ms += time;
            m.total_ms += time;
            return;
        }
        if self.segments.is_empty() {
            m.rebuffer_ms += time;
            m.total_ms += time;
            return;
        }
        if self.head_played_ms > 0.0 {
            let head = self.segments[0].1;
            if time + self.head_played_ms < head {
                self.head_played_ms += time;
                self.metrics.total_ms += time;
                return;
            }
            time -= head - self.head_played_ms;
            self.metrics.total_ms += head - self.head_played_ms;
            self.pop();
            self.head_played_ms = 0.0;
        }
        while time > TIME_EPSILON_MS && !self.segments.is_empty() {
            let (q, dur) = self.segments[0];
            let m = &mut self.metrics;
            let b = bitrates[q];
            m.played_bitrate_sum += b;
            m.played_bitrate_ms += b * dur;
            m.played_media_ms += dur;
            m.played_segments += 1;
            m.played.push(b);
            if let Some(last) = m.last_played {
                if last != q {
                    m.switches += 1;
                    m.switch_kbps += (b - bitrates[last]).abs();
                }
            }
            m.last_played = Some(q);
            if time >= dur {
                self.pop();
                self.metrics.total_ms += dur;
                time -= dur;
            } else {
                self.head_played_ms = time;
                self.metrics.total_ms += time;
                time = 0.0;
            }
        }
        // `time -= dur` leaves float dust (1e-13 ms) when a wait ends exactly as the buffer
        // runs dry: that is no stall, and must not count as a rebuffer event.
        if time > TIME_EPSILON_MS {
            self.metrics.rebuffer_ms += time;
            self.metrics.total_ms += time;
            self.metrics.rebuffer_events += 1;
        }
    }

    /// Plays everything left (the end of the session).
    pub(crate) fn play_out(&mut self, bitrates: &[f64]) {
        self.playing = true;
        let level = self.level_ms();
        self.deplete(level, bitrates);
        self.segments.clear();
        self.head_played_ms = 0.0;
        self.level_total = 0.0;
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_dust_when_the_buffer_runs_dry_is_no_stall() {
        let rates = [100.0];
        let mut b = Buffer::new();
        b.push(0, 0.1);
        b.push(0, 0.2);
        b.playing = true;
        // 0.1 + 0.2 is a hair above 0.3 in floats, and (0.1 + 0.2) - 0.1 - 0.2 leaves
        // 3e-17 ms: the buffer ran dry exactly on time.
        b.deplete(0.1 + 0.2, &rates);
        assert_eq!(b.level_ms(), 0.0);
        assert_eq!(b.metrics.rebuffer_events, 0);
        assert_eq!(b.metrics.rebuffer_ms, 0.0);
    }

    #[test]
    fn plays_partial_segments_and_counts_one_stall() {
        let rates = [100.0, 200.0];
        let mut b = Buffer::new();
        b.push(0, 3000.0);
        b.playing = true;
        b.deplete(1000.0, &rates);
        assert_eq!(b.level_ms(), 2000.0);
        assert_eq!(b.metrics.played_segments, 1);
        b.push(1, 3000.0);
        b.deplete(6000.0, &rates);
        assert_eq!(b.level_ms(), 0.0);
        assert_eq!(b.metrics.rebuffer_ms, 1000.0);
        assert_eq!(b.metrics.rebuffer_events, 1);
        // Still empty: the same stall goes on.
        b.deplete(500.0, &rates);
        assert_eq!(b.metrics.rebuffer_events, 1);
        assert_eq!(b.metrics.rebuffer_ms, 1500.0);
        assert_eq!(b.metrics.switches, 1);
        assert_eq!(b.metrics.switch_kbps, 100.0);
        assert_eq!(b.metrics.total_ms, 7500.0);
    }
}
