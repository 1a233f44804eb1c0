//! An access log that stays off the request path.
//!
//! A request's end pushes one owned record (moved fields: nothing formatted, no string
//! built) onto a bounded queue under an uncontended mutex; nothing wakes the writer. One
//! writer thread takes the whole queue every `tick` (20 ms by default), formats it into
//! one buffer ([`LogLine`]; a date is formatted once per second, not per line) and writes
//! it with one `write` — nginx's `access_log … buffer=… flush=…`, with the batching and
//! the formatting on another thread. A full queue (the disk cannot keep up) drops the
//! record and counts it ([`AccessLog::dropped`]) rather than slowing a viewer.
//!
//! Log rotation: `mv access.log access.log.1`, then SIGHUP ([`AccessLog::reopen_on_sighup`])
//! or [`AccessLog::reopen`]: the writer reopens the path before it writes the next batch.
//! A failed reopen is logged and the old file kept.
//!
//! Why not a channel: `std::sync::mpsc` (and tokio's) wake a parked receiver on every
//! send — a futex call per request on a 1 KB edge hit that costs ~8 µs of CPU in all; a
//! writer that polls on a timer never parks on the queue, so a push is a lock and a move.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

/// Records waiting for the writer at most: at ~150 bytes a line, 10 MiB of log.
pub const DEFAULT_QUEUE: usize = 1 << 16;
/// How often the writer takes the queue: the most a line waits before it is written.
pub const DEFAULT_TICK: Duration = Duration::from_millis(20);
/// Written out when this much is formatted, within a batch.
const BUFFER: usize = 64 * 1024;
/// How long closing the log or [`AccessLog::reopen`] waits for the writer.
const WAIT: Duration = Duration::from_secs(5);

/// A record the writer can format: one line, newline included, appended to `out`.
pub trait LogLine: Send + 'static {
    fn write_line(&self, out: &mut String, clock: &mut Clock);
}

/// Why the log cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("cannot open access log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the access-log writer thread")]
    Thread(#[source] io::Error),
}

/// Where lines go: a file that can be reopened, or any writer (stderr, tests).
enum Sink {
    File { path: PathBuf, file: File },
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    fn write(&mut self, buf: &mut String) {
        if buf.is_empty() {
            return;
        }
        let out: &mut dyn Write = match self {
            Sink::File { file, .. } => file,
            Sink::Writer(w) => w,
        };
        if let Err(error) = out.write_all(buf.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(%error, "access log write failed; lines lost");
        }
        buf.clear();
    }

    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match open(path) {
                Ok(f) => *file = f,
                Err(e) => tracing::warn!(
                    error = %dashcdn_config::chain(&e),
                    "access log not reopened; still writing to the old file"
                ),
            }
        }
    }
}

fn open(path: &Path) -> Result<File, AccessLogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AccessLogError::Open {
            path: path.to_owned(),
            source,
        })
}

/// What the writer and the handles share.
struct Shared<R> {
    queue: Mutex<Vec<R>>,
    capacity: usize,
    dropped: AtomicU64,
    /// Of `dropped`, how many [`AccessLog::new_drops`] has reported.
    reported: AtomicU64,
    /// Set when the last handle is gone: write what is queued and end.
    closed: AtomicBool,
    /// Reopens asked for and done, and whether the writer has ended.
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    reopens_asked: u64,
    reopens_done: u64,
    finished: bool,
}

impl<R> Shared<R> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (at most [`WAIT`]) until `done` holds of the state.
    fn wait_for(&self, done: impl Fn(&State) -> bool) {
        let state = self.state();
        let _ = self
            .changed
            .wait_timeout_while(state, WAIT, |s| !done(s))
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Alive while any handle is: its drop tells the writer to finish and waits for it.
struct Open<R> {
    shared: Arc<Shared<R>>,
    writer: std::thread::Thread,
}

impl<R> Drop for Open<R> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.writer.unpark();
        self.shared.wait_for(|s| s.finished);
    }
}

/// The request path's handle: cheap to clone (one reference count), never blocks. When
/// the last clone is gone the writer writes what is queued and ends (waited for up to 5 s).
pub struct AccessLog<R> {
    open: Arc<Open<R>>,
}

impl<R> Clone for AccessLog<R> {
    fn clone(&self) -> Self {
        AccessLog {
            open: self.open.clone(),
        }
    }
}

impl<R: LogLine> AccessLog<R> {
    /// What a server's `--access-log FILE` opens: appends to `path` with the default queue
    /// and tick, and reopens it on SIGHUP (call inside the server's tokio runtime; without
    /// a signal handler it warns and runs on).
    pub fn open(path: &Path) -> Result<Self, AccessLogError> {
        let log = Self::to_file(path, DEFAULT_QUEUE, DEFAULT_TICK)?;
        if let Err(e) = log.reopen_on_sighup() {
            tracing::warn!(error = %e, "no SIGHUP handler: the access log is not reopened on rotation");
        }
        Ok(log)
    }

