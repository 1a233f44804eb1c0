//! One playback session as a state machine, shared by streaming and simulation.
//!
//! The session owns the buffer, the throughput estimator and the ABR algorithm, and says
//! what to do next ([`Session::next_step`]): fetch segment *i* at quality *q*, wait (the
//! buffer is full, or the ABR asked for a pause), or stop. The driver does it — over real
//! HTTP in real time ([`crate::stream`]) or over a bandwidth trace on a simulated clock
//! ([`crate::sim`]) — and reports back how long it took. That is the only difference
//! between the two: every decision, every buffer update and every metric is computed here.
//!
//! The semantics are sabre's (Spiteri et al., MMSys 2018), so the simulator reproduces its
//! figures: the first segment is fetched at the lowest quality and playback starts when it
//! arrives (a larger startup threshold is an option); a segment is requested only when it
//! fits in the buffer; time passes for the buffer only when the driver reports it.

use crate::abr::robust::RobustConfig;
use crate::abr::{Abr, AbrKind, Choice, Ctx, Downloaded, Progress};
use crate::buffer::Buffer;
use crate::content::Content;
use crate::estimate::Ewma;
use crate::qoe::Summary;

/// Knobs of the playback model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionConfig {
    /// Buffer capacity, ms (sabre and the issue: 25 s).
    pub max_buffer_ms: f64,
    /// Buffered media needed before playback starts, ms; 0 = as soon as the first segment
    /// is in (sabre, and dash.js's default behaviour).
    pub startup_ms: f64,
    /// EWMA half-lives, seconds.
    pub half_lives_s: Vec<f64>,
    /// sabre's `-ao` (oscillation-minimising) mode for the BOLA variants (`bola`, `bolae`,
    /// `dynamic`): no step one rung above what throughput supports; wait instead.
    pub ao: bool,
    /// The knobs of `robust` (the lab tunes them on training traces).
    pub robust: RobustConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_buffer_ms: 25_000.0,
            startup_ms: 0.0,
            half_lives_s: vec![3.0, 8.0],
            ao: false,
            robust: RobustConfig::default(),
        }
    }
}

/// Why the driver must let time pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WaitReason {
    /// The next segment does not fit in the buffer yet.
    Full,
    /// The ABR asked for a pause (BOLA-E above its target buffer).
    Abr,
}

/// What the driver should do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Step {
    Fetch {
        segment: usize,
        quality: usize,
        /// Whether to call [`Session::check_abandon`] while downloading (not for the first
        /// segment, as in sabre).
        abandonable: bool,
    },
    Wait {
        ms: f64,
        reason: WaitReason,
    },
    Done,
}

/// How a fetch went, as the driver measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fetched {
    /// Bits the segment has (what was asked for).
    pub size_bits: f64,
    /// Bits received (less than `size_bits` when abandoned).
    pub downloaded_bits: f64,
    /// Request to last byte, ms.
    pub time_ms: f64,
    /// Request to first byte, ms.
    pub ttfb_ms: f64,
    /// Set when the download was abandoned for this lower quality.
    pub abandoned_to: Option<usize>,
}

/// One download, for logs and charts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SegmentRecord {
    pub segment: usize,
    pub quality: usize,
    pub bitrate_kbps: f64,
    pub bytes: u64,
    /// Session time when the download finished, s.
    pub at_s: f64,
    pub ttfb_ms: f64,
    pub download_ms: f64,
    /// Measured throughput of this download (after the first byte), kbit/s.
    pub throughput_kbps: f64,
    /// EWMA estimate after this download, kbit/s.
    pub estimate_kbps: f64,
    pub buffer_s: f64,
    pub abandoned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Start,
    Ready,
    AfterFull,
    Delayed(usize),
    Fetching {
        segment: usize,
        quality: usize,
        first: bool,
    },
    Done,
}

pub(crate) struct Session {
    content: Content,
    cfg: SessionConfig,
    abr_kind: Option<AbrKind>,
    abr: Box<dyn Abr>,
    est: Ewma,
    buffer: Buffer,
    next_segment: usize,
    last_quality: Option<usize>,
    phase: Phase,
    bytes: u64,
    abandoned: u32,
}

fn ctx<'a>(
    content: &'a Content,
    cfg: &SessionConfig,
    est: &Ewma,
    buffer: &Buffer,
    last_quality: Option<usize>,
) -> Ctx<'a> {
    Ctx {
        content,
        buffer_ms: buffer.level_ms(),
        max_buffer_ms: cfg.max_buffer_ms,
        throughput_kbps: est.throughput_kbps,
        latency_ms: est.latency_ms,
        last_quality,
    }
}

impl Session {
    pub(crate) fn new(content: Content, abr: AbrKind, cfg: SessionConfig) -> Session {
        let algo = abr.build(&content, cfg.max_buffer_ms, cfg.ao, cfg.robust);
        let mut s = Session::with_abr(content, algo, cfg);
        s.abr_kind = Some(abr);
        s
    }

