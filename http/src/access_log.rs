//! An access log that stays off the request path.
//!
//! The request path hands an owned record to a bounded channel (`try_send`: it never
//! blocks and never formats); one writer thread formats the records (`Display`) into a
//! 64 KiB buffer and writes it out when the buffer fills or, when traffic is light, at most
//! `flush_every` after a record arrived — nginx's `access_log … buffer=64k flush=1s`. A
//! full channel (the disk cannot keep up) drops records and counts them in
//! [`AccessLogger::dropped`] rather than slowing viewers.
//!
//! Log rotation: `mv access.log access.log.1`, then SIGHUP (or [`AccessLogger::reopen`]):
//! the writer flushes into the renamed file and reopens the path. A failed reopen is
//! logged and the old file kept.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records waiting for the writer: at ~150 bytes a line, 16 MiB of log at most.
pub const DEFAULT_QUEUE: usize = 1 << 16;
/// Written out when this much is buffered.
const BUFFER: usize = 64 * 1024;

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

enum Msg<R> {
    Record(R),
    Reopen,
}

/// Where lines go: a file that can be reopened, or any writer (stderr, tests).
enum Sink {
    File { path: PathBuf, file: File },
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::File { file, .. } => file,
            Sink::Writer(w) => w,
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

/// The writer thread; dropping it (after every [`AccessLogger`]) flushes what is queued
/// and joins the thread.
pub struct AccessLog<R> {
    logger: Option<AccessLogger<R>>,
    thread: Option<JoinHandle<()>>,
}

/// The request path's side: cheap to clone, never blocks.
pub struct AccessLogger<R> {
    tx: SyncSender<Msg<R>>,
    dropped: Arc<AtomicU64>,
}

impl<R> Clone for AccessLogger<R> {
    fn clone(&self) -> Self {
        AccessLogger {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl<R: fmt::Display + Send + 'static> AccessLog<R> {
    /// Appends to `path` (created if missing).
    pub fn to_file(
        path: &Path,
        queue: usize,
        flush_every: Duration,
    ) -> Result<Self, AccessLogError> {
        let file = open(path)?;
        Self::start(
            Sink::File {
                path: path.to_owned(),
                file,
            },
            queue,
            flush_every,
        )
    }

    /// Writes to `w` (e.g. stderr); [`AccessLogger::reopen`] only flushes.
    pub fn to_writer(
        w: Box<dyn Write + Send>,
        queue: usize,
        flush_every: Duration,
    ) -> Result<Self, AccessLogError> {
        Self::start(Sink::Writer(w), queue, flush_every)
    }

    fn start(sink: Sink, queue: usize, flush_every: Duration) -> Result<Self, AccessLogError> {
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, sink, flush_every))
            .map_err(AccessLogError::Thread)?;
        Ok(AccessLog {
            logger: Some(AccessLogger {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            }),
            thread: Some(thread),
        })
    }

    /// A handle for request handlers.
    pub fn logger(&self) -> AccessLogger<R> {
        self.logger.clone().expect("present until drop")
    }
}

impl<R> Drop for AccessLog<R> {
    fn drop(&mut self) {
        // The thread ends when the last sender is gone; loggers still held elsewhere keep
        // it running, so only join when ours was the last (never hang a shutdown).
        let last = self
            .logger
            .take()
            .is_some_and(|l| Arc::strong_count(&l.dropped) == 1);
        if let Some(t) = self.thread.take() {
            if last {
                let _ = t.join();
            }
        }
    }
}

impl<R> AccessLogger<R> {
    /// Queues one record; drops (and counts) it if the writer is behind.
    pub fn log(&self, record: R) {
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Flushes and reopens the file (log rotation). Blocks only if the queue is full.
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl<R: Send + 'static> AccessLogger<R> {
    /// Reopens the log on every SIGHUP until the runtime stops (call inside a tokio runtime).
    pub fn reopen_on_sighup(&self) -> io::Result<tokio::task::JoinHandle<()>> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let logger = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reopening the access log");
                let l = logger.clone();
                // `send` may wait for queue space: not on a runtime worker.
                let _ = tokio::task::spawn_blocking(move || l.reopen()).await;
            }
        }))
    }
}