    /// Appends to `path` (created if missing).
    pub fn to_file(path: &Path, queue: usize, tick: Duration) -> Result<Self, AccessLogError> {
        let file = open(path)?;
        let sink = Sink::File {
            path: path.to_owned(),
            file,
        };
        Self::start(sink, queue, tick)
    }

    /// Writes to `w` (e.g. stderr); [`AccessLog::reopen`] does nothing to it.
    pub fn to_writer(
        w: Box<dyn Write + Send>,
        queue: usize,
        tick: Duration,
    ) -> Result<Self, AccessLogError> {
        Self::start(Sink::Writer(w), queue, tick)
    }

    fn start(sink: Sink, queue: usize, tick: Duration) -> Result<Self, AccessLogError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::with_capacity(queue.clamp(1, 1024))),
            capacity: queue.max(1),
            dropped: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_loop(&shared, sink, tick))
                .map_err(AccessLogError::Thread)?
        };
        Ok(AccessLog {
            open: Arc::new(Open {
                shared,
                writer: writer.thread().clone(),
            }),
        })
    }

    /// Queues one record (a lock and a move); drops and counts it if the queue is full.
    pub fn log(&self, record: R) {
        let shared = &self.open.shared;
        let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() < shared.capacity {
            q.push(record);
        } else {
            drop(q);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reopens the file (log rotation) and returns once it is reopened (or after 5 s):
    /// what is logged after goes to the new file, and so do lines still queued.
    pub fn reopen(&self) {
        let asked = self.ask_reopen();
        self.open.shared.wait_for(|s| s.reopens_done >= asked);
    }

    fn ask_reopen(&self) -> u64 {
        let asked = {
            let mut s = self.open.shared.state();
            s.reopens_asked += 1;
            s.reopens_asked
        };
        self.open.writer.unpark();
        asked
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.open.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines dropped since the last call: what a metrics scrape adds to its counter (counted
    /// once however many scrapes run at once).
    pub fn new_drops(&self) -> u64 {
        let shared = &self.open.shared;
        let now = shared.dropped.load(Ordering::Relaxed);
        now.saturating_sub(shared.reported.fetch_max(now, Ordering::Relaxed))
    }

    /// Reopens the log on every SIGHUP while a handle is alive (call inside a tokio
    /// runtime). The signal task does not keep the log open.
    pub fn reopen_on_sighup(&self) -> io::Result<tokio::task::JoinHandle<()>> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let weak: Weak<Open<R>> = Arc::downgrade(&self.open);
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some(open) = weak.upgrade() else { break };
                tracing::info!("SIGHUP: reopening the access log");
                // Not waited for: a runtime worker does not block on the disk.
                AccessLog { open }.ask_reopen();
            }
        }))
    }
}

fn write_loop<R: LogLine>(shared: &Shared<R>, mut sink: Sink, tick: Duration) {
    let mut batch: Vec<R> = Vec::with_capacity(1024);
    let mut out = String::with_capacity(BUFFER + 4096);
    let mut clock = Clock::new();
    loop {
        std::thread::park_timeout(tick);
        let closed = shared.closed.load(Ordering::Acquire);
        // Reopen before taking the queue: a caller of `reopen` finds its later lines in
        // the new file.
        let asked = {
            let s = shared.state();
            (s.reopens_asked > s.reopens_done).then_some(s.reopens_asked)
        };
        if let Some(asked) = asked {
            sink.reopen();
            shared.state().reopens_done = asked;
            shared.changed.notify_all();
        }
        std::mem::swap(
            &mut batch,
            &mut shared.queue.lock().unwrap_or_else(PoisonError::into_inner),
        );
        for r in batch.drain(..) {
            r.write_line(&mut out, &mut clock);
            if out.len() >= BUFFER {
                sink.write(&mut out);
            }
        }
        sink.write(&mut out);
        if closed {
            shared.state().finished = true;
            shared.changed.notify_all();
            return;
        }
    }
}

/// The wall-clock time of an `Instant` (anchored once a minute) and its HTTP date,
/// formatted once per second.
pub struct Clock {
    anchor: (Instant, SystemTime),
    second: u64,
    date: String,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            anchor: (Instant::now(), SystemTime::now()),
            second: u64::MAX,
            date: String::new(),
        }
    }

    /// `at` as an HTTP date (`Tue, 01 Dec 2026 11:20:08 GMT`).
    pub fn date(&mut self, at: Instant) -> &str {
        if self.anchor.0.elapsed() > Duration::from_secs(60) {
            self.anchor = (Instant::now(), SystemTime::now());
        }
        let wall = match at.checked_duration_since(self.anchor.0) {
            Some(d) => self.anchor.1 + d,
            None => self.anchor.1 - self.anchor.0.duration_since(at),
        };
        let second = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.date = httpdate::fmt_http_date(wall);
        }
        &self.date
    }
}

/// Longest request target (or other client-given field) a line holds; longer ones are cut
/// and say how long they were.
pub const MAX_FIELD: usize = 2048;

