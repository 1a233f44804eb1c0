//! Live playback on the wall clock: the playhead moves in real time (× the catch-up
//! rate) through the media that has arrived, chunk by chunk, and stalls when it reaches
//! the end of it. The on-demand model (`buffer.rs`, sabre's) holds whole segments and
//! lets time pass only when the driver says so; a low-latency player holds less than a
//! segment and plays a chunk the moment it arrives, so it needs this finer model.
//!
//! Positions are seconds on the MPD timeline (0 = `availabilityStartTime`). Media is
//! playable up to the lower of the video and audio ends. Live latency is the server's
//! wall clock minus the position played, mapped through `availabilityStartTime`:
//! `now − (AST + playhead)`, sampled every [`SAMPLE`] while playing or stalled.
//!
//! Catch-up (as dash.js's default rule): more than [`TOLERANCE_S`] behind the target,
//! play faster, `1 + 0.1 × (latency − target)` clamped to the ServiceDescription's
//! `PlaybackRate@max`; closer than the target, slower, down to `@min`; never faster
//! with under [`BUFFER_MIN_S`] buffered (speeding up would only stall sooner). Past
//! `Latency@max` the driver skips to the target instead ([`Playback::skip_to`]).
//! A gap in the media (a live input that dropped and came back as a new Period) is
//! jumped over when the playhead reaches it, as dash.js's gap controller does.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::qoe::{qoe_lin, Summary};

/// How often latency is sampled.
pub(super) const SAMPLE: Duration = Duration::from_millis(250);
/// Latency within this of the target: play at 1×.
pub(super) const TOLERANCE_S: f64 = 0.1;
/// Do not speed up with less media than this ahead of the playhead.
pub(super) const BUFFER_MIN_S: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Video,
    Audio,
}

pub(super) struct Playback {
    pub(super) started: bool,
    pub(super) playhead: f64,
    video_end: f64,
    /// `None`: the presentation has no audio.
    audio_end: Option<f64>,
    /// A hole in the media, (from, to), to jump when the playhead reaches it.
    jump: Option<(f64, f64)>,
    pub(super) rate: f64,
    stalled: bool,
    last: Instant,
    next_sample: Instant,
    target_s: f64,
    rate_min: f64,
    rate_max: f64,
    /// Media needed ahead of the playhead to start (and to resume after a stall).
    resume_s: f64,
    /// Buffered video segments: (start, end, kbit/s), for the played bitrate.
    segs: VecDeque<(f64, f64, f64)>,
    current: Option<f64>,
    // Metrics.
    startup_s: f64,
    stall_s: f64,
    stall_events: u32,
    played_s: f64,
    played_kbps_s: f64,
    played: Vec<f64>,
    switches: u32,
    switch_kbps: f64,
    last_kbps: Option<f64>,
    pub(super) catchup_s: f64,
    pub(super) slowdown_s: f64,
    pub(super) skips: u32,
    pub(super) skipped_s: f64,
    pub(super) latencies: Vec<f64>,
}

impl Playback {
    pub(super) fn new(
        start: f64,
        has_audio: bool,
        target_s: f64,
        (rate_min, rate_max): (f64, f64),
        resume_s: f64,
        now: Instant,
    ) -> Playback {
        Playback {
            started: false,
            playhead: start,
            video_end: start,
            audio_end: has_audio.then_some(start),
            jump: None,
            rate: 1.0,
            stalled: false,
            last: now,
            next_sample: now,
            target_s,
            rate_min,
            rate_max,
            resume_s,
            segs: VecDeque::new(),
            current: None,
            startup_s: 0.0,
            stall_s: 0.0,
            stall_events: 0,
            played_s: 0.0,
            played_kbps_s: 0.0,
            played: Vec::new(),
            switches: 0,
            switch_kbps: 0.0,
            last_kbps: None,
            catchup_s: 0.0,
            slowdown_s: 0.0,
            skips: 0,
            skipped_s: 0.0,
            latencies: Vec::new(),
        }
    }

    fn end(&self) -> f64 {
        let e = self
            .audio_end
            .map_or(self.video_end, |a| a.min(self.video_end));
        match self.jump {
            Some((from, _)) if self.playhead < from => e.min(from),
            _ => e,
        }
    }

    /// Media buffered ahead of the playhead, s.
    pub(super) fn ahead(&self) -> f64 {
        (self.end() - self.playhead).max(0.0)
    }

    /// A segment of `kind` starting at `start` begins to arrive (video: at `kbps`,
    /// ending at `end`). A start past what is buffered is a hole to jump.
    pub(super) fn begin(&mut self, kind: Kind, start: f64, end: f64, kbps: f64) {
        let have = match kind {
            Kind::Video => &mut self.video_end,
            Kind::Audio => match &mut self.audio_end {
                Some(a) => a,
                None => return,
            },
        };
        if start > *have + 0.05 {
            if kind == Kind::Video && start > self.playhead {
                let from = (*have).max(self.playhead);
                self.jump = Some((from, start));
            }
            *have = start;
        }
        if kind == Kind::Video {
            self.segs.retain(|s| s.0 < start - 1e-6);
            self.segs.push_back((start, end, kbps));
        }
    }