fn write_loop<R: fmt::Display>(rx: mpsc::Receiver<Msg<R>>, mut sink: Sink, flush_every: Duration) {
    let mut buf = String::with_capacity(BUFFER + 4096);
    // When the oldest unwritten line arrived.
    let mut pending_since: Option<Instant> = None;
    let write_out = |buf: &mut String, sink: &mut Sink| {
        if buf.is_empty() {
            return;
        }
        if let Err(e) = sink
            .out()
            .write_all(buf.as_bytes())
            .and_then(|()| sink.out().flush())
        {
            tracing::warn!(error = %e, "access log write failed; lines lost");
        }
        buf.clear();
    };
    loop {
        let wait = match pending_since {
            None => Duration::from_secs(3600),
            Some(t) => flush_every.saturating_sub(t.elapsed()),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Record(r)) => {
                let _ = writeln!(buf, "{r}");
                let since = *pending_since.get_or_insert_with(Instant::now);
                // A steady stream never times out: flush by age here too.
                if buf.len() >= BUFFER || since.elapsed() >= flush_every {
                    write_out(&mut buf, &mut sink);
                    pending_since = None;
                }
            }
            Ok(Msg::Reopen) => {
                write_out(&mut buf, &mut sink);
                pending_since = None;
                if let Sink::File { path, file } = &mut sink {
                    match open(path) {
                        Ok(f) => *file = f,
                        Err(e) => tracing::warn!(
                            error = %dashcdn_config::chain(&e),
                            "access log not reopened; still writing to the old file"
                        ),
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                write_out(&mut buf, &mut sink);
                pending_since = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                write_out(&mut buf, &mut sink);
                return;
            }
        }
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
    use std::sync::Mutex;

    struct Line(u32);
    impl fmt::Display for Line {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "GET /seg/{}.m4s 200", self.0)
        }
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_record_reaches_the_file_in_order_and_rotation_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::to_file(&path, DEFAULT_QUEUE, Duration::from_millis(50)).unwrap();
        let l = log.logger();
        for i in 0..20_000 {
            l.log(Line(i));
        }
        // Rotation: rename, then reopen; earlier lines land in the renamed file.
        let rotated = dir.path().join("access.log.1");
        // Wait until the first batch is on disk so the rename splits the stream.
        let t = Instant::now();
        while lines(&path).len() < 20_000 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&path, &rotated).unwrap();
        l.reopen();
        for i in 20_000..20_010 {
            l.log(Line(i));
        }
        assert_eq!(l.dropped(), 0);
        drop(l);
        drop(log);
        let old = lines(&rotated);
        assert_eq!(old.len(), 20_000);
        assert_eq!(old[0], "GET /seg/0.m4s 200");
        assert_eq!(old[19_999], "GET /seg/19999.m4s 200");
        let new = lines(&path);
        assert_eq!(new.len(), 10);
        assert_eq!(new[0], "GET /seg/20000.m4s 200");
    }

    #[test]
    fn a_quiet_log_is_flushed_within_flush_every() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let log = AccessLog::to_file(&path, 16, Duration::from_millis(100)).unwrap();
        log.logger().log(Line(1));
        let t = Instant::now();
        while lines(&path).is_empty() {
            assert!(t.elapsed() < Duration::from_secs(5), "never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
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
        let l = log.logger();
        l.log(Line(0));
        // The writer takes it and blocks writing it out (flush after 1 ms).
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        for i in 1..=10_000 {
            l.log(Line(i));
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(
            l.dropped(),
            10_000 - 8,
            "only the queue's 8 places are kept"
        );
        drop(held);
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
        let e = AccessLog::<Line>::to_file(
            Path::new("/nonexistent-dir/access.log"),
            1,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert_eq!(
            dashcdn_config::chain(&e),
            "cannot open access log /nonexistent-dir/access.log: No such file or directory (os error 2)"
        );
    }
}