    /// A session driven by any [`Abr`] implementation.
    pub(crate) fn with_abr(content: Content, abr: Box<dyn Abr>, mut cfg: SessionConfig) -> Session {
        // A startup threshold the buffer can never reach would wait forever.
        cfg.startup_ms = cfg
            .startup_ms
            .min((cfg.max_buffer_ms - content.segment_ms).max(0.0));
        let est = Ewma::new(&cfg.half_lives_s, content.segment_ms);
        Session {
            content,
            cfg,
            abr_kind: None,
            abr,
            est,
            buffer: Buffer::new(),
            next_segment: 0,
            last_quality: None,
            phase: Phase::Start,
            bytes: 0,
            abandoned: 0,
        }
    }

    pub(crate) fn content(&self) -> &Content {
        &self.content
    }

    /// Wall time of the session so far (startup + play + stalls), ms.
    pub(crate) fn elapsed_ms(&self) -> f64 {
        self.buffer.metrics.total_ms
    }

    pub(crate) fn segments_done(&self) -> usize {
        self.next_segment
    }

    fn choose(&mut self) -> Step {
        let c = ctx(
            &self.content,
            &self.cfg,
            &self.est,
            &self.buffer,
            self.last_quality,
        );
        let Choice { quality, delay_ms } = self.abr.choose(&c, self.next_segment);
        let quality = quality.min(self.content.top());
        if delay_ms > 0.0 {
            self.phase = Phase::Delayed(quality);
            return Step::Wait {
                ms: delay_ms,
                reason: WaitReason::Abr,
            };
        }
        self.fetch(quality)
    }

    fn fetch(&mut self, quality: usize) -> Step {
        self.phase = Phase::Fetching {
            segment: self.next_segment,
            quality,
            first: false,
        };
        Step::Fetch {
            segment: self.next_segment,
            quality,
            abandonable: true,
        }
    }

    /// The next thing to do.
    pub(crate) fn next_step(&mut self) -> Step {
        match self.phase {
            Phase::Start => {
                if self.content.segments() == 0 {
                    self.phase = Phase::Done;
                    return Step::Done;
                }
                let c = ctx(&self.content, &self.cfg, &self.est, &self.buffer, None);
                let q = self.abr.first_quality(&c).min(self.content.top());
                self.phase = Phase::Fetching {
                    segment: 0,
                    quality: q,
                    first: true,
                };
                Step::Fetch {
                    segment: 0,
                    quality: q,
                    abandonable: false,
                }
            }
            Phase::Ready => {
                if self.next_segment >= self.content.segments() {
                    self.phase = Phase::Done;
                    return Step::Done;
                }
                let full = self.buffer.level_ms() + self.content.duration_ms(self.next_segment)
                    - self.cfg.max_buffer_ms;
                if full > 0.0 && self.buffer.playing {
                    self.phase = Phase::AfterFull;
                    return Step::Wait {
                        ms: full,
                        reason: WaitReason::Full,
                    };
                }
                self.choose()
            }
            Phase::AfterFull => self.choose(),
            Phase::Delayed(q) => self.fetch(q),
            Phase::Fetching {
                segment,
                quality,
                first,
            } => Step::Fetch {
                segment,
                quality,
                abandonable: !first,
            },
            Phase::Done => Step::Done,
        }
    }

    /// Reports that `ms` of wall time passed for a [`Step::Wait`].
    pub(crate) fn waited(&mut self, ms: f64, reason: WaitReason) {
        self.buffer.deplete(ms, &self.content.bitrates_kbps);
        if reason == WaitReason::Full {
            self.abr.report_delay(ms);
        }
    }

    /// Time lost outside a download (a failed attempt, a failover backoff): the buffer
    /// plays (or stalls) through it, the ABR hears nothing.
    pub(crate) fn idle(&mut self, ms: f64) {
        self.buffer.deplete(ms, &self.content.bitrates_kbps);
    }

    /// During a download: should it be abandoned (for which lower quality)?
    pub(crate) fn check_abandon(&mut self, p: &Progress) -> Option<usize> {
        let c = ctx(
            &self.content,
            &self.cfg,
            &self.est,
            &self.buffer,
            self.last_quality,
        );
        let left = (c.buffer_ms - p.time_ms).max(0.0);
        self.abr.check_abandon(&c, p, left)
    }