    /// Media of `kind` is in up to `to`.
    pub(super) fn extend(&mut self, kind: Kind, to: f64) {
        match kind {
            Kind::Video => self.video_end = self.video_end.max(to),
            Kind::Audio => {
                if let Some(a) = &mut self.audio_end {
                    *a = a.max(to);
                }
            }
        }
    }

    /// Moves the playhead over `dt` s of media, accounting the bitrate played.
    fn play(&mut self, dt: f64) {
        let to = self.playhead + dt;
        while let Some(&(s, e, kbps)) = self.segs.front() {
            if e <= self.playhead + 1e-9 {
                self.segs.pop_front();
                continue;
            }
            if s > to {
                break;
            }
            if self.current != Some(s) {
                self.current = Some(s);
                self.played.push(kbps);
                if let Some(last) = self.last_kbps {
                    if last != kbps {
                        self.switches += 1;
                        self.switch_kbps += (kbps - last).abs();
                    }
                }
                self.last_kbps = Some(kbps);
            }
            let part = e.min(to) - self.playhead.max(s);
            self.played_kbps_s += kbps * part.max(0.0);
            if e > to {
                break;
            }
            self.segs.pop_front();
        }
        self.played_s += dt;
        self.playhead = to;
    }

    /// Lets wall time pass up to `now`; `live_edge` is the server's now on the MPD
    /// timeline (server Unix time − AST).
    pub(super) fn advance(&mut self, now: Instant, live_edge: f64) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        if !self.started {
            self.startup_s += dt;
            if self.ahead() >= self.resume_s {
                self.started = true;
                self.next_sample = now;
            }
            return;
        }
        if let Some((from, to)) = self.jump {
            if self.playhead >= from - 1e-3 {
                tracing::debug!(from, to, "jumping a hole in the media");
                self.skipped_s += (to - self.playhead).max(0.0);
                self.playhead = self.playhead.max(to);
                self.jump = None;
            }
        }
        if self.stalled {
            self.stall_s += dt;
            if self.ahead() >= self.resume_s {
                self.stalled = false;
            }
        } else {
            let want = dt * self.rate;
            let ahead = self.ahead();
            if want <= ahead {
                self.play(want);
                if self.rate > 1.0 {
                    self.catchup_s += dt;
                } else if self.rate < 1.0 {
                    self.slowdown_s += dt;
                }
            } else {
                self.play(ahead);
                self.stall_s += dt - ahead / self.rate;
                self.stall_events += 1;
                self.stalled = true;
            }
        }
        while self.next_sample <= now {
            self.latencies.push(live_edge - self.playhead);
            self.next_sample += SAMPLE;
        }
        let latency = live_edge - self.playhead;
        let d = latency - self.target_s;
        self.rate = if self.stalled || d.abs() < TOLERANCE_S {
            1.0
        } else {
            (1.0 + 0.1 * d).clamp(self.rate_min, self.rate_max)
        };
        if self.rate > 1.0 && self.ahead() < BUFFER_MIN_S {
            self.rate = 1.0;
        }
    }

    /// Media played so far, s.
    pub(super) fn played_s(&self) -> f64 {
        self.played_s
    }

    /// Live latency now, s.
    pub(super) fn latency(&self, live_edge: f64) -> f64 {
        live_edge - self.playhead
    }

    /// Seeks forward to `to` (too far behind the live edge): what was buffered before it
    /// is dropped, and the wait for media there counts as a stall.
    pub(super) fn skip_to(&mut self, to: f64) {
        if to <= self.playhead {
            return;
        }
        self.skips += 1;
        self.skipped_s += to - self.playhead;
        self.playhead = to;
        self.jump = None;
        if self.ahead() < self.resume_s && self.started && !self.stalled {
            self.stalled = true;
            self.stall_events += 1;
        }
    }

    /// The QoE summary (`wall_s`: the session's wall time; `bytes`: video bytes).
    pub(super) fn summary(&self, wall_s: f64, bytes: u64) -> Summary {
        let mut s = Summary {
            startup_s: self.startup_s,
            avg_bitrate_kbps: if self.played_s > 0.0 {
                self.played_kbps_s / self.played_s
            } else {
                0.0
            },
            time_avg_bitrate_kbps: if wall_s > 0.0 {
                self.played_kbps_s / wall_s
            } else {
                0.0
            },
            switches: self.switches,
            switch_magnitude_kbps: self.switch_kbps,
            rebuffer_s: self.stall_s,
            rebuffer_count: self.stall_events,
            rebuffer_ratio: if wall_s > 0.0 {
                self.stall_s / wall_s
            } else {
                0.0
            },
            qoe_lin: qoe_lin(&self.played, self.stall_s),
            segments: self.played.len() as u32,
            media_s: self.played_s,
            session_s: wall_s,
            bytes,
            ..Summary::default()
        };
        s.qoe_lin_per_segment = if s.segments > 0 {
            s.qoe_lin / f64::from(s.segments)
        } else {
            0.0
        };
        if !self.latencies.is_empty() {
            let mut v = self.latencies.clone();
            v.sort_by(f64::total_cmp);
            s.live_latency_s = Some(v.iter().sum::<f64>() / v.len() as f64);
            let i = ((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1;
            s.live_latency_p95_s = Some(v[i]);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn plays_chunks_as_they_arrive_stalls_and_measures_latency() {
        let t0 = Instant::now();
        // Start at 10.0 on the timeline, target 1.5 s, rates 0.96–1.04, start with 0.5 s.
        let mut p = Playback::new(10.0, false, 1.5, (0.96, 1.04), 0.5, t0);
        p.begin(Kind::Video, 10.0, 12.0, 800.0);
        p.extend(Kind::Video, 10.5);
        // Edge at 11.5: the playhead 1.5 s behind, on target.
        p.advance(at(t0, 0.1), 11.6);
        assert!(p.started);
        assert!((p.startup_s - 0.1).abs() < 1e-9);
        p.extend(Kind::Video, 11.0);
        p.advance(at(t0, 0.6), 12.0);
        assert!((p.playhead - 10.5).abs() < 1e-9, "{}", p.playhead);
        assert_eq!(p.rate, 1.0);
        // Nothing more arrives: the buffer runs dry at 11.0, one stall.
        p.advance(at(t0, 1.6), 13.1);
        assert!((p.playhead - 11.0).abs() < 1e-9);
        assert_eq!(p.stall_events, 1);
        assert!((p.stall_s - 0.5).abs() < 1e-9, "{}", p.stall_s);
        // Latency grew to 2.1 s: once media is back, play faster (clamped at 1.04).
        p.extend(Kind::Video, 12.0);
        p.advance(at(t0, 1.7), 13.2);
        p.advance(at(t0, 1.8), 13.3);
        assert!(p.rate > 1.0 && p.rate <= 1.04, "{}", p.rate);
        let s = p.summary(1.8, 1000);
        assert_eq!(s.segments, 1);
        assert!((s.avg_bitrate_kbps - 800.0).abs() < 1e-6);
        let mean = s.live_latency_s.unwrap();
        assert!(mean > 1.5 && mean < 2.5, "{mean}");
        assert!(s.live_latency_p95_s.unwrap() >= mean);
    }

    #[test]
    fn a_hole_between_periods_is_jumped_and_audio_gates_video() {
        let t0 = Instant::now();
        let mut p = Playback::new(0.0, true, 1.0, (1.0, 1.0), 0.5, t0);
        p.begin(Kind::Video, 0.0, 2.0, 100.0);
        p.extend(Kind::Video, 2.0);
        p.begin(Kind::Audio, 0.0, 2.0, 0.0);
        p.extend(Kind::Audio, 1.0);
        assert!((p.ahead() - 1.0).abs() < 1e-9, "audio holds playback back");
        p.extend(Kind::Audio, 2.0);
        // The next Period starts at 5.0: 3 s of nothing.
        p.begin(Kind::Video, 5.0, 7.0, 200.0);
        p.begin(Kind::Audio, 5.0, 7.0, 0.0);
        p.extend(Kind::Video, 7.0);
        p.extend(Kind::Audio, 7.0);
        p.advance(at(t0, 0.0), 1.0);
        assert!(p.started);
        p.advance(at(t0, 2.0), 3.0);
        assert!((p.playhead - 2.0).abs() < 1e-9);
        p.advance(at(t0, 2.5), 3.5);
        assert!((p.playhead - 5.5).abs() < 1e-9, "{}", p.playhead);
        assert!((p.skipped_s - 3.0).abs() < 1e-9);
        assert_eq!(p.stall_events, 0);
        let s = p.summary(2.5, 0);
        assert_eq!((s.segments, s.switches), (2, 1));
    }

    #[test]
    fn skipping_ahead_drops_the_old_position_and_waits_for_media_there() {
        let t0 = Instant::now();
        let mut p = Playback::new(0.0, false, 1.5, (0.96, 1.04), 0.5, t0);
        p.begin(Kind::Video, 0.0, 2.0, 100.0);
        p.extend(Kind::Video, 2.0);
        p.advance(at(t0, 0.0), 1.5);
        p.advance(at(t0, 1.0), 6.0);
        // 5 s behind: skip to 4.5 (edge − target); nothing is buffered there yet.
        p.skip_to(4.5);
        assert_eq!((p.skips, p.playhead), (1, 4.5));
        assert!((p.skipped_s - 3.5).abs() < 1e-9);
        assert_eq!(p.ahead(), 0.0);
        p.advance(at(t0, 1.2), 6.2);
        assert_eq!(p.stall_events, 1);
        p.begin(Kind::Video, 4.0, 6.0, 100.0);
        p.extend(Kind::Video, 5.5);
        p.advance(at(t0, 1.3), 6.3);
        p.advance(at(t0, 1.8), 6.8);
        assert!(p.playhead > 4.5, "plays again after the skip");
        assert!((p.latency(6.8) - (6.8 - p.playhead)).abs() < 1e-12);
    }
}
