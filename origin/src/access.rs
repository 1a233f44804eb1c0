//! The origin's access log (`--access-log FILE`, `access_log_file`): one line per request,
//! written when the response's last byte went (or the client left), off the request path
//! by the shared layer's writer ([`dashcdn_http::access_log`]: a queue taken every 20 ms
//! by its own thread, reopened on SIGHUP for logrotate).
//!
//! Line: `date peer method target status bytes complete|cut head_ms total_ms via`, where
//! `bytes` are the body bytes handed to the connection, `cut` says the body did not end
//! (the client left, or a send timeout dropped it), and `via` is the request's `Via`
//! header (the edges and shields it came through) or `-`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Method, Request};
use axum::response::Response;
use dashcdn_http::access_log::{clip, Clock, LogLine, Target, MAX_FIELD};
use hyper::body::Frame;

/// The log file's handle.
pub(crate) type AccessLog = dashcdn_http::access_log::AccessLog<Record>;

/// What is known of a request before its handler runs.
pub(crate) struct Started {
    at: Instant,
    peer: Option<SocketAddr>,
    method: Method,
    target: Target,
    via: Option<String>,
}

/// One request as the log gets it: what was known at its start, and how it ended.
pub(crate) struct Record {
    request: Started,
    /// When the last byte went (or the client left).
    ended_at: Instant,
    status: u16,
    bytes: u64,
    complete: bool,
    head_us: u64,
}

impl LogLine for Record {
    fn write_line(&self, out: &mut String, clock: &mut Clock) {
        let r = &self.request;
        let peer = match &r.peer {
            Some(p) => p as &dyn std::fmt::Display,
            None => &"-",
        };
        let total_us = self.ended_at.duration_since(r.at).as_micros() as u64;
        let _ = writeln!(
            out,
            "{} {} {} {} {} {} {} {}.{:03} {}.{:03} {}",
            clock.date(self.ended_at),
            peer,
            r.method,
            r.target.clipped(),
            self.status,
            self.bytes,
            if self.complete { "complete" } else { "cut" },
            self.head_us / 1000,
            self.head_us % 1000,
            total_us / 1000,
            total_us % 1000,
            clip(r.via.as_deref().unwrap_or("-"), MAX_FIELD),
        );
    }
}

impl Started {
    pub(crate) fn of<B>(request: &Request<B>, at: Instant) -> Started {
        Started {
            at,
            peer: request
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            method: request.method().clone(),
            target: Target::of(request.uri()),
            via: request
                .headers()
                .get(axum::http::header::VIA)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }
    }

    /// The response, its body logging the request when it ends or is dropped.
    pub(crate) fn log(self, log: &AccessLog, response: Response) -> Response {
        let head_us = self.at.elapsed().as_micros() as u64;
        let status = response.status().as_u16();
        // A HEAD answer's body is never sent: it is complete when the head is.
        let complete = self.method == Method::HEAD;
        let record = Record {
            ended_at: self.at,
            request: self,
            status,
            bytes: 0,
            complete,
            head_us,
        };
        response.map(|inner| {
            Body::new(Logged {
                inner,
                pending: Some((log.clone(), record)),
            })
        })
    }
}

/// A response body that logs its request when it is done.
struct Logged {
    inner: Body,
    /// The log and the record being completed, until it is written.
    pending: Option<(AccessLog, Record)>,
}

impl Logged {
    fn finish(&mut self, ended: bool) {
        let Some((log, mut record)) = self.pending.take() else {
            return;
        };
        record.ended_at = Instant::now();
        record.complete |= ended || self.inner.is_end_stream();
        log.log(record);
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some((_, record))) = (frame.data_ref(), &mut this.pending) {
                    record.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field() {
        let at = Instant::now();
        let r = Record {
            request: Started {
                at,
                peer: Some("127.0.0.1:4000".parse().unwrap()),
                method: Method::GET,
                target: Target::of(&"/vod/a/v0/1.m4s".parse().unwrap()),
                via: Some("1.1 shield".into()),
            },
            ended_at: at + std::time::Duration::from_micros(56_007),
            status: 206,
            bytes: 1000,
            complete: false,
            head_us: 1_234,
        };
        let mut out = String::new();
        r.write_line(&mut out, &mut Clock::new());
        assert!(
            out.ends_with(
                " 127.0.0.1:4000 GET /vod/a/v0/1.m4s 206 1000 cut 1.234 56.007 1.1 shield\n"
            ),
            "{out}"
        );
    }
}
