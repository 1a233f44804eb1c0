//! A channel's segments in memory: the time-shift window of every representation, the
//! segment being produced (its chunks so far), and the periods (one per encoder run).
//!
//! Writers are the per-track reader threads; readers are HTTP handlers, which copy the
//! chunks they have not sent yet under the lock and wait on [`Store::subscribe`] for more.
//! Nothing here touches the disk: a live window of 120 s at 3 rungs is a few tens of MB.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::warn;

use super::fmp4::{self, InitInfo};
use super::Rung;

/// Timing shared by the segmenter, the MPD and the handlers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) segment: Duration,
    pub(crate) chunk: Duration,
    pub(crate) window: Duration,
}

/// One encoder run: segments are numbered on from the previous run's, and the MPD
/// gets a new `Period` starting where this run's first chunk began.
#[derive(Clone, Debug)]
pub(crate) struct Period {
    pub(crate) id: u32,
    /// Seconds from `availabilityStartTime` to the first sample of this run.
    pub(crate) start: f64,
    /// The global number of this run's segment 0.
    pub(crate) start_number: u64,
    /// The init segment and what the MPD says of each representation, in ladder order.
    pub(crate) tracks: Vec<Track>,
}

/// What the store tells the recorder, in the order it happened (per representation).
pub(crate) enum Event {
    /// A new encoder run: its segments are numbered from `start_number`.
    Period {
        id: u32,
        start_number: u64,
        began: SystemTime,
    },
    Init {
        period: u32,
        track: Track,
    },
    /// Bytes of segment `number` of `rep` (the `styp` first when a segment begins);
    /// `end` is the media time, in seconds, at which this chunk's samples end.
    Chunk {
        period: u32,
        rep: String,
        number: u64,
        bytes: Vec<Bytes>,
        end: f64,
    },
    /// The event is over: publish, and answer with the asset's folder (or nothing).
    Finish(mpsc::Sender<Option<PathBuf>>),
}

#[derive(Clone, Debug)]
pub(crate) struct Track {
    pub(crate) rung: Rung,
    pub(crate) info: InitInfo,
    pub(crate) init: Bytes,
}

/// A segment of one representation.
struct Segment {
    number: u64,
    /// `styp`, then `prft`+`moof`+`mdat` per chunk, in order.
    chunks: Vec<Bytes>,
    complete: bool,
}

/// What a handler finds for a segment number.
pub(crate) enum Lookup {
    /// Chunks from `from` on, and whether the segment is finished.
    Ready { chunks: Vec<Bytes>, complete: bool },
    /// The next segment to be produced: worth waiting a moment for.
    Next,
    /// Ahead of the live edge.
    Future,
    /// Before the window (or a representation without segments).
    Gone,
}

#[derive(Default)]
struct Inner {
    /// Wall-clock time of media time 0 of the first run; set by its first chunk.
    availability_start: Option<SystemTime>,
    periods: Vec<Period>,
    /// Representation id → its segments, oldest first.
    segments: HashMap<String, VecDeque<Segment>>,
    /// The highest global segment number any track has started.
    latest: Option<u64>,
}

pub(crate) struct Store {
    pub(crate) timing: Timing,
    inner: Mutex<Inner>,
    /// Bumped on every chunk, init and period change; handlers wait on it.
    changed: watch::Sender<u64>,
    /// `record = true`: every period, init and chunk also goes to the recorder
    /// ([`super::record`]); taken when the recording is finished.
    recorder: Mutex<Option<mpsc::Sender<Event>>>,
}

impl Store {
    pub(crate) fn new(timing: Timing) -> Store {
        Store {
            timing,
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            recorder: Mutex::new(None),
        }
    }

    /// Sends every period, init and chunk from now on to `recorder` too.
    pub(crate) fn record_to(&self, recorder: mpsc::Sender<Event>) {
        *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(recorder);
    }

    fn record(&self, event: impl FnOnce() -> Event) {
        let recorder = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = recorder.as_ref() {
            // A gone recorder (it failed or finished) just stops getting events.
            let _ = r.send(event());
        }
    }

