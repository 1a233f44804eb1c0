//! The access log written to a file (`--access-log FILE`), off the request path: a
//! request's drop formats one line and hands it to a bounded channel; one writer thread
//! does the I/O, flushing whenever it has caught up. A full channel drops the line (and
//! counts it) rather than slowing a viewer. SIGHUP reopens the file, so logrotate can
//! move it away (`postrotate kill -HUP`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use tracing::warn;

/// Lines waiting for the writer at most; beyond, lines are dropped.
const QUEUE: usize = 65_536;

enum Msg {
    Line(String),
    Reopen,
}

/// Where request drops send their lines. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AccessLog {
    tx: SyncSender<Msg>,
    /// Lines dropped because the writer fell behind.
    pub(crate) dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens (appends to) `path` and starts the writer thread and the SIGHUP listener.
    pub(crate) fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = open(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("edge-access-log".into())
            .spawn(move || write_lines(&path, file, rx))?;
        let log = AccessLog {
            tx,
            dropped: Arc::default(),
        };
        let hup = log.tx.clone();
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    if hup.send(Msg::Reopen).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(log)
    }

    pub(crate) fn write(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn open(path: &Path) -> std::io::Result<BufWriter<File>> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 << 10, file))
}

fn write_lines(path: &Path, mut out: BufWriter<File>, rx: Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    if let Err(error) = out.write_all(line.as_bytes()) {
                        warn!(path = %path.display(), %error, "cannot write the access log");
                    }
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    match open(path) {
                        Ok(f) => out = f,
                        Err(error) => {
                            warn!(path = %path.display(), %error, "cannot reopen the access log; keeping the old file")
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        // Caught up: flush, so a tail -f sees lines within one request's time.
        let _ = out.flush();
    }
    let _ = out.flush();
}
