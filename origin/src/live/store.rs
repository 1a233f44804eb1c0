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
    /// A new encoder run (or the run in progress, for a recording started during it):
    /// its segments are numbered from `start_number`; the recording keeps those from
    /// `first` on, `began` is when segment `first` began.
    Period {
        id: u32,
        start_number: u64,
        first: u64,
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

/// One recording: the recorder thread ([`super::record`]) and the segment numbers it
/// keeps, `[from, until)`.
struct Recorder {
    id: u64,
    tx: mpsc::Sender<Event>,
    from: u64,
    /// Set by a stop: the recording ends where segment `until` begins, once every
    /// representation has reached it (so every recorded segment is whole).
    until: Option<u64>,
    /// Who waits for the published asset of a stop.
    done: Option<mpsc::Sender<Option<PathBuf>>>,
}

impl Recorder {
    fn keeps(&self, number: u64) -> bool {
        number >= self.from && self.until.is_none_or(|u| number < u)
    }

    /// Publishes: the recorder thread writes the MPD and renames the folder, then answers
    /// on `done` (or the returned receiver).
    fn finish(mut self) -> mpsc::Receiver<Option<PathBuf>> {
        let (tx, rx) = mpsc::channel();
        let reply = self.done.take().unwrap_or(tx);
        let _ = self.tx.send(Event::Finish(reply));
        rx
    }
}

/// Finishes (publishes) and removes the recorders `which` picks.
fn finish_where(recorders: &mut Vec<Recorder>, which: impl Fn(&Recorder) -> bool) {
    let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(recorders).into_iter().partition(which);
    *recorders = keep;
    for r in done {
        drop(r.finish());
    }
}

/// Why a recording cannot be started or stopped now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordState {
    /// Start: a recording is running already (from this segment on).
    Recording(u64),
    /// Stop: nothing is being recorded.
    NotRecording,
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
    /// Recordings: every period, init and chunk (of the segments it keeps) also goes to
    /// each recorder ([`super::record`]). At most one runs without an end (`until`);
    /// a stopped one stays until its last segment is whole.
    recorders: Mutex<Vec<Recorder>>,
    next_recorder: std::sync::atomic::AtomicU64,
}

impl Store {
    pub(crate) fn new(timing: Timing) -> Store {
        Store {
            timing,
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            recorders: Mutex::new(Vec::new()),
            next_recorder: Default::default(),
        }
    }

