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
use http_body_util::{BodyExt, Full};
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
            let body = read_body(req.into_body()).await;
            if !ok_type {
                // Refused after the body is read: a reply before the end of the request
                // makes hyper reset the HTTP/2 stream, and the client sees no 415.
                return plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "POST needs Content-Type: application/dns-message\n",
                );
            }
            match body {
                Ok(body) => respond(state, peer, &body),
                Err(BodyError::TooLarge) => plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "a DNS message is at most 65535 bytes\n",
                ),
                Err(BodyError::Read) => plain(StatusCode::BAD_REQUEST, "request body not read\n"),
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

enum BodyError {
    TooLarge,
    Read,
}

/// The request body, at most [`MAX_MESSAGE`] bytes. A DNS query comes in one DATA frame,
/// which is returned as it is (no copy); `http_body_util`'s `Limited` + `collect` queued
/// and joined the frames, which showed in POST profiles.
async fn read_body(mut body: Incoming) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Read)?.into_data() else {
            continue; // trailers: nothing a DNS query needs
        };
        let had = first.as_ref().map_or(0, Bytes::len) + joined.len();
        if had + data.len() > MAX_MESSAGE {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(f) => {
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
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
            if let Some(v) = max_age(ttl) {
                h.insert(header::CACHE_CONTROL, v);
            }
            r
        }
    }
}

thread_local! {
    /// The last `max-age` header this thread made: answers of one name repeat their TTL,
    /// so most responses reuse it instead of formatting one.
    static MAX_AGE: std::cell::RefCell<Option<(u32, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `Cache-Control: max-age=TTL`.
fn max_age(ttl: u32) -> Option<HeaderValue> {
    MAX_AGE.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((t, v)) if *t == ttl => Some(v.clone()),
            _ => {
                let v = HeaderValue::from_str(&format!("max-age={ttl}")).ok()?;
                *last = Some((ttl, v.clone()));
                Some(v)
            }
        }
    })
}
