//! `--log`: JSON Lines written by a thread of their own.
//!
//! Sessions run on the async workers; a file write (or a slow pipe) must not stall them,
//! and a std mutex held across a write would block every other client of `--clients N`.
//! So a line is handed to a writer thread over a channel (never blocks), and
//! [`LogSink::flush`] waits for the thread asynchronously and reports its first error.

use std::io::Write;
use std::sync::mpsc;

use tokio::sync::oneshot;

enum Msg {
    Line(String),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// Where JSON Lines go; clones share one writer (the clients of `--clients N`).
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Msg>,
}

impl LogSink {
    /// Starts the writer thread over `w`; it ends when the last clone is dropped.
    pub fn new(mut w: Box<dyn Write + Send>) -> LogSink {
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("player-log".into())
            .spawn(move || {
                // The first error is kept and reported at every flush after it.
                let mut failed: Option<String> = None;
                for m in rx {
                    match m {
                        Msg::Line(l) => {
                            if failed.is_none() {
                                if let Err(e) = writeln!(w, "{l}") {
                                    failed = Some(e.to_string());
                                }
                            }
                        }
                        Msg::Flush(done) => {
                            if failed.is_none() {
                                if let Err(e) = w.flush() {
                                    failed = Some(e.to_string());
                                }
                            }
                            let _ = done.send(failed.clone().map_or(Ok(()), Err));
                        }
                    }
                }
                let _ = w.flush();
            })
            .expect("spawn the log writer thread");
        LogSink { tx }
    }

    /// Queues one line (without its newline).
    pub(crate) fn line(&self, line: String) {
        // The thread only ends when every sender is gone, so this cannot fail.
        let _ = self.tx.send(Msg::Line(line));
    }

    /// Waits until every line queued so far is written and flushed.
    pub async fn flush(&self) -> std::io::Result<()> {
        let (done, wait) = oneshot::channel();
        let _ = self.tx.send(Msg::Flush(done));
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::other("the log writer thread ended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Vec<u8>>>);
    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn lines_arrive_in_order_by_flush() {
        let mem = Mem::default();
        let sink = LogSink::new(Box::new(mem.clone()));
        let other = sink.clone();
        sink.line("a".into());
        other.line("b".into());
        sink.flush().await.unwrap();
        assert_eq!(&*mem.0.lock().unwrap(), b"a\nb\n");
    }

    #[tokio::test]
    async fn a_write_error_is_reported_at_flush() {
        let sink = LogSink::new(Box::new(Full));
        sink.line("a".into());
        let e = sink.flush().await.unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
    }
}
