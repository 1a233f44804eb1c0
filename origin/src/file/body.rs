//! Response bodies read from a library file: read whole in the blocking-pool trip that
//! opened the file, or streamed when over [`BUFFER_LIMIT`].
//!
//! A media segment is a few MB, and a range reads only its slice, so in practice every
//! segment is read in one go.

use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Responses up to this size are read into memory in one go; larger ones are streamed
/// in `STREAM_CHUNK` pieces so a huge file never sits in memory whole.
pub(super) const BUFFER_LIMIT: u64 = 8 * 1024 * 1024;
const STREAM_CHUNK: usize = 256 * 1024;

/// The body of a response for a file too big for the small-file cache, read in the
/// blocking pool as far as it is going to be.
pub(super) enum PreparedBody {
    Empty,
    Bytes(Bytes),
    /// Positioned at the first byte to send; `len` bytes to go.
    Stream {
        file: std::fs::File,
        len: u64,
    },
}

impl PreparedBody {
    /// `len` bytes of `file`, freshly opened, from `start`: read now if they fit in
    /// [`BUFFER_LIMIT`], else left to stream.
    pub(super) fn read(mut file: std::fs::File, start: u64, len: u64) -> io::Result<PreparedBody> {
        // A fresh file is at offset 0, and whole-file responses are the common case:
        // that saves them an `lseek`.
        if start != 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        Ok(if len <= BUFFER_LIMIT {
            PreparedBody::Bytes(read_exactly(&mut file, len)?)
        } else {
            PreparedBody::Stream { file, len }
        })
    }

    pub(super) fn into_body(self) -> Body {
        match self {
            PreparedBody::Empty => Body::empty(),
            PreparedBody::Bytes(bytes) => Body::from(bytes),
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
}