/// The request target (path and query) as received, copied inline: no allocation up to
/// 128 bytes. Moving the request's `Uri` instead would keep hyper's whole read buffer
/// alive (the `Uri` shares its bytes) until the writer thread drops it, so hyper allocates
/// a fresh buffer and the old one is freed on another thread; with the binary's mimalloc
/// returning freed pages at once that churn cost the edge a fifth of its 1 KB hit rate with
/// the log on (docs/edge-integrity-and-logs.md).
#[derive(Clone, Debug)]
pub struct Target(smallvec::SmallVec<[u8; 128]>);

impl Target {
    pub fn of(uri: &http::Uri) -> Target {
        let path = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        Target(smallvec::SmallVec::from_slice(path.as_bytes()))
    }

    /// For a line: cut at [`MAX_FIELD`] (a parsed `Uri`'s path and query are ASCII).
    pub fn clipped(&self) -> std::borrow::Cow<'_, str> {
        clip(std::str::from_utf8(&self.0).unwrap_or("/"), MAX_FIELD)
    }
}

/// At most `max` bytes of `s` for a log field (on a char boundary, `…` marks the cut), so
/// a 60 KB request target costs a log line, not 60 KB.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    struct Line(u32);
    impl LogLine for Line {
        fn write_line(&self, out: &mut String, _: &mut Clock) {
            let _ = writeln!(out, "GET /seg/{}.m4s 200", self.0);
        }
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_record_reaches_the_file_in_order_and_rotation_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::to_file(&path, DEFAULT_QUEUE, DEFAULT_TICK).unwrap();
        for i in 0..20_000 {
            log.log(Line(i));
        }
        // Rotation: rename, then reopen; earlier lines land in the renamed file.
        let t = Instant::now();
        while lines(&path).len() < 20_000 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        for i in 20_000..20_010 {
            log.log(Line(i));
        }
        assert_eq!(log.dropped(), 0);
        drop(log);
        // The last handle's drop waited for the writer: everything is on disk.
        let old = lines(&rotated);
        assert_eq!(old.len(), 20_000);
        assert_eq!(old[0], "GET /seg/0.m4s 200");
        assert_eq!(old[19_999], "GET /seg/19999.m4s 200");
        let new = lines(&path);
        assert_eq!(new.len(), 10);
        assert_eq!(new[0], "GET /seg/20000.m4s 200");
    }

    #[test]
    fn a_quiet_log_is_written_within_a_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let log = AccessLog::to_file(&path, 16, Duration::from_millis(100)).unwrap();
        log.log(Line(1));
        let t = Instant::now();
        while lines(&path).is_empty() {
            assert!(t.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines(&path), ["GET /seg/1.m4s 200"]);
    }

    /// A writer stuck on a slow disk: the request path neither blocks nor grows memory,
    /// it counts what it drops.
    #[test]
    fn a_stuck_writer_drops_and_counts_instead_of_blocking() {
        struct Stuck(Arc<Mutex<()>>);
        impl Write for Stuck {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                drop(self.0.lock().unwrap());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let log = AccessLog::to_writer(Box::new(Stuck(gate.clone())), 8, Duration::from_millis(1))
            .unwrap();
        log.log(Line(0));
        // The writer takes it and blocks writing it out.
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        for i in 1..=10_000 {
            log.log(Line(i));
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(
            log.dropped(),
            10_000 - 8,
            "only the queue's 8 places are kept"
        );
        assert_eq!(log.new_drops(), 10_000 - 8);
        assert_eq!(log.new_drops(), 0, "reported once");
        drop(held);
    }

    #[test]
    fn the_clock_formats_an_instant_as_its_http_date() {
        let mut clock = Clock::new();
        let now = Instant::now();
        let want = httpdate::fmt_http_date(SystemTime::now());
        assert_eq!(&clock.date(now)[..16], &want[..16], "same day");
        let earlier = now - Duration::from_secs(86_400);
        let want = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(86_400));
        assert_eq!(&clock.date(earlier)[..16], &want[..16], "the day before");
    }

    #[test]
    fn a_target_is_the_path_and_query_cut_at_max_field() {
        let t = Target::of(&"http://h/v/1.m4s?a=b".parse().unwrap());
        assert_eq!(t.clipped(), "/v/1.m4s?a=b");
        let long = format!("/v?t={}", "x".repeat(5000));
        let t = Target::of(&long.parse().unwrap());
        assert!(t.clipped().ends_with("…(5005 bytes)"), "{}", t.clipped());
        assert!(t.clipped().len() < MAX_FIELD + 20);
    }

    #[test]
    fn clip_keeps_logs_short_on_char_boundaries() {
        assert_eq!(clip("/a", 10), "/a");
        let long = format!("/{}", "é".repeat(30_000));
        let c = clip(&long, 100);
        assert!(c.len() < 130, "{}", c.len());
        assert!(c.ends_with("…(60001 bytes)"), "{c}");
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let e =
            AccessLog::<Line>::to_file(Path::new("/nonexistent-dir/access.log"), 1, DEFAULT_TICK)
                .err()
                .unwrap();
        assert_eq!(
            dashcdn_config::chain(&e),
            "cannot open access log /nonexistent-dir/access.log: No such file or directory (os error 2)"
        );
    }
}