    fn recorders(&self) -> std::sync::MutexGuard<'_, Vec<Recorder>> {
        self.recorders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records from the next segment on into `recorder` (the channel's start, or an
    /// admin call while it runs: then the recording begins with the next segment, which
    /// every representation starts with a keyframe). Returns the first segment number.
    pub(crate) fn start_recording(
        &self,
        recorder: mpsc::Sender<Event>,
    ) -> Result<u64, RecordState> {
        let inner = self.lock();
        let mut recorders = self.recorders();
        if let Some(r) = recorders.iter().find(|r| r.until.is_none()) {
            return Err(RecordState::Recording(r.from));
        }
        let from = inner.latest.map_or(0, |n| n + 1);
        recorders.push(self.open_recorder(&inner, recorder, from));
        Ok(from)
    }

    /// A recorder keeping segments from `from` on; it is told the run in progress (its
    /// period and init segments), which it would otherwise never hear of.
    fn open_recorder(&self, inner: &Inner, tx: mpsc::Sender<Event>, from: u64) -> Recorder {
        if let Some(p) = inner.periods.last() {
            let offset = self.timing.segment * from.saturating_sub(p.start_number) as u32;
            let began = inner.availability_start.map_or(SystemTime::now(), |ast| {
                ast + Duration::from_secs_f64(p.start) + offset
            });
            let _ = tx.send(Event::Period {
                id: p.id,
                start_number: p.start_number,
                first: from.max(p.start_number),
                began,
            });
            for track in &p.tracks {
                let _ = tx.send(Event::Init {
                    period: p.id,
                    track: track.clone(),
                });
            }
        }
        Recorder {
            id: self
                .next_recorder
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tx,
            from,
            until: None,
            done: None,
        }
    }

    /// Stops the running recording where the next segment begins: the recorder publishes
    /// once every representation has finished the segment in progress (or the encoder
    /// stops), and answers on the returned receiver with the asset's folder (`None`:
    /// nothing was recorded). Returns the recorder's id too, for [`Store::finish_now`].
    /// With `next`, that recorder takes over from the same segment boundary (a split);
    /// its first segment number is returned.
    #[allow(clippy::type_complexity)]
    pub(crate) fn stop_recording(
        &self,
        next: Option<mpsc::Sender<Event>>,
    ) -> Result<(u64, mpsc::Receiver<Option<PathBuf>>, Option<u64>), RecordState> {
        let inner = self.lock();
        let mut recorders = self.recorders();
        let Some(r) = recorders.iter_mut().find(|r| r.until.is_none()) else {
            return Err(RecordState::NotRecording);
        };
        let (tx, rx) = mpsc::channel();
        let until = inner.latest.map_or(0, |n| n + 1).max(r.from);
        r.until = Some(until);
        r.done = Some(tx);
        let id = r.id;
        let next_from = next.map(|next| {
            recorders.push(self.open_recorder(&inner, next, until));
            until
        });
        self.finish_whole(&inner, &mut recorders);
        Ok((id, rx, next_from))
    }

    /// Whether a recording without an end is running, and from which segment.
    pub(crate) fn recording(&self) -> Option<u64> {
        self.recorders()
            .iter()
            .find(|r| r.until.is_none())
            .map(|r| r.from)
    }

    /// Finishes the stopped recordings whose last segment every representation is past.
    fn finish_whole(&self, inner: &Inner, recorders: &mut Vec<Recorder>) {
        let past = |until: u64| {
            inner
                .segments
                .values()
                .all(|s| s.back().is_none_or(|s| s.number >= until))
        };
        finish_where(recorders, |r| r.until.is_some_and(past));
    }

    /// Finishes recorder `id` at once if it still runs (a stop that waited too long).
    pub(crate) fn finish_now(&self, id: u64) {
        finish_where(&mut self.recorders(), |r| r.id == id);
    }

    /// Ends every recording now (the channel stops): each recorder publishes its asset;
    /// the receivers answer with the folders (`None`: nothing to publish). A stop waiting
    /// at a segment boundary gets its answer too, and is not among the receivers.
    pub(crate) fn finish_recording(&self) -> Vec<mpsc::Receiver<Option<PathBuf>>> {
        let mut recorders = self.recorders();
        recorders
            .drain(..)
            .filter_map(|r| {
                let waited = r.done.is_some();
                let rx = r.finish();
                (!waited).then_some(rx)
            })
            .collect()
    }

    /// Sends `event` to every recorder that keeps segment `number` (`None`: every one).
    fn record(&self, number: Option<u64>, event: impl Fn() -> Event) {
        for r in self.recorders().iter() {
            if number.is_none_or(|n| r.keeps(n)) {
                // A gone recorder (it failed) just stops getting events.
                let _ = r.tx.send(event());
            }
        }
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
        // A stop waiting for its segment to be whole: the run that had it is over.
        finish_where(&mut self.recorders(), |r| r.until.is_some());
        self.record(None, || Event::Period {
            id,
            start_number,
            first: start_number,
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
        self.record(None, || Event::Init {
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
            self.record(Some(number), || {
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
        self.finish_whole(&inner, &mut self.recorders());
        drop(inner);
        self.notify();
    }

    /// Marks the last segment of every representation complete (the encoder stopped);
    /// a stopped recording waiting for its last segment is finished.
    pub(crate) fn end_run(&self) {
        let mut inner = self.lock();
        for segments in inner.segments.values_mut() {
            if let Some(last) = segments.back_mut() {
                last.complete = true;
            }
        }
        finish_where(&mut self.recorders(), |r| r.until.is_some());
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

    /// What a recorder was sent: (kind, number) per event; `Finish` ends the list.
    fn events(rx: &mpsc::Receiver<Event>) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(match e {
                Event::Period { first, .. } => ("period", first),
                Event::Init { .. } => ("init", 0),
                Event::Chunk { number, .. } => ("chunk", number),
                Event::Finish(_) => ("finish", 0),
            });
        }
        out
    }

    #[test]
    fn a_recording_started_and_split_while_running_keeps_whole_segments() {
        let s = store();
        let now = SystemTime::now();
        let p = s.begin_period(now);
        s.set_init(
            p,
            Track {
                rung: rung(),
                info: info(),
                init: Bytes::from_static(b"init"),
            },
        );
        let audio = InitInfo {
            timescale: 1000,
            track_id: 2,
            codecs: "opus".into(),
        };
        // v0 and a0 in segment 1 (chunks 0.5 s apart), v0 a chunk ahead.
        let push = |rep: &str, ms: u64| {
            let info = if rep == "v0" { info() } else { audio.clone() };
            s.push_chunk(p, rep, &info, ms, Bytes::from_static(b"c"), now)
        };
        for ms in [0, 500, 1000, 1500, 2000, 2500] {
            push("v0", ms);
            push("a0", ms);
        }
        push("v0", 3000);
        assert_eq!(s.recording(), None);
        let (tx, rx) = mpsc::channel();
        assert_eq!(s.start_recording(tx), Ok(2), "from the next segment on");
        let (tx2, _rx2) = mpsc::channel();
        assert_eq!(s.start_recording(tx2), Err(RecordState::Recording(2)));
        assert_eq!(s.recording(), Some(2));
        push("a0", 3000);
        push("v0", 3500);
        push("v0", 4000); // segment 2 begins for v0
                          // Split: segment 2 is in progress for v0 and not yet for a0.
        let (tx3, rx3) = mpsc::channel();
        let (_, published, next) = s.stop_recording(Some(tx3)).unwrap();
        assert_eq!(next, Some(3));
        push("a0", 3500);
        push("a0", 4000); // a0 reaches segment 2
        push("v0", 6000); // v0 reaches 3: a0 has not, the first recording goes on
        assert!(published.try_recv().is_err());
        push("a0", 4500);
        push("a0", 6000); // both past segment 2: the first recording is finished
        let first = events(&rx);
        assert_eq!(first[0], ("period", 2));
        assert_eq!(first[1], ("init", 0));
        let chunks: Vec<_> = first.iter().filter(|e| e.0 == "chunk").collect();
        // v0 4000, a0 4000 and 4500: segment 2 whole, nothing of segment 1 (before the
        // start) or 3 (after the split).
        assert_eq!(chunks.len(), 3, "{first:?}");
        assert!(chunks.iter().all(|c| c.1 == 2), "{first:?}");
        assert_eq!(first.last(), Some(&("finish", 0)));
        let second = events(&rx3);
        assert_eq!(second[0], ("period", 3));
        assert!(second[2..].iter().all(|e| *e == ("chunk", 3)), "{second:?}");
        assert_eq!(second.len(), 4, "{second:?}");
        assert_eq!(s.recording(), Some(3));
        // A stop with nothing after it: not recording any more.
        let _ = s.stop_recording(None).unwrap();
        s.end_run();
        assert_eq!(s.recording(), None);
        assert_eq!(
            s.stop_recording(None).unwrap_err(),
            RecordState::NotRecording
        );
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
