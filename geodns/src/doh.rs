//! DNS over HTTPS (RFC 8484): `GET /dns-query?dns=…` and `POST /dns-query` with
//! `application/dns-message`, over dashcdn-http's TLS listener (rustls, ALPN h2 and
//! http/1.1, certificate reload, HTTP/2 flood limits).
//!
//! Geo routing sees the HTTP peer as the client (RFC 8484 has no other address), and
//! ECS in the message works as over UDP. DNS-level errors are `200` with the DNS RCODE
//! (§4.2.1); only what is not a DNS message at all gets an HTTP error.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hickory_proto::op::Message;

use crate::answer::{answer, Reply, Transport};
use crate::state::State;

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
    let mut out = Vec::new();
    match answer(
        &ctx.state,
        msg,
        ctx.peer,
        Transport::Stream,
        &mut out,
        &mut None,
    ) {
        Reply::Nothing => (StatusCode::BAD_REQUEST, "not a DNS query\n").into_response(),
        Reply::Answer | Reply::Malformed => {
            let mut r = (StatusCode::OK, out.clone()).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
            // §5.1: freshness no longer than the smallest TTL of the answer.
            let ttl = Message::from_vec(&out)
                .ok()
                .and_then(|m| m.answers.iter().chain(&m.authorities).map(|r| r.ttl).min())
                .unwrap_or(0);
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={ttl}")) {
                h.insert(header::CACHE_CONTROL, v);
            }
            r
        }
    }
}
