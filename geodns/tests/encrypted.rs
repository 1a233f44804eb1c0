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

/// POSTs `q` to the DoH listener from `iface` with curl over HTTP/2 → (headers, body).
async fn doh_post(e: &Encrypted, q: &[u8], iface: &str) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (qf, hf) = (dir.path().join("q.bin"), dir.path().join("headers"));
    std::fs::write(&qf, q).unwrap();
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "--http2", "--interface", iface])
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", e.doh.port()),
        ])
        .arg("--cacert")
        .arg(&e.ca)
        .args(["-H", "content-type: application/dns-message"])
        .arg("--data-binary")
        .arg(format!("@{}", qf.display()))
        .arg("-D")
        .arg(&hf)
        .args(["-o", "-"])
        .arg(format!("https://localhost:{}/dns-query", e.doh.port()));
    let out = tokio::task::spawn_blocking(move || c.output())
        .await
        .unwrap()
        .expect("curl runs (geodns/tests/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (std::fs::read_to_string(&hf).unwrap(), out.stdout)
}

/// The stream transports answer repeated queries from a per-thread answer cache: a
/// repeat must carry its own ID, and a reload must not leave the old answer in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_stream_queries_keep_their_ids_and_follow_a_reload() {
    let e = spawn_encrypted().await;
    // TCP: one connection, the same question under three IDs.
    let mut tcp = tokio::net::TcpStream::connect(e.dns.addr).await.unwrap();
    let mut first: Option<Vec<u8>> = None;
    for id in [0x1234u16, 0xbeef, 0x0001] {
        let mut q = query("a1105.kingcdn.test");
        q[..2].copy_from_slice(&id.to_be_bytes());
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        tcp.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut len)
            .await
            .unwrap();
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut r)
            .await
            .unwrap();
        assert_eq!(
            r[..2],
            id.to_be_bytes(),
            "each answer carries its query's ID"
        );
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(
            ipv4s(&m),
            [US],
            "127.0.0.1 is in no coverage zone: the default PoP"
        );
        match &first {
            None => first = Some(r),
            Some(f) => assert_eq!(f[2..], r[2..], "the same answer apart from the ID"),
        }
    }

    // DoH from ap-east's network: ap-east, fresh for the geo TTL (RFC 8484 §5.1).
    let q = query("a1105.kingcdn.test");
    let (headers, body) = doh_post(&e, &q, "127.0.3.1").await;
    assert_eq!(ipv4s(&Message::from_vec(&body).unwrap()), ["127.0.3.1"]);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("cache-control: max-age=30"),
        "max-age is the answer's TTL: {headers}"
    );
    let (_, again) = doh_post(&e, &q, "127.0.3.1").await;
    assert_eq!(again, body, "a repeat gets the same answer");
    // Pin 127.0.3.0/25 to eu-west and reload: the next answer must follow.
    let pinned = "[[coverage]]\ncidr = \"127.0.3.0/25\"\npop = \"eu-west\"\n";
    e.dns.dns.reload(config(pinned)).await.unwrap();
    let (_, after) = doh_post(&e, &q, "127.0.3.1").await;
    assert_eq!(ipv4s(&Message::from_vec(&after).unwrap()), [EU]);
}
