//! The access log written to a file (`--access-log FILE`): the edge's record and its
//! line. Queueing, the writer thread, batching and SIGHUP reopening are the shared
//! layer's ([`dashcdn_http::access_log`]): a request's end moves one [`Record`] onto a
//! queue (no formatting, no string built, no clock read beyond the one that times the
//! request), and the writer formats the batch every 20 ms.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use dashcdn_http::access_log::{Clock, LogLine, Target};

/// The log file's handle, shared by the request path.
pub(crate) type AccessLog = dashcdn_http::access_log::AccessLog<Record>;

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

impl LogLine for Record {
    /// One line: `date peer method target status cache bytes complete|cut head_ms
    /// total_ms upstream`.
    fn write_line(&self, out: &mut String, clock: &mut Clock) {
        let r = self;
        let target = r.target.clipped();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use dashcdn_http::access_log::MAX_FIELD;
    use std::time::SystemTime;

    #[test]
    fn a_line_has_every_field_and_a_clipped_target() {
        let mut clock = Clock::new();
        let mut out = String::new();
        let r = Record {
            at: Instant::now(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            method: http::Method::GET,
            target: Target::of(&format!("/v0/1.m4s?t={}", "x".repeat(5000)).parse().unwrap()),
            status: 200,
            cache: "HIT",
            bytes: 1000,
            complete: true,
            head_us: 1_234,
            total_us: 56_007,
            upstream: None,
        };
        r.write_line(&mut out, &mut clock);
        let date = httpdate::fmt_http_date(SystemTime::now());
        assert!(out.starts_with(&date[..16]), "{out}");
        assert!(out.contains(" 127.0.0.1:4000 GET /v0/1.m4s?t=xx"), "{out}");
        assert!(
            out.ends_with("(5012 bytes) 200 HIT 1000 complete 1.234 56.007 -\n"),
            "{out}"
        );
        assert!(out.len() < MAX_FIELD + 200, "{}", out.len());
    }
}
