//! The access log written to a file (`--access-log FILE`), off the request path.
//!
//! A request's end pushes one small [`Record`] (moved fields: no formatting, no string
//! built, no clock read beyond the one that times the request) onto a bounded queue under
//! an uncontended mutex; nothing wakes the writer. One writer thread takes the whole
//! queue every [`TICK`], formats it into one buffer (the date is formatted once per
//! second, not per line) and writes it with one `write` — nginx's
//! `access_log … buffer=… flush=…`, with the batching and formatting on another thread.
//! A full queue (the disk cannot keep up) drops the record and counts it rather than
//! slowing a viewer. SIGHUP reopens the file, so logrotate can move it away
//! (`postrotate kill -HUP`).
//!
//! Why not a channel: `std::sync::mpsc` (and tokio's) wake a parked receiver on every
//! send — a futex call per request on a 1 KB hit that costs ~8 µs of CPU in all; a writer
//! that polls on a timer never parks on the queue, so a push is a lock and a move.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tracing::warn;

/// Records waiting for the writer at most; beyond, records are dropped.
const QUEUE: usize = 65_536;
/// How often the writer takes the queue: the most a line waits before it is written.
const TICK: Duration = Duration::from_millis(20);
/// Longest request target written; longer ones are cut (and say how long they were).
const MAX_TARGET: usize = 2048;

/// One request, as the request path hands it over.
pub(crate) struct Record {
    /// When the last byte went (or the viewer left).
    pub at: Instant,
    pub peer: SocketAddr,
    pub method: http::Method,
    pub target: Target,
    pub status: u16,
    pub cache: &'static str,
    pub bytes: u64,
    pub complete: bool,
    /// Time to the response head and to the end, in µs.
    pub head_us: u64,
    pub total_us: u64,
    pub upstream: Option<String>,
}

/// The request target (path and query) as received, copied inline: no allocation up to
/// 128 bytes. Moving the request's `Uri` instead would keep hyper's whole read buffer
/// alive (the `Uri` shares its bytes) until the writer thread drops it, so hyper allocates
/// a fresh buffer and the old one is freed on another thread; with the binary's mimalloc
/// returning freed pages at once that churn cost a fifth of the 1 KB hit rate with the
/// log on (docs/edge-integrity-and-logs.md).
pub(crate) type Target = smallvec::SmallVec<[u8; 128]>;

/// [`Target`] of a request URI.
pub(crate) fn target(uri: &http::Uri) -> Target {
    let path = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    Target::from_slice(path.as_bytes())
}

struct Inner {
    queue: Mutex<Vec<Record>>,
    /// Records dropped because the writer fell behind.
    dropped: AtomicU64,
    reopen: AtomicBool,
    closed: AtomicBool,
}

/// The request path's handle. Cheap to clone; when the last clone is gone the writer
/// writes what is queued and ends.
#[derive(Clone)]
pub(crate) struct AccessLog {
    inner: Arc<Inner>,
    _open: Arc<Open>,
}

/// Alive while any handle is: its drop tells the writer to finish.
struct Open {
    inner: Arc<Inner>,
    writer: std::thread::Thread,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.writer.unpark();
    }
}

impl AccessLog {
    /// Opens (appends to) `path` and starts the writer thread and the SIGHUP listener
    /// (call inside a tokio runtime).
    pub(crate) fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = open(path)?;
        let inner = Arc::new(Inner {
            queue: Mutex::new(Vec::with_capacity(1024)),
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let writer = {
            let inner = inner.clone();
            let path = path.to_owned();
            std::thread::Builder::new()
                .name("edge-access-log".into())
                .spawn(move || write_loop(&inner, path, file))?
        };
        let log = AccessLog {
            _open: Arc::new(Open {
                inner: inner.clone(),
                writer: writer.thread().clone(),
            }),
            inner,
        };
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            let inner = Arc::downgrade(&log.inner);
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    let Some(inner) = inner.upgrade() else { break };
                    inner.reopen.store(true, Ordering::Release);
                }
            });
        }
        Ok(log)
    }

    /// Queues one record (a lock and a move); drops and counts it if the queue is full.
    pub(crate) fn write(&self, record: Record) {
        let mut q = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if q.len() < QUEUE {
            q.push(record);
        } else {
            drop(q);
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the writer could not keep up.
    #[allow(dead_code)]
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Wall-clock time of an `Instant` (anchored once a minute) and its HTTP date, formatted
/// once per second.
struct Clock {
    anchor: (Instant, SystemTime),
    second: u64,
    date: String,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            anchor: (Instant::now(), SystemTime::now()),
            second: u64::MAX,
            date: String::new(),
        }
    }

    fn date(&mut self, at: Instant) -> &str {
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

/// One line: `date peer method target status cache bytes complete|cut head_ms total_ms
/// upstream`.
fn format(out: &mut String, clock: &mut Clock, r: &Record) {
    // A parsed `Uri`'s path and query are ASCII.
    let target = std::str::from_utf8(&r.target).unwrap_or("/");
    let target = dashcdn_http::access_log::clip(target, MAX_TARGET);
    let _ = writeln!(
        out,
        "{} {} {} {} {} {} {} {} {}.{:03} {}.{:03} {}",
        clock.date(r.at),
        r.peer,
        r.method,
        target,
        r.status,
        r.cache,
        r.bytes,
        if r.complete { "complete" } else { "cut" },
        r.head_us / 1000,
        r.head_us % 1000,
        r.total_us / 1000,
        r.total_us % 1000,
        r.upstream.as_deref().unwrap_or("-"),
    );
}

fn write_loop(inner: &Inner, path: PathBuf, mut file: File) {
    let mut batch: Vec<Record> = Vec::with_capacity(1024);
    let mut out = String::with_capacity(64 << 10);
    let mut clock = Clock::new();
    loop {
        std::thread::park_timeout(TICK);
        let closed = inner.closed.load(Ordering::Acquire);
        std::mem::swap(
            &mut batch,
            &mut inner.queue.lock().unwrap_or_else(PoisonError::into_inner),
        );
        for r in batch.drain(..) {
            format(&mut out, &mut clock, &r);
        }
        if !out.is_empty() {
            if let Err(error) = file.write_all(out.as_bytes()) {
                warn!(path = %path.display(), %error, "cannot write the access log");
            }
            out.clear();
        }
        if inner.reopen.swap(false, Ordering::AcqRel) {
            match open(&path) {
                Ok(f) => file = f,
                Err(error) => {
                    warn!(path = %path.display(), %error, "cannot reopen the access log; keeping the old file")
                }
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_and_a_clipped_target() {
        let mut clock = Clock::new();
        let mut out = String::new();
        let r = Record {
            at: Instant::now(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            method: http::Method::GET,
            target: target(&format!("/v0/1.m4s?t={}", "x".repeat(5000)).parse().unwrap()),
            status: 200,
            cache: "HIT",
            bytes: 1000,
            complete: true,
            head_us: 1_234,
            total_us: 56_007,
            upstream: None,
        };
        format(&mut out, &mut clock, &r);
        let date = httpdate::fmt_http_date(SystemTime::now());
        assert!(out.starts_with(&date[..16]), "{out}");
        assert!(out.contains(" 127.0.0.1:4000 GET /v0/1.m4s?t=xx"), "{out}");
        assert!(
            out.ends_with("(5012 bytes) 200 HIT 1000 complete 1.234 56.007 -\n"),
            "{out}"
        );
        assert!(out.len() < MAX_TARGET + 200, "{}", out.len());
    }
}
