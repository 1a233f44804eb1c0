//! DNS over HTTPS (RFC 8484): `GET /dns-query?dns=…` and `POST /dns-query` with
//! `application/dns-message`, over dashcdn-http's TLS listener (rustls, ALPN h2 and
//! http/1.1, certificate reload, HTTP/2 flood limits).
//!
//! Geo routing sees the HTTP peer as the client (RFC 8484 has no other address), and
//! ECS in the message works as over UDP. DNS-level errors are `200` with the DNS RCODE
//! (§4.2.1); only what is not a DNS message at all gets an HTTP error.
//!
//! A plain hyper service rather than an axum router: one path and two methods need no
//! routing or extractors, and at DoH rates (tens of thousands of requests a second on a
//! core) their per-request work showed in profiles.
//!
//! Threads: each DoH thread runs its own single-threaded runtime (`GeoDns::serve_doh`).
//! On the shared multi-threaded runtime, hyper's per-request task woke the connection
//! task right after answering, so every answer was flushed on its own: `strace -c` under
//! h2load counted ~9 TLS `writev`s per socket read and `perf` showed ~40% of the time in
//! the kernel (wake-ups, writes). On one thread the connection task runs after all the
//! requests read together are answered: one `writev` per read, about 1.6× the requests
//! per second (bench/dns/encrypted.sh, docs/benchmarks.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::answer::Reply;
use crate::cache::answer_stream;
use crate::state::State;
use crate::wire;

/// RFC 8484 §6.
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message (a longer body is refused with 413).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// DoH serving threads (see `GeoDns::serve_doh`): one per core, like UDP.
pub(crate) fn threads() -> usize {
    crate::udp::default_threads()
}

/// The `/dns-query` service of one connection from `peer`.
pub(crate) fn service(
    state: Arc<State>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
    })
}

async fn handle(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/dns-query" {
        return plain(StatusCode::NOT_FOUND, "DoH is served at /dns-query\n");
    }
    match *req.method() {
        Method::GET => {
            let dns = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("dns="));
            let Some(dns) = dns else {
                return plain(StatusCode::BAD_REQUEST, "missing ?dns= (RFC 8484 §4.1)\n");
            };
            // §4.1: base64url without padding; tolerate padding anyway.
            match data_encoding::BASE64URL_NOPAD.decode(dns.trim_end_matches('=').as_bytes()) {
                Ok(msg) => respond(state, peer, &msg),
                Err(_) => plain(StatusCode::BAD_REQUEST, "?dns= is not base64url\n"),
            }
        }
        Method::POST => {
            let ok_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case(DNS_MESSAGE));
            let body = Limited::new(req.into_body(), MAX_MESSAGE).collect().await;
            if !ok_type {
                // Refused after the body is read: a reply before the end of the request
                // makes hyper reset the HTTP/2 stream, and the client sees no 415.
                return plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "POST needs Content-Type: application/dns-message\n",
                );
            }
            match body {
                Ok(body) => respond(state, peer, &body.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "a DNS message is at most 65535 bytes\n",
                ),
                Err(_) => plain(StatusCode::BAD_REQUEST, "request body not read\n"),
            }
        }
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            r
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn respond(state: &State, peer: SocketAddr, msg: &[u8]) -> Response<Full<Bytes>> {
    let mut out = Vec::with_capacity(512);
    match answer_stream(state, msg, peer, &mut out) {
        Reply::Nothing => plain(StatusCode::BAD_REQUEST, "not a DNS query\n"),
        Reply::Answer | Reply::Malformed => {
            // §5.1: freshness no longer than the smallest TTL of the answer (read off the
            // wire: no second parse of our own answer).
            let ttl = wire::min_ttl(&out).unwrap_or(0);
            let mut r = Response::new(Full::new(Bytes::from(out)));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={ttl}")) {
                h.insert(header::CACHE_CONTROL, v);
            }
            r
        }
    }
}
