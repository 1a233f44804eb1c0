//! DNS over HTTPS (RFC 8484): `GET /dns-query?dns=…` and `POST /dns-query` with
//! `application/dns-message`, over dashcdn-http's TLS listener (rustls, ALPN h2 and
//! http/1.1, certificate reload, HTTP/2 flood limits).
//!
//! Geo routing sees the HTTP peer as the client (RFC 8484 has no other address), and
//! ECS in the message works as over UDP. DNS-level errors are `200` with the DNS RCODE
//! (§4.2.1); only what is not a DNS message at all gets an HTTP error.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::answer::Reply;
use crate::cache::answer_stream;
use crate::state::State;
use crate::wire;
use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// RFC 8484 §6.
const DNS_MESSAGE: &str = "application/dns-message";

#[derive(Clone)]
struct Ctx {
    state: Arc<State>,
    peer: SocketAddr,
}

#[derive(serde::Deserialize)]
struct GetQuery {
    dns: Option<String>,
}

/// The `/dns-query` router of one connection from `peer`.
pub(crate) fn router(state: Arc<State>, peer: SocketAddr) -> Router {
    Router::new()
        .route("/dns-query", axum::routing::get(get).post(post))
        .with_state(Ctx { state, peer })
}

async fn get(AxState(ctx): AxState<Ctx>, Query(q): Query<GetQuery>) -> Response {
    let Some(dns) = q.dns else {
        return (StatusCode::BAD_REQUEST, "missing ?dns= (RFC 8484 §4.1)\n").into_response();
    };
    // §4.1: base64url without padding; tolerate padding anyway.
    let Ok(msg) = data_encoding::BASE64URL_NOPAD.decode(dns.trim_end_matches('=').as_bytes())
    else {
        return (StatusCode::BAD_REQUEST, "?dns= is not base64url\n").into_response();
    };
    respond(&ctx, &msg)
}

async fn post(AxState(ctx): AxState<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let ok_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(DNS_MESSAGE));
    if !ok_type {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST needs Content-Type: application/dns-message\n",
        )
            .into_response();
    }
    respond(&ctx, &body)
}

fn respond(ctx: &Ctx, msg: &[u8]) -> Response {
    if msg.len() > usize::from(u16::MAX) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "a DNS message is at most 65535 bytes\n",
        )
            .into_response();
    }
    let mut out = Vec::with_capacity(512);
    match answer_stream(&ctx.state, msg, ctx.peer, &mut out) {
        Reply::Nothing => (StatusCode::BAD_REQUEST, "not a DNS query\n").into_response(),
        Reply::Answer | Reply::Malformed => {
            // §5.1: freshness no longer than the smallest TTL of the answer (read off the
            // wire: no second parse of our own answer).
            let ttl = wire::min_ttl(&out).unwrap_or(0);
            let mut r = (StatusCode::OK, out).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={ttl}")) {
                h.insert(header::CACHE_CONTROL, v);
            }
            r
        }
    }
}