    /// Ends the recording, if any: the recorder publishes the asset and answers with its
    /// folder (`None`: nothing to publish).
    pub(crate) fn finish_recording(&self) -> Option<mpsc::Receiver<Option<PathBuf>>> {
        let recorder = self
            .recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let (tx, rx) = mpsc::channel();
        recorder.send(Event::Finish(tx)).ok()?;
        Some(rx)
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking reader thread leaves consistent data behind: every update is one push.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a period for a new encoder run whose first chunk has just arrived at `now`.
    /// Returns its id.
    pub(crate) fn begin_period(&self, now: SystemTime) -> u32 {
        let mut inner = self.lock();
        // The first chunk ends `chunk` after the first sample began.
        let began = now.checked_sub(self.timing.chunk).unwrap_or(now);
        let ast = *inner.availability_start.get_or_insert(began);
        let start = began.duration_since(ast).unwrap_or_default().as_secs_f64();
        let start = (start * 1000.0).round() / 1000.0;
        let id = inner.periods.last().map_or(0, |p| p.id + 1);
        let start_number = inner.latest.map_or(0, |n| n + 1);
        inner.periods.push(Period {
            id,
            start,
            start_number,
            tracks: Vec::new(),
        });
        self.record(|| Event::Period {
            id,
            start_number,
            began,
        });
        // Close whatever the previous run left open: its encoder is gone.
        for segments in inner.segments.values_mut() {
            if let Some(last) = segments.back_mut() {
                last.complete = true;
            }
        }
        drop(inner);
        self.notify();
        id
    }

    pub(crate) fn set_init(&self, period: u32, track: Track) {
        let mut inner = self.lock();
        self.record(|| Event::Init {
            period,
            track: track.clone(),
        });
        if let Some(p) = inner.periods.iter_mut().find(|p| p.id == period) {
            p.tracks.retain(|t| t.rung.id != track.rung.id);
            p.tracks.push(track);
        }
        drop(inner);
        self.notify();
    }

    /// Adds one chunk (`moof`+`mdat` bytes) of representation `rep` in `period`.
    /// `decode_time` is the chunk's `tfdt`, in the timescale of `track`.
    pub(crate) fn push_chunk(
        &self,
        period: u32,
        rep: &str,
        track: &InitInfo,
        decode_time: u64,
        chunk: Bytes,
        now: SystemTime,
    ) {
        let seconds = decode_time as f64 / f64::from(track.timescale.max(1));
        // Keyframes sit exactly on segment boundaries; a few ms of slack absorbs rounding
        // of the track timescale (and audio frames that start just before the boundary).
        let local = ((seconds + 0.005) / self.timing.segment.as_secs_f64()).floor() as u64;
        let mut inner = self.lock();
        let Some((start_number, period_start)) = inner
            .periods
            .iter()
            .find(|p| p.id == period)
            .map(|p| (p.start_number, p.start))
        else {
            return;
        };
        let number = start_number + local;
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let inner_ast_secs = inner
            .availability_start
            .and_then(|a| a.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(unix, |d| d.as_secs_f64());
        let prft = fmp4::prft(track.track_id, unix, decode_time);
        let keep = (self.timing.window.as_secs_f64() / self.timing.segment.as_secs_f64()).ceil()
            as u64
            + 2;
        let recorded = |first: bool, prft: &Bytes, chunk: &Bytes| {
            self.record(|| {
                let samples = fmp4::moof_duration(chunk).unwrap_or_else(|| {
                    (self.timing.chunk.as_secs_f64() * f64::from(track.timescale)) as u64
                });
                let mut bytes = Vec::with_capacity(3);
                if first {
                    bytes.push(fmp4::styp());
                }
                bytes.extend([prft.clone(), chunk.clone()]);
                Event::Chunk {
                    period,
                    rep: rep.to_owned(),
                    number,
                    bytes,
                    end: (decode_time + samples) as f64 / f64::from(track.timescale.max(1)),
                }
            })
        };
        let segments = inner.segments.entry(rep.to_owned()).or_default();
        match segments.back_mut() {
            Some(last) if last.number == number => {
                recorded(false, &prft, &chunk);
                last.chunks.extend([prft, chunk]);
            }
            _ => {
                recorded(true, &prft, &chunk);
                if let Some(last) = segments.back_mut() {
                    last.complete = true;
                }
                // A segment's first chunk should arrive one chunk after the MPD's timeline
                // puts its start; an encoder starved of CPU falls behind, and every player's
                // latency grows with it.
                let on_timeline = inner_ast_secs + period_start + seconds;
                let behind = unix - on_timeline - self.timing.chunk.as_secs_f64();
                if behind > self.timing.segment.as_secs_f64() {
                    warn!(
                        rep,
                        number,
                        behind_secs = behind,
                        "live encoder behind real time"
                    );
                }
                segments.push_back(Segment {
                    number,
                    chunks: vec![fmp4::styp(), prft, chunk],
                    complete: false,
                });
                while segments.front().is_some_and(|s| s.number + keep <= number) {
                    segments.pop_front();
                }
            }
        }
        inner.latest = Some(inner.latest.map_or(number, |l| l.max(number)));
        drop(inner);
        self.notify();
    }

    /// Marks the last segment of every representation complete (the encoder stopped).
    pub(crate) fn end_run(&self) {
        let mut inner = self.lock();
        for segments in inner.segments.values_mut() {
            if let Some(last) = segments.back_mut() {
                last.complete = true;
            }
        }
        drop(inner);
        self.notify();
    }

    /// Chunks of segment `number` of `rep`, from the `from`-th on.
    pub(crate) fn lookup(&self, rep: &str, number: u64, from: usize) -> Lookup {
        let inner = self.lock();
        let segments = inner.segments.get(rep);
        if let Some(s) = segments.and_then(|s| s.iter().find(|s| s.number == number)) {
            return Lookup::Ready {
                chunks: s.chunks.get(from..).unwrap_or_default().to_vec(),
                complete: s.complete,
            };
        }
        let newest = segments
            .and_then(|s| s.back())
            .map(|s| s.number)
            .or(inner.latest);
        match newest {
            Some(n) if number == n + 1 => Lookup::Next,
            Some(n) if number > n => Lookup::Future,
            None => Lookup::Future,
            Some(_) => Lookup::Gone,
        }
    }

    /// The init segment of `rep` in `period` (`None`: the latest period).
    pub(crate) fn init(&self, rep: &str, period: Option<u32>) -> Option<Bytes> {
        let inner = self.lock();
        let p = match period {
            Some(id) => inner.periods.iter().find(|p| p.id == id)?,
            None => inner.periods.iter().rev().find(|p| !p.tracks.is_empty())?,
        };
        p.tracks
            .iter()
            .find(|t| t.rung.id == rep)
            .map(|t| t.init.clone())
    }

    /// What the MPD writer needs: the availability start, and the periods that still
    /// have segments in the window (the latest always).
    pub(crate) fn snapshot(&self) -> Option<(SystemTime, Vec<Period>)> {
        let inner = self.lock();
        let ast = inner.availability_start?;
        let oldest = inner
            .segments
            .values()
            .filter_map(|s| s.front().map(|s| s.number))
            .min()
            .unwrap_or(0);
        let periods = inner
            .periods
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                let next = inner.periods.get(i + 1).map(|p| p.start_number);
                !p.tracks.is_empty() && next.is_none_or(|next| next > oldest)
            })
            .map(|(_, p)| p.clone())
            .collect::<Vec<_>>();
        if periods.is_empty() {
            return None;
        }
        Some((ast, periods))
    }