    /// The current fetch finished (or was abandoned).
    pub(crate) fn fetched(&mut self, r: Fetched) -> SegmentRecord {
        let Phase::Fetching {
            segment,
            quality,
            first,
        } = self.phase
        else {
            panic!(
                "Session::fetched called with no fetch in flight (phase {:?})",
                self.phase
            );
        };
        let rates = &self.content.bitrates_kbps;
        self.buffer.deplete(r.time_ms, rates);
        let abandoned = !first && r.abandoned_to.is_some();
        if !abandoned {
            self.buffer.push(quality, self.content.duration_ms(segment));
            self.next_segment = segment + 1;
            self.last_quality = Some(quality);
        } else {
            self.abandoned += 1;
        }
        if !first {
            let c = ctx(
                &self.content,
                &self.cfg,
                &self.est,
                &self.buffer,
                self.last_quality,
            );
            self.abr.report_download(
                &c,
                &Downloaded {
                    quality,
                    downloaded_bits: r.downloaded_bits,
                    time_ms: r.time_ms,
                    ttfb_ms: r.ttfb_ms,
                    abandoned_to: r.abandoned_to,
                },
            );
        }
        // A transfer too fast for the clock still counts, at the clock's resolution.
        let dl_ms = (r.time_ms - r.ttfb_ms).max(1e-3);
        let tput = r.downloaded_bits / dl_ms;
        if !abandoned {
            self.est.push(dl_ms, tput, r.ttfb_ms);
        }
        self.bytes += (r.downloaded_bits / 8.0).round() as u64;
        if !self.buffer.playing
            && (self.buffer.level_ms() >= self.cfg.startup_ms
                || self.next_segment >= self.content.segments())
        {
            self.buffer.playing = true;
        }
        self.phase = Phase::Ready;
        SegmentRecord {
            segment,
            quality,
            bitrate_kbps: self.content.bitrates_kbps[quality],
            bytes: (r.downloaded_bits / 8.0).round() as u64,
            at_s: self.buffer.metrics.total_ms / 1000.0,
            ttfb_ms: r.ttfb_ms,
            download_ms: r.time_ms - r.ttfb_ms,
            throughput_kbps: tput,
            estimate_kbps: self.est.throughput_kbps.unwrap_or(0.0),
            buffer_s: self.buffer.level_ms() / 1000.0,
            abandoned,
        }
    }

    /// Plays out what is buffered and sums the session up.
    pub(crate) fn finish(mut self) -> Summary {
        self.buffer.play_out(&self.content.bitrates_kbps);
        Summary::from_playback(
            &self.buffer.metrics,
            self.abr_kind.map(|k| k.name().to_string()),
            self.bytes,
            self.abandoned,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(bits: f64, ms: f64) -> Fetched {
        Fetched {
            size_bits: bits,
            downloaded_bits: bits,
            time_ms: ms,
            ttfb_ms: 10.0,
            abandoned_to: None,
        }
    }

    #[test]
    fn the_state_machine_fetches_waits_and_sums_up() {
        let content = Content::uniform(vec![100.0, 1000.0], 1000.0, 4);
        let cfg = SessionConfig {
            max_buffer_ms: 2000.0,
            ..SessionConfig::default()
        };
        let mut s = Session::new(content, AbrKind::Throughput, cfg);
        // The first segment: lowest quality, not abandonable; playback starts when it is in.
        assert_eq!(
            s.next_step(),
            Step::Fetch {
                segment: 0,
                quality: 0,
                abandonable: false
            }
        );
        s.fetched(got(100_000.0, 110.0));
        // 100 kbit in 100 ms = 1000 kbit/s: the throughput rule picks the lowest rung still
        // (0.9 × 1000 < 1000 kbit/s).
        let Step::Fetch {
            segment: 1,
            quality: 0,
            abandonable: true,
        } = s.next_step()
        else {
            panic!("expected segment 1")
        };
        s.fetched(got(100_000.0, 110.0));
        // The buffer holds 2 s - 0.11 s: segment 2 does not fit yet.
        let Step::Wait {
            ms,
            reason: WaitReason::Full,
        } = s.next_step()
        else {
            panic!("expected a full-buffer wait")
        };
        assert!((ms - 890.0).abs() < 1e-9, "{ms}");
        s.waited(ms, WaitReason::Full);
        assert!(matches!(s.next_step(), Step::Fetch { segment: 2, .. }));
        // A slow download: the buffer runs dry and the session stalls.
        s.fetched(got(100_000.0, 3000.0));
        assert!(matches!(s.next_step(), Step::Fetch { segment: 3, .. }));
        s.fetched(got(100_000.0, 100.0));
        assert_eq!(s.next_step(), Step::Done);
        let sum = s.finish();
        assert_eq!(sum.segments, 4);
        assert_eq!(sum.media_s, 4.0);
        assert_eq!(sum.rebuffer_count, 1);
        assert!((sum.startup_s - 0.11).abs() < 1e-9);
        assert!((sum.session_s - (sum.startup_s + sum.media_s + sum.rebuffer_s)).abs() < 1e-9);
        assert!(sum.rebuffer_s > 0.0);
    }
}
