//! Helpers that make each geodns test read like the behaviour it checks: a server on
//! 127.0.0.1:0 (UDP and TCP on the same port), `dig` and hickory's client against it,
//! raw UDP for hostile packets, and fake edges whose health can be switched off.

#![allow(dead_code)]

pub mod mmdb;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashcdn_geodns::{GeoDns, GeodnsConfig};
use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

pub fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

pub fn city_db() -> PathBuf {
    data("GeoIP2-City-Test.mmdb")
}

/// `text` with `from` replaced by `to`, which must occur exactly once: a test config made
/// from the shipped example fails loudly, naming the line, when the example changes under it
/// (a plain `str::replace` would silently stop matching).
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, 1,
        "expected {from:?} once in the config text, found it {found} times: the example \
         changed; update the test config"
    );
    text.replacen(from, to, 1)
}

/// The shipped example with the MaxMind test database, `default_pop = us-west` (so a
/// default answer differs from a London one), and `extra` appended (more records/zones).
pub fn config_text(maxmind: Option<&PathBuf>, health_urls: &[String], extra: &str) -> String {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("example.toml"))
            .unwrap();
    let mut text = replace_once(
        &text,
        "default_pop = \"eu-west\"",
        "default_pop = \"us-west\"",
    );
    if let Some(db) = maxmind {
        text = replace_once(
            &text,
            "# maxmind = \"tests/data/GeoIP2-City-Test.mmdb\"",
            &format!("maxmind = {:?}", db.display().to_string()),
        );
    }
    // Fake edges: one health URL per PoP, in PoP order; none → no probing at all.
    for (i, port) in ["127.0.1.1:8080", "127.0.2.1:8080", "127.0.3.1:8080"]
        .iter()
        .enumerate()
    {
        let replacement = match health_urls.get(i) {
            Some(u) => format!("health_url = {u:?}"),
            None => String::new(),
        };
        text = replace_once(
            &text,
            &format!("health_url = \"http://{port}/_edge/healthz\""),
            &replacement,
        );
    }
    text = replace_once(&text, "interval_ms = 2000", "interval_ms = 100");
    text = replace_once(&text, "timeout_ms = 1000", "timeout_ms = 200");
    text = replace_once(&text, "fall = 3", "fall = 2");
    format!("{text}\n{extra}")
}

pub fn config(extra: &str) -> GeodnsConfig {
    GeodnsConfig::from_toml(&config_text(Some(&city_db()), &[], extra)).unwrap()
}

/// A running server; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub dns: GeoDns,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn spawn(config: GeodnsConfig) -> Running {
    let dns = GeoDns::new(config).expect("config builds");
    spawn_dns(dns).await
}

pub async fn spawn_dns(dns: GeoDns) -> Running {
    // Bind TCP on port 0, then UDP on the same port (retrying if UDP's is taken).
    let (udp, tcp) = loop {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await {
            break (udp, tcp);
        }
    };
    let addr = tcp.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = dns.clone();
    let task = tokio::spawn(async move {
        server
            .serve(udp, tcp, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
    });
    Running {
        addr,
        dns,
        stop: Some(tx),
        task: Some(task),
    }
}

/// What `dig` printed, split into the parts tests look at.
#[derive(Debug)]
pub struct Dig {
    pub text: String,
    pub status: String,
    pub flags: Vec<String>,
    /// `(name, ttl, type, value)` from the ANSWER SECTION.
    pub answers: Vec<(String, u32, String, String)>,
    pub authority: Vec<(String, u32, String, String)>,
    /// The `; CLIENT-SUBNET: a/b/c` line, if any.
    pub subnet: Option<String>,
}

impl Dig {
    pub fn values(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.2 == rtype)
            .map(|a| a.3.clone())
            .collect()
    }
}

/// Runs `dig @127.0.0.1 -p PORT ARGS… +norec` and parses its output.
pub async fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+norec", "+time=2", "+tries=1", "+nocookie"])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("dig runs (bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_dig(text)
}

