//! A minimal HTTPS server on dashcdn's TLS layer (rustls + hyper; the same accept loop,
//! `serve_tls` → `serve::serve_listeners`, limits and allocator as origin and edge) for
//! `bench/tls.sh`: `/1k` and `/2m` are fixed bodies served from memory, like cache hits, so
//! the benchmark measures TLS and HTTP framing, not a cache.
//!
//!   cargo run --release -p dashcdn-http --example https_bench -- ADDR CERT KEY

use std::convert::Infallible;

/// The dashcdn binary's allocator (src/main.rs): glibc malloc hands 2 MB buffers back to
/// the kernel after each response, which the shipped servers never pay.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use dashcdn_http::tls::{serve_tls, CertPair, Limits, TlsConfig, TlsServer};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: https_bench ADDR CERT KEY";
    let addr = args.next().ok_or(usage)?;
    let cert = args.next().ok_or(usage)?.into();
    let key = args.next().ok_or(usage)?.into();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![CertPair { cert, key }],
        strict_sni: false,
    })?;
    let small = Bytes::from(vec![b'x'; 1000]);
    let big = Bytes::from(vec![b'y'; 2_000_000]);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let make = move |_| {
        let (small, big) = (small.clone(), big.clone());
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let body = match req.uri().path() {
                "/1k" => Some(small.clone()),
                "/2m" => Some(big.clone()),
                _ => None,
            };
            async move {
                let mut rsp = Response::new(Full::new(body.clone().unwrap_or_default()));
                if body.is_none() {
                    *rsp.status_mut() = StatusCode::NOT_FOUND;
                }
                Ok::<_, Infallible>(rsp)
            }
        })
    };
    serve_tls(listener, tls, Limits::default(), make, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
