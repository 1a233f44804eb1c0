//! DNS over TLS and over HTTPS against real clients: `kdig +tls`, `kdig +https` (Debian
//! knot-dnsutils) and curl, with a certificate from dashcdn-http's local CA.
//!
//! Loopback stands in for the regions: the example's coverage zones pin 127.0.1.0/24 to
//! eu-west and 127.0.2.0/24 to us-west, and Linux routes all of 127/8 to `lo`, so a
//! client bound to 127.0.2.1 is a viewer in us-west's network.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dashcdn_http::tls::{local_ca, TlsConfig, TlsServer};
use hickory_proto::op::Message;
use support::*;
use tokio::io::AsyncWriteExt;

const EU: &str = "127.0.1.1";
const US: &str = "127.0.2.1";

struct Encrypted {
    dns: Running,
    dot: SocketAddr,
    doh: SocketAddr,
    ca: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn spawn_encrypted() -> Encrypted {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let pair = ca.issue("dns", &["127.0.0.1", "localhost"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![pair],
        strict_sni: false,
    })
    .unwrap();
    let dns = spawn(config("")).await;
    let dot_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doh_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (dot, doh) = (dot_l.local_addr().unwrap(), doh_l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = rx.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (g, t) = (dns.dns.clone(), tls.clone());
    let stop = wait(stop_rx.clone());
    tokio::spawn(async move { g.serve_dot(dot_l, t, stop).await.unwrap() });
    let (g, t): (_, Arc<TlsServer>) = (dns.dns.clone(), tls.clone());
    let stop = wait(stop_rx);
    tokio::spawn(async move { g.serve_doh(doh_l, t, stop).await.unwrap() });
    Encrypted {
        dns,
        dot,
        doh,
        ca: ca.ca_cert(),
        _dir: dir,
        _stop: tx,
    }
}

/// Runs a client command and returns its stdout (panics with stderr on failure).
async fn run(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("client runs (geodns/tests/setup.sh installs kdig and curl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kdig(addr: SocketAddr, ca: &Path, how: &str, args: &[&str]) -> Command {
    let mut c = Command::new("kdig");
    c.arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .arg(how)
        .arg(format!("+tls-ca={}", ca.display()))
        .arg("+tls-hostname=localhost")
        .args(["+short", "+time=3", "+retry=0"])
        .args(args);
    c
}

fn query(name: &str) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_answers_geo_routed_with_a_verified_certificate() {
    let e = spawn_encrypted().await;
    let ecs = "+subnet=81.2.69.160/27";
    let out = run(kdig(e.dot, &e.ca, "+tls", &["a1105.kingcdn.test", ecs])).await;
    assert_eq!(out.trim(), EU, "London's subnet lands in London");
    // Without ECS the connection's source address is the client: 127.0.2.1 is us-west.
    let mut c = kdig(e.dot, &e.ca, "+tls", &["a1105.kingcdn.test"]);
    c.args(["-b", "127.0.2.1"]);
    assert_eq!(run(c).await.trim(), US);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_get_and_post_over_http2_are_geo_routed_by_the_http_peer() {
    let e = spawn_encrypted().await;
    let ecs = "+subnet=81.2.69.160/27";
    let out = run(kdig(e.doh, &e.ca, "+https", &["a1105.kingcdn.test", ecs])).await;
    assert_eq!(out.trim(), EU);
    let out = run(kdig(
        e.doh,
        &e.ca,
        "+https-get",
        &["a1105.kingcdn.test", ecs],
    ))
    .await;
    assert_eq!(out.trim(), EU);

    // curl POSTs application/dns-message over HTTP/2 from us-west's network.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.bin");
    std::fs::write(&q, query("a1105.kingcdn.test")).unwrap();
    let url = format!("https://localhost:{}/dns-query", e.doh.port());
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "--http2", "--interface", "127.0.2.1"])
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", e.doh.port()),
        ])
        .arg("--cacert")
        .arg(&e.ca)
        .args(["-H", "content-type: application/dns-message"])
        .arg("--data-binary")
        .arg(format!("@{}", q.display()))
        .args(["-o", "-", "-w", "%{http_version} %{content_type}"])
        .arg(&url);
    let out = tokio::task::spawn_blocking(move || c.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = &out.stdout;
    let trailer = b"2 application/dns-message";
    assert!(body.ends_with(trailer), "HTTP/2 and the DNS media type");
    let m = Message::from_vec(&body[..body.len() - trailer.len()]).unwrap();
    assert_eq!(ipv4s(&m), [US]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_tls_or_http_does_not_disturb_udp() {
    let e = spawn_encrypted().await;
    // A client that speaks no TLS at all.
    let mut junk = tokio::net::TcpStream::connect(e.dot).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    // A DoH body that is no DNS message, and a wrong media type.
    let url = format!("https://localhost:{}/dns-query", e.doh.port());
    for (ctype, want) in [("application/dns-message", "400"), ("text/plain", "415")] {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", e.doh.port()),
            ])
            .arg("--cacert")
            .arg(&e.ca)
            .args(["-H", &format!("content-type: {ctype}")])
            .args(["--data-binary", "hello"])
            .arg(&url);
        assert_eq!(run(c).await, want, "{ctype}");
    }
    let d = dig(
        e.dns.addr,
        &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"],
    )
    .await;
    assert_eq!(d.values("A"), [EU]);
}
