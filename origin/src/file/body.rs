//! Response bodies read from a library file: read whole in the blocking-pool trip that
//! opened the file, or streamed when over [`BUFFER_LIMIT`].
//!
//! A media segment is a few MB, and a range reads only its slice, so in practice every
//! segment is read in one go — as long as the bytes of all buffered bodies still being
//! sent stay within a [`Budget`] (256 MiB by default). Beyond it a response streams from
//! the file in 256 KiB pieces instead, so hundreds of slow readers of 2 MB segments hold
//! a few hundred KiB each rather than their whole segment (issue 12 measured 505 MiB of
//! RSS for 600 of them). A buffered body is handed to hyper in 512 KiB slices: hyper
//! polls for the next slice only when it has written the last, so the budget is given
//! back when the body is (nearly) sent, not when hyper took it.

use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Responses up to this size are read into memory in one go; larger ones are streamed
/// in `STREAM_CHUNK` pieces so a huge file never sits in memory whole.
pub(super) const BUFFER_LIMIT: u64 = 8 * 1024 * 1024;
const STREAM_CHUNK: usize = 256 * 1024;
/// Bytes of buffered response bodies the origin holds at once, by default.
pub(super) const BUFFERED_BYTES_BUDGET: u64 = 256 * 1024 * 1024;
/// A buffered body is handed to hyper in slices of this size (zero-copy `Bytes` views).
const SEND_SLICE: usize = 512 * 1024;

/// The bytes of buffered bodies being sent, against a limit.
#[derive(Debug)]
pub(super) struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// A lease on `n` bytes, if they fit.
    fn try_take(self: &Arc<Self>, n: u64) -> Option<Lease> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limit).then_some(used + n)
            })
            .ok()?;
        Some(Lease {
            budget: Arc::clone(self),
            n,
        })
    }
}

/// `n` bytes of a [`Budget`], given back on drop.
#[derive(Debug)]
pub(super) struct Lease {
    budget: Arc<Budget>,
    n: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// The body of a response for a file too big for the small-file cache, read in the
/// blocking pool as far as it is going to be.
pub(super) enum PreparedBody {
    Empty,
    Bytes(Bytes, Lease),
    /// Positioned at the first byte to send; `len` bytes to go.
    Stream {
        file: std::fs::File,
        len: u64,
    },
}

impl PreparedBody {
    /// `len` bytes of `file`, freshly opened, from `start`: read now if they fit in
    /// [`BUFFER_LIMIT`] and in `budget`, else left to stream.
    pub(super) fn read(
        mut file: std::fs::File,
        start: u64,
        len: u64,
        budget: &Arc<Budget>,
    ) -> io::Result<PreparedBody> {
        // A fresh file is at offset 0, and whole-file responses are the common case:
        // that saves them an `lseek`.
        if start != 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        let lease = (len <= BUFFER_LIMIT)
            .then(|| budget.try_take(len))
            .flatten();
        Ok(match lease {
            Some(lease) => PreparedBody::Bytes(read_exactly(&mut file, len)?, lease),
            None => PreparedBody::Stream { file, len },
        })
    }

    pub(super) fn into_body(self) -> Body {
        match self {
            PreparedBody::Empty => Body::empty(),
            PreparedBody::Bytes(bytes, lease) => Body::new(Buffered {
                rest: bytes,
                _lease: lease,
            }),
            PreparedBody::Stream { file, len } => {
                Body::new(FileBody::new(tokio::fs::File::from_std(file), len))
            }
        }
    }
}

/// Reads `len` bytes from the current position.
///
/// Without a size hint, `read_to_end` reads in doubling chunks from 8 KiB (nine `read`s
/// for 2 MB), but into uninitialised capacity. One `read_exact` would need the buffer
/// zeroed first, which measured slower than the extra syscalls, and stable std has no
/// way to read into uninitialised memory in one call without `unsafe`.
pub(super) fn read_exactly(file: &mut std::fs::File, len: u64) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        // Truncated while we read it: promising Content-Length and sending less would
        // leave the client hanging.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank to {} bytes while being read", buf.len()),
        ));
    }
    Ok(Bytes::from(buf))
}

/// A body read whole, handed out in [`SEND_SLICE`] views, holding its [`Lease`].
struct Buffered {
    rest: Bytes,
    _lease: Lease,
}

impl HttpBody for Buffered {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let slice = this.rest.split_to(this.rest.len().min(SEND_SLICE));
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// A response body read from a file in [`STREAM_CHUNK`] pieces, for responses over
/// [`BUFFER_LIMIT`].
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    /// Kept across `Pending` polls so a read in flight is not restarted.
    buf: Vec<u8>,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: Vec::new(),
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(STREAM_CHUNK as u64) as usize;
        if this.buf.len() != want {
            this.buf = vec![0; want];
        }
        let mut read_buf = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ))));
                }
                this.remaining -= n as u64;
                let mut chunk = std::mem::take(&mut this.buf);
                chunk.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{body, fixture, get, header};
    use axum::http::StatusCode;
    use std::fs;

    #[tokio::test]
    async fn large_files_are_streamed() {
        let (dir, state) = fixture();
        let len = BUFFER_LIMIT as usize + 300_000;
        let big: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        fs::write(dir.path().join("demo/v0/2.m4s"), &big).unwrap();

        let response = get(&state, "/vod/demo/v0/2.m4s", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-length"), len.to_string());
        assert_eq!(response.body().size_hint().exact(), Some(len as u64));
        assert!(body(response).await == big);

        let range = format!("bytes=100-{}", len - 2);
        let response = get(&state, "/vod/demo/v0/2.m4s", &[("range", &range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert!(body(response).await == big[100..len - 1]);
    }

    #[tokio::test]
    async fn buffered_bodies_stay_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 239) as u8).collect();
        fs::write(&path, &data).unwrap();
        let open = || std::fs::File::open(&path).unwrap();
        let budget = Budget::new(5_000_000);
        let first = PreparedBody::read(open(), 0, 3_000_000, &budget).unwrap();
        assert!(matches!(first, PreparedBody::Bytes(..)));
        // 3 + 3 MB would exceed 5 MB: the second streams from the file.
        let second = PreparedBody::read(open(), 0, 3_000_000, &budget).unwrap();
        assert!(matches!(second, PreparedBody::Stream { .. }));
        // Both bodies are whole and sliced; the lease is given back with the body.
        for prepared in [first, second] {
            let collected = http_body_util::BodyExt::collect(prepared.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert!(collected == data[..]);
        }
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        let third = PreparedBody::read(open(), 1000, 10, &budget).unwrap();
        assert!(matches!(third, PreparedBody::Bytes(..)));
        assert_eq!(budget.used.load(Ordering::Relaxed), 10);
    }
}