    /// The newest global segment number started, if any.
    pub(crate) fn latest(&self) -> Option<u64> {
        self.lock().latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::TrackKind;

    fn store() -> Store {
        Store::new(Timing {
            segment: Duration::from_secs(2),
            chunk: Duration::from_millis(500),
            window: Duration::from_secs(4),
        })
    }

    fn info() -> InitInfo {
        InitInfo {
            timescale: 1000,
            track_id: 1,
            codecs: "avc1.42C01E".into(),
        }
    }

    fn rung() -> Rung {
        Rung {
            id: "v0".into(),
            kind: TrackKind::Video,
            width: 320,
            height: 180,
            kbps: 300,
        }
    }

    #[test]
    fn chunks_fall_into_segments_by_decode_time_and_old_ones_leave() {
        let s = store();
        let now = SystemTime::now();
        let p = s.begin_period(now);
        for i in 0..20u64 {
            // 0.5 s chunks at timescale 1000
            s.push_chunk(p, "v0", &info(), i * 500, Bytes::from(vec![i as u8]), now);
        }
        assert_eq!(s.latest(), Some(4));
        match s.lookup("v0", 4, 0) {
            Lookup::Ready { chunks, complete } => {
                // styp + (prft, chunk) × 4
                assert_eq!(chunks.len(), 9);
                assert!(!complete);
            }
            _ => panic!("segment 4 should be in progress"),
        }
        assert!(matches!(
            s.lookup("v0", 3, 0),
            Lookup::Ready { complete: true, .. }
        ));
        assert!(matches!(s.lookup("v0", 5, 0), Lookup::Next));
        assert!(matches!(s.lookup("v0", 7, 0), Lookup::Future));
        // window 4 s = 2 segments, + 2 kept for slow readers
        assert!(matches!(s.lookup("v0", 0, 0), Lookup::Gone));
        assert!(matches!(s.lookup("v0", 1, 0), Lookup::Ready { .. }));
    }

    #[test]
    fn a_new_run_numbers_on_and_starts_a_period() {
        let s = store();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let p0 = s.begin_period(t0);
        s.set_init(
            p0,
            Track {
                rung: rung(),
                info: info(),
                init: Bytes::from_static(b"init0"),
            },
        );
        s.push_chunk(p0, "v0", &info(), 2500, Bytes::new(), t0);
        let p1 = s.begin_period(t0 + Duration::from_secs(10));
        s.set_init(
            p1,
            Track {
                rung: rung(),
                info: info(),
                init: Bytes::from_static(b"init1"),
            },
        );
        s.push_chunk(p1, "v0", &info(), 0, Bytes::new(), t0);
        assert!(matches!(
            s.lookup("v0", 1, 0),
            Lookup::Ready { complete: true, .. }
        ));
        assert!(matches!(
            s.lookup("v0", 2, 0),
            Lookup::Ready {
                complete: false,
                ..
            }
        ));
        let (ast, periods) = s.snapshot().unwrap();
        assert_eq!(ast, t0 - Duration::from_millis(500));
        assert_eq!(periods.len(), 2);
        assert_eq!((periods[1].start, periods[1].start_number), (10.0, 2));
        assert_eq!(s.init("v0", None).unwrap(), Bytes::from_static(b"init1"));
        assert_eq!(s.init("v0", Some(0)).unwrap(), Bytes::from_static(b"init0"));
    }
}
