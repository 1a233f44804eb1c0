//! The HTTPS accept loop with real clients on loopback: HTTP/1.1 and HTTP/2 by ALPN, an
//! HTTP/2 connection that stays up across a certificate reload, and HTTP/2 abuse (rapid
//! reset, CONTINUATION flood) that closes the abuser's connection while others are served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashcdn_http::tls::{local_ca, serve_tls, CertPair, Limits, TlsConfig, TlsServer};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

struct Server {
    addr: SocketAddr,
    tls: Arc<TlsServer>,
    ca: std::path::PathBuf,
    pair: CertPair,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve_tls returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let pair = ca.issue("site", &["site.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![pair.clone()],
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let svc = |peer: SocketAddr| {
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
            let body = format!(
                "{:?} {} from {}",
                req.version(),
                req.uri().path(),
                peer.ip()
            );
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        })
    };
    let limits = Limits {
        drain_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let task = tokio::spawn(serve_tls(listener, tls.clone(), limits, svc, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        tls,
        ca: ca.ca_cert(),
        pair,
        _dir: dir,
        stop: Some(stop),
        task,
    }
}

async fn tls_connect(addr: SocketAddr, ca: &Path, alpn: &[u8]) -> TlsStream<TcpStream> {
    let roots = dashcdn_http::client::roots(Some(ca)).unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(dashcdn_http::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(c))
        .connect(ServerName::try_from("site.test").unwrap(), tcp)
        .await
        .unwrap()
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_client(addr: SocketAddr, ca: &Path) -> H2Sender {
    let io = TokioIo::new(tls_connect(addr, ca, b"h2").await);
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(send: &mut H2Sender, path: &str) -> String {
    let req = Request::builder()
        .uri(format!("https://site.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn http2_and_http11_by_alpn() {
    let s = start().await;
    let mut h2 = h2_client(s.addr, &s.ca).await;
    assert_eq!(get(&mut h2, "/a").await, "HTTP/2.0 /a from 127.0.0.1");

    let io = TokioIo::new(tls_connect(s.addr, &s.ca, b"http/1.1").await);
    let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/b")
        .header("host", "site.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = h1.send_request(req).await.unwrap();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"HTTP/1.1 /b from 127.0.0.1");
    s.shutdown().await;
}

#[tokio::test]
async fn an_http2_connection_stays_up_across_a_certificate_reload() {
    let s = start().await;
    let mut h2 = h2_client(s.addr, &s.ca).await;
    assert!(get(&mut h2, "/before").await.contains("/before"));
    // New certificate at the same paths (same names), reload.
    let dir = s.pair.cert.parent().unwrap();
    let ca = local_ca(dir).unwrap();
    let before = std::fs::read(&s.pair.cert).unwrap();
    ca.issue("site", &["site.test", "extra.test"]).unwrap();
    assert_ne!(before, std::fs::read(&s.pair.cert).unwrap());
    s.tls.reload().unwrap();
    assert!(get(&mut h2, "/after").await.contains("/after"));
    // New connections see the new certificate.
    let fresh = tls_connect(s.addr, &s.ca, b"h2").await;
    let leaf = fresh.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let new_pem = std::fs::read_to_string(&s.pair.cert).unwrap();
    use rustls::pki_types::pem::PemObject;
    let new_der = rustls::pki_types::CertificateDer::from_pem_slice(new_pem.as_bytes()).unwrap();
    assert_eq!(leaf, new_der.to_vec());
    s.shutdown().await;
}

/// Reads HTTP/2 frames until the server closes or sends GOAWAY; returns the GOAWAY
/// error code if one came.
async fn until_goaway<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Option<u32> {
    let mut head = [0u8; 9];
    loop {
        if r.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            return None;
        }
        if head[3] == 0x7 && len >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HPACK for `:method GET`, `:scheme https`, `:path /`, `:authority site.test`.
fn request_headers() -> Vec<u8> {
    let mut h = vec![0x82, 0x87, 0x84, 0x41, 9];
    h.extend_from_slice(b"site.test");
    h
}

#[tokio::test]
async fn rapid_reset_closes_the_abusers_connection_and_others_are_served() {
    let s = start().await;
    let mut viewer = h2_client(s.addr, &s.ca).await;
    let abuser = tls_connect(s.addr, &s.ca, b"h2").await;
    let (r, mut w) = tokio::io::split(abuser);
    let goaway = tokio::spawn(until_goaway(r));
    w.write_all(PREFACE).await.unwrap();
    w.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // HEADERS then RST_STREAM(CANCEL) on each new stream, as CVE-2023-44487 does.
    let mut sent = 0u32;
    let mut batch = Vec::new();
    for i in 0..20_000u32 {
        let id = 2 * i + 1;
        batch.extend(frame(0x1, 0x5, id, &request_headers()));
        batch.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
        if batch.len() > 16 * 1024 {
            if w.write_all(&batch).await.is_err() {
                break;
            }
            batch.clear();
        }
        sent = i + 1;
    }
    let code = tokio::time::timeout(Duration::from_secs(10), goaway)
        .await
        .expect("the server ends the abusive connection")
        .unwrap();
    assert_eq!(
        code,
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM after {sent} resets"
    );
    assert!(get(&mut viewer, "/ok").await.contains("/ok"));
    s.shutdown().await;
}

#[tokio::test]
async fn continuation_flood_is_cut_off_early() {
    let s = start().await;
    let mut viewer = h2_client(s.addr, &s.ca).await;
    let abuser = tls_connect(s.addr, &s.ca, b"h2").await;
    let (r, mut w) = tokio::io::split(abuser);
    let goaway = tokio::spawn(until_goaway(r));
    w.write_all(PREFACE).await.unwrap();
    w.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    w.write_all(&frame(0x1, 0x1, 1, &request_headers()))
        .await
        .unwrap();
    let mut filler = Vec::new();
    while filler.len() < 16_000 {
        // literal header without indexing, new name "x-a", 60-byte value
        filler.extend_from_slice(&[0x00, 3, b'x', b'-', b'a', 60]);
        filler.extend_from_slice(&[b'v'; 60]);
    }
    let mut sent = 0usize;
    let limit = 64 * 1024 * 1024;
    while sent < limit {
        if w.write_all(&frame(0x9, 0, 1, &filler)).await.is_err() {
            break;
        }
        sent += filler.len();
        if goaway.is_finished() {
            break;
        }
    }
    let code = tokio::time::timeout(Duration::from_secs(10), goaway)
        .await
        .expect("the server ends the flooding connection")
        .unwrap();
    // What was sent includes what sat in socket buffers when the GOAWAY came (a few MB on
    // loopback); without the bound the server would read all 64 MiB.
    assert!(
        sent < limit / 4,
        "server read {sent} bytes of one header block"
    );
    assert_eq!(
        code,
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM after {sent} bytes"
    );
    assert!(get(&mut viewer, "/ok").await.contains("/ok"));
    s.shutdown().await;
}