fn parse_dig(text: String) -> Dig {
    let mut status = String::new();
    let mut flags = Vec::new();
    let mut subnet = None;
    let mut section = "";
    let (mut answers, mut authority) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(i) = line.find("status: ") {
            status = line[i + 8..].split(',').next().unwrap().to_string();
        }
        if let Some(i) = line.find(";; flags: ") {
            flags = line[i + 10..]
                .split(';')
                .next()
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        if let Some(s) = line.strip_prefix("; CLIENT-SUBNET: ") {
            subnet = Some(s.trim().to_string());
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.starts_with(";;") || line.is_empty() {
            if line.is_empty() {
                section = "";
            }
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() >= 5 && !line.starts_with(';') {
            let rec = (
                parts[0].to_string(),
                parts[1].parse().unwrap_or(0),
                parts[3].to_string(),
                parts[4..].join(" "),
            );
            match section {
                "answer" => answers.push(rec),
                "authority" => authority.push(rec),
                _ => {}
            }
        }
    }
    Dig {
        text,
        status,
        flags,
        answers,
        authority,
        subnet,
    }
}

/// hickory's client over UDP.
pub async fn hickory_udp(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    client
}

/// hickory's client over TCP.
pub async fn hickory_tcp(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (fut, sender) = TcpClientStream::new(addr, None, None, TokioRuntimeProvider::new());
    let (client, bg) = Client::<TokioRuntimeProvider>::new(fut.await.unwrap(), sender);
    tokio::spawn(bg);
    client
}

pub async fn hickory_query(
    client: &mut Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
) -> Message {
    let r = client
        .query(Name::from_ascii(name).unwrap(), DNSClass::IN, rtype)
        .await
        .expect("hickory query answered");
    r.into_message()
}

/// A hickory-client query carrying an EDNS Client Subnet option.
pub async fn hickory_ecs(
    client: &Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
    subnet: ClientSubnet,
) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.options_mut().insert(EdnsOption::Subnet(subnet));
    msg.set_edns(edns);
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    let mut stream = client.send(DnsRequest::new(msg, options));
    stream
        .next()
        .await
        .expect("an answer")
        .expect("answer ok")
        .into_message()
}

pub fn ipv4s(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

pub fn echoed_subnet(m: &Message) -> Option<ClientSubnet> {
    m.edns
        .as_ref()?
        .options()
        .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
        .and_then(|o| match o {
            EdnsOption::Subnet(s) => Some(*s),
            _ => None,
        })
}

/// Sends raw bytes over UDP; returns the answer, or `None` if none came within 500 ms.
pub async fn raw_udp(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// A fake edge: `/_edge/healthz` answers 200 while `healthy`, and hangs (stops
/// answering, like a dead box behind a live switch) while not; `/_edge/stats` reports
/// `overloaded` in the edge's JSON shape.
pub struct FakeEdge {
    pub url: String,
    pub healthy: Arc<AtomicBool>,
    pub overloaded: Arc<AtomicBool>,
}

impl FakeEdge {
    pub fn set_healthy(&self, up: bool) {
        self.healthy.store(up, Ordering::SeqCst);
    }

    pub fn set_overloaded(&self, over: bool) {
        self.overloaded.store(over, Ordering::SeqCst);
    }
}

pub async fn fake_edge() -> FakeEdge {
    let healthy = Arc::new(AtomicBool::new(true));
    let overloaded = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let o = overloaded.clone();
    let app = axum::Router::new()
        .route(
            "/_edge/stats",
            axum::routing::get(move || {
                let over = o.load(Ordering::SeqCst);
                async move {
                    let load = if over { 0.97 } else { 0.1 };
                    axum::Json(serde_json::json!({
                        "pop": "fake", "load": load, "overloaded": over, "hit_ratio": 0.9
                    }))
                }
            }),
        )
        .route(
            "/_edge/healthz",
            axum::routing::get(move || {
                let h = h.clone();
                async move {
                    while !h.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeEdge {
        url: format!("http://{addr}/_edge/healthz"),
        healthy,
        overloaded,
    }
}

/// Polls `f` until it returns true or `limit` passes; returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
