//! HTTPS as an operator runs it: `dashcdn edge` with `--tls-listen` in front of
//! `dashcdn origin serve`, certificates from an openssl-made CA, curl with `--cacert`.
//! TLS 1.3 + ALPN h2 and the right certificate per SNI name; HTTP/1.1 still works;
//! a bad pair refused at start naming the file; certificate files replaced + SIGHUP;
//! an edge fetching from an HTTPS upstream verified by `--upstream-ca`, an untrusted one
//! refused with a log line naming the upstream and the reason.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{dashcdn, free_port_on, run};

struct Ca {
    dir: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = run(Command::new("openssl").args(args).current_dir(dir));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ca {
    /// A P-256 CA in `dir` (`{name}.pem`, `{name}.key`).
    fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        let ca = Ca {
            dir: dir.to_owned(),
        };
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
            dir,
        );
        std::fs::rename(dir.join(format!("{name}.pem")), dir.join("ca.pem")).unwrap();
        std::fs::rename(dir.join(format!("{name}.key")), dir.join("ca.key")).unwrap();
        ca
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf `{stem}.pem`/`{stem}.key` for `names`, subject CN `cn`.
    fn issue(&self, stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let san: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        std::fs::write(
            self.dir.join(format!("{stem}.ext")),
            format!("subjectAltName={}\n", san.join(",")),
        )
        .unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{stem}.key.new"),
                "-out",
                &format!("{stem}.csr"),
            ],
            &self.dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{stem}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{stem}.ext"),
                "-out",
                &format!("{stem}.pem.new"),
            ],
            &self.dir,
        );
        let (cert, key) = (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        );
        // Key first, then the certificate, each by rename: a reader never sees half a file.
        std::fs::rename(self.dir.join(format!("{stem}.key.new")), &key).unwrap();
        std::fs::rename(self.dir.join(format!("{stem}.pem.new")), &cert).unwrap();
        (cert, key)
    }
}

/// A server process whose stderr is collected; killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command, log: PathBuf, port: u16) -> Proc {
    let file = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("spawn dashcdn");
    let mut p = Proc { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("dashcdn exited {status}: {}", p.log());
        }
        assert!(
            Instant::now() < deadline,
            "nothing on port {port}: {}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// A library with one 1000-byte segment at /vod/a/v0/1.m4s.
fn library(dir: &Path) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(lib.join("a/v0")).unwrap();
    std::fs::write(lib.join("a/v0/1.m4s"), vec![7u8; 1000]).unwrap();
    lib
}

struct Curl {
    code: i32,
    /// `%{http_version} %{http_code}`
    out: String,
    /// curl -v: TLS version, ALPN, certificate subject
    verbose: String,
}

fn curl(ca: &Path, name: &str, port: u16, path: &str, extra: &[&str]) -> Curl {
    let out = run(Command::new("curl")
        .args([
            "-sv",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("https://{name}:{port}{path}")));
    Curl {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        verbose: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `dashcdn origin serve` on plain HTTP over [`library`]: returns its port.
fn origin(dir: &Path) -> (Proc, u16) {
    let port = free_port_on(&["127.0.0.1"]);
    let p = spawn(
        dashcdn()
            .args(["origin", "serve", "--library"])
            .arg(library(dir))
            .args(["--listen", &format!("127.0.0.1:{port}")]),
        dir.join("origin.log"),
        port,
    );
    (p, port)
}

/// `dashcdn edge` in front of `upstream` with an HTTPS listener serving `pairs`:
/// (process, plain port, TLS port).
fn tls_edge(
    dir: &Path,
    name: &str,
    upstream: &str,
    pairs: &[(PathBuf, PathBuf)],
    extra: &[&std::ffi::OsStr],
) -> (Proc, u16, u16) {
    let (port, tls_port) = (free_port_on(&["127.0.0.1"]), free_port_on(&["127.0.0.1"]));
    let mut cmd = dashcdn();
    cmd.args(["edge", "--upstream", upstream, "--pop", name])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--tls-listen", &format!("127.0.0.1:{tls_port}")])
        .args(extra);
    for (c, k) in pairs {
        cmd.arg("--tls-cert").arg(c).arg("--tls-key").arg(k);
    }
    let p = spawn(&mut cmd, dir.join(format!("{name}.log")), tls_port);
    (p, port, tls_port)
}

#[test]
fn edge_serves_tls13_h2_with_the_certificate_for_each_sni_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(&dir.path().join("ca"), "test CA");
    let a = ca.issue("a", "a.test", &["a.test", "localhost"]);
    let b = ca.issue("b", "b.test", &["b.test"]);
    let (_o, oport) = origin(dir.path());
    let (_e, _, port) = tls_edge(
        dir.path(),
        "e",
        &format!("http://127.0.0.1:{oport}"),
        &[a, b],
        &[],
    );

    let got = curl(&ca.cert(), "b.test", port, "/vod/a/v0/1.m4s", &[]);
    assert_eq!(got.code, 0, "{}", got.verbose);
    assert_eq!(got.out, "2 200");
    assert!(got.verbose.contains("TLSv1.3"), "{}", got.verbose);
    assert!(
        got.verbose.contains("ALPN: server accepted h2"),
        "{}",
        got.verbose
    );
    assert!(got.verbose.contains("CN=b.test"), "{}", got.verbose);

    let got = curl(
        &ca.cert(),
        "a.test",
        port,
        "/vod/a/v0/1.m4s",
        &["--http1.1"],
    );
    assert_eq!(got.out, "1.1 200", "{}", got.verbose);
    assert!(got.verbose.contains("CN=a.test"), "{}", got.verbose);

    // An unknown name gets the default (first) certificate, which does not cover it.
    let got = curl(&ca.cert(), "other.test", port, "/_edge/healthz", &[]);
    assert_eq!(got.code, 60, "{}", got.verbose);
    assert!(got.verbose.contains("CN=a.test"), "{}", got.verbose);
}

#[test]
fn origin_serves_https_and_http2_beside_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(&dir.path().join("ca"), "test CA");
    let pair = ca.issue("origin", "origin.test", &["origin.test"]);
    let (port, tls_port) = (free_port_on(&["127.0.0.1"]), free_port_on(&["127.0.0.1"]));
    let _o = spawn(
        dashcdn()
            .args(["origin", "serve", "--library"])
            .arg(library(dir.path()))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--tls-listen",
                &format!("127.0.0.1:{tls_port}"),
                "--tls-cert",
            ])
            .arg(&pair.0)
            .arg("--tls-key")
            .arg(&pair.1),
        dir.path().join("origin-tls.log"),
        tls_port,
    );
    let got = curl(&ca.cert(), "origin.test", tls_port, "/vod/a/v0/1.m4s", &[]);
    assert_eq!(got.out, "2 200", "{}", got.verbose);
    assert!(got.verbose.contains("TLSv1.3"), "{}", got.verbose);
    let (status, body) = http_get(port, "/vod/a/v0/1.m4s");
    assert_eq!((status, body.len()), (200, 1000));
}

#[test]
fn a_key_that_does_not_match_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(&dir.path().join("ca"), "test CA");
    let (a_cert, _) = ca.issue("a", "a.test", &["a.test"]);
    let (_, b_key) = ca.issue("b", "b.test", &["b.test"]);
    let out = run(dashcdn()
        .args(["edge", "--upstream", "http://127.0.0.1:9"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .arg(&a_cert)
        .arg("--tls-key")
        .arg(&b_key));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("does not match"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("b.key") && line.contains("a.pem"), "{line}");
}

#[test]
fn replaced_files_and_sighup_serve_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(&dir.path().join("ca"), "test CA");
    let pair = ca.issue("site", "first", &["site.test"]);
    let (_o, oport) = origin(dir.path());
    let (o, _, port) = tls_edge(
        dir.path(),
        "e",
        &format!("http://127.0.0.1:{oport}"),
        &[pair],
        &[],
    );
    let got = curl(&ca.cert(), "site.test", port, "/_edge/healthz", &[]);
    assert!(got.verbose.contains("CN=first"), "{}", got.verbose);

    // A bad key first: refused, the old certificate keeps serving.
    let good_key = std::fs::read(dir.path().join("ca/site.key")).unwrap();
    let (_, other_key) = ca.issue("other", "other", &["site.test"]);
    std::fs::copy(&other_key, dir.path().join("ca/site.key")).unwrap();
    hup(&o);
    wait_log(&o, "reload refused");
    let got = curl(&ca.cert(), "site.test", port, "/_edge/healthz", &[]);
    assert!(got.verbose.contains("CN=first"), "{}", got.verbose);
    std::fs::write(dir.path().join("ca/site.key"), good_key).unwrap();

    ca.issue("site", "second", &["site.test"]);
    hup(&o);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = curl(&ca.cert(), "site.test", port, "/_edge/healthz", &[]);
        if got.verbose.contains("CN=second") {
            assert_eq!(got.out, "2 200");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still the old certificate: {}",
            o.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hup(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-HUP", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_log(p: &Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log: {}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn edge(dir: &Path, name: &str, upstream: &str, ca: &Path) -> (Proc, u16) {
    let port = free_port_on(&["127.0.0.1"]);
    let p = spawn(
        dashcdn()
            .args(["edge", "--upstream", upstream, "--upstream-ca"])
            .arg(ca)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--pop", name]),
        dir.join(format!("{name}.log")),
        port,
    );
    (p, port)
}

fn http_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let status = String::from_utf8_lossy(&buf[9..12]).parse().unwrap();
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| buf[i + 4..].to_vec())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn edge_fetches_from_an_https_upstream_it_trusts_and_refuses_one_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(&dir.path().join("ca"), "test CA");
    let pair = ca.issue("parent", "parent", &["localhost", "127.0.0.1"]);
    let (_o, oport) = origin(dir.path());
    // The HTTPS upstream: an edge serving the origin over TLS (HTTP/2 by ALPN).
    let (_p, _, pport) = tls_edge(
        dir.path(),
        "parent",
        &format!("http://127.0.0.1:{oport}"),
        &[pair],
        &[],
    );
    let upstream = format!("https://localhost:{pport}");

    let (_e, eport) = edge(dir.path(), "trusting", &upstream, &ca.cert());
    let (status, body) = http_get(eport, "/vod/a/v0/1.m4s");
    assert_eq!(status, 200);
    assert_eq!(body, vec![7u8; 1000]);

    let other = Ca::new(&dir.path().join("other"), "other CA");
    let (e, eport) = edge(dir.path(), "distrusting", &upstream, &other.cert());
    let (status, _) = http_get(eport, "/vod/a/v0/1.m4s");
    assert_eq!(status, 502);
    wait_log(&e, &upstream);
    let log = e.log();
    let line = log
        .lines()
        .find(|l| l.contains(&upstream) && l.to_lowercase().contains("certificate"))
        .unwrap_or_else(|| panic!("no log line naming {upstream} and the certificate: {log}"));
    assert!(
        line.contains("UnknownIssuer") || line.contains("unknown issuer"),
        "{line}"
    );
}

/// Debian's pebble and the rest of http/tests/setup.sh.
fn setup() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("http/tests/setup.sh");
    let ok = Command::new("sh").arg(script).status().unwrap();
    assert!(ok.success(), "http/tests/setup.sh failed");
}

const ACME_TOKEN: &str = "a-long-enough-dns01-token";

/// `dashcdn geodns` answering `edge.test` names with 127.0.0.1 (geodns/example.toml without
/// health probes, plus that zone) and taking DNS-01 TXT records on its metrics listener:
/// (process, DNS port, metrics port).
fn geodns(dir: &Path) -> (Proc, u16, u16) {
    let port = loop {
        let p = free_port_on(&["127.0.0.1"]);
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(repo.join("geodns/example.toml")).unwrap();
    let mut text: String = example
        .lines()
        .filter(|l| !l.starts_with("health_url"))
        .map(|l| {
            if l.starts_with("listen = ") {
                format!("listen = \"127.0.0.1:{port}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    text.push_str(
        "\n[[zone]]\norigin = \"edge.test\"\nttl = 5\nns = [\"ns1\"]\n\
         soa = { mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 5 }\n",
    );
    for name in ["@", "ns1", "http", "alpn"] {
        text.push_str(&format!(
            "\n[[zone.record]]\nname = \"{name}\"\ntype = \"A\"\nvalue = \"127.0.0.1\"\n"
        ));
    }
    let config = dir.join("geodns.toml");
    std::fs::write(&config, text).unwrap();
    let metrics = free_port_on(&["127.0.0.1"]);
    let p = spawn(
        dashcdn()
            .args(["geodns", "--config"])
            .arg(&config)
            .args(["--metrics", &format!("127.0.0.1:{metrics}")])
            .args(["--acme-token", ACME_TOKEN]),
        dir.join("geodns.log"),
        metrics,
    );
    (p, port, metrics)
}

struct Pebble {
    proc: Proc,
    url: String,
    mgmt: u16,
}

fn pebble(dir: &Path, ca: &Ca, dns: u16, http_port: u16, tls_port: u16) -> Pebble {
    let (cert, key) = ca.issue("pebble", "localhost", &["localhost", "127.0.0.1"]);
    let (port, mgmt) = (free_port_on(&["127.0.0.1"]), free_port_on(&["127.0.0.1"]));
    let config = format!(
        r#"{{"pebble": {{"listenAddress": "127.0.0.1:{port}", "managementListenAddress": "127.0.0.1:{mgmt}",
        "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": {tls_port},
        "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
        cert.display(),
        key.display()
    );
    std::fs::write(dir.join("pebble.json"), config).unwrap();
    let proc = spawn(
        Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0"),
        dir.join("pebble.log"),
        port,
    );
    Pebble {
        proc,
        url: format!("https://127.0.0.1:{port}/dir"),
        mgmt,
    }
}

#[test]
#[ignore = "slow: pebble ACME server, geodns and an edge as processes (http/tests/setup.sh installs pebble)"]
fn edge_gets_certificates_from_pebble_by_http01_tls_alpn01_and_dns01_through_geodns() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(&dir.path().join("ca"), "pebble https CA");
    let (g, dns, admin) = geodns(dir.path());
    let (_o, oport) = origin(dir.path());
    let (port, tls_port) = (free_port_on(&["127.0.0.1"]), free_port_on(&["127.0.0.1"]));
    let pebble = pebble(dir.path(), &ca, dns, port, tls_port);
    let mut root = None;
    for (name, challenge) in [
        ("http.edge.test", "http-01"),
        ("alpn.edge.test", "tls-alpn-01"),
        ("dns.edge.test", "dns-01"),
    ] {
        let acme_dir = dir.path().join(format!("acme-{challenge}"));
        let e = spawn(
            dashcdn()
                .env("DASHCDN_ACME_DNS_TOKEN", ACME_TOKEN)
                .args(["edge", "--upstream", &format!("http://127.0.0.1:{oport}")])
                .args([
                    "--acme-dns-url",
                    &format!("http://127.0.0.1:{admin}/_geodns/acme"),
                ])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--tls-listen", &format!("127.0.0.1:{tls_port}")])
                .args(["--acme-directory", &pebble.url, "--acme-domain", name])
                .args(["--acme-challenge", challenge, "--acme-ca-root"])
                .arg(ca.cert())
                .arg("--acme-dir")
                .arg(&acme_dir),
            dir.path().join(format!("edge-{challenge}.log")),
            tls_port,
        );
        let cert = acme_dir.join(format!("{name}.pem"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !e.log().contains("certificate issued and serving") {
            assert!(
                Instant::now() < deadline,
                "{challenge}: no certificate\nedge: {}\npebble: {}",
                e.log(),
                pebble.proc.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(cert.exists());
        let root = root.get_or_insert_with(|| {
            let out = run(Command::new("curl")
                .args(["-sf", "--cacert"])
                .arg(ca.cert())
                .arg(format!("https://localhost:{}/roots/0", pebble.mgmt)));
            assert!(out.status.success());
            let path = dir.path().join("pebble-root.pem");
            std::fs::write(&path, out.stdout).unwrap();
            path
        });
        let got = curl(root, name, tls_port, "/vod/a/v0/1.m4s", &[]);
        assert_eq!(got.out, "2 200", "{challenge}: {}", got.verbose);
        assert!(got.verbose.contains("TLSv1.3"), "{}", got.verbose);
        drop(e);
    }
    // DNS-01 went through geodns: the TXT record was published there and removed after.
    let log = g.log();
    assert!(log.contains("acme: TXT record changed"), "{log}");
    assert!(log.contains("DELETE"), "{log}");
}

/// The TLS listener is on the shared accept loop: the plain listener's protections hold for
/// HTTPS on both servers — slowloris closed at the header timeout, a stalled handshake
/// closed, the per-client cap, a slow reader dropped at the send timeout — each seen in the
/// server's own connection metrics. Clients: `openssl s_client` and raw sockets.
mod protections {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use dashcdn_http::https::TlsArgs;
    use dashcdn_testkit::{eventually, origin, spawn_edge, Server};

    use crate::util::free_port_on;

    /// 500 ms to send a head (and finish a handshake), 500 ms of send stall, 2 connections
    /// per client address.
    const LIMIT: Duration = Duration::from_millis(500);

    struct Site {
        server: Server,
        tls: SocketAddr,
        /// `(family, label)` of the counters: header/send timeouts, per-client refusals.
        timeouts: &'static str,
        refused: &'static str,
    }

    fn tls_args(dir: &Path, stem: &str) -> (TlsArgs, SocketAddr) {
        let ca = dashcdn_http::tls::local_ca(&dir.join("ca")).unwrap();
        let pair = ca.issue(stem, &["localhost", "127.0.0.1"]).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port_on(&["127.0.0.1"]))
            .parse()
            .unwrap();
        let args = TlsArgs {
            listen: Some(addr),
            cert: vec![pair.cert],
            key: vec![pair.key],
            ..Default::default()
        };
        (args, addr)
    }

    /// A library with a 64 MB file (more than loopback and pipe buffers hold).
    fn big_library(dir: &Path) -> std::path::PathBuf {
        let lib = dir.join("lib");
        std::fs::create_dir_all(lib.join("a/v0")).unwrap();
        std::fs::write(lib.join("a/v0/2.m4s"), vec![7u8; 64 << 20]).unwrap();
        lib
    }

    async fn tls_origin(dir: &Path) -> Site {
        let (args, tls) = tls_args(dir, "origin");
        let server = origin(&big_library(dir))
            .config(|c| {
                c.tls = args;
                c.limits.max_connections_per_client = Some(2);
                c.limits.header_timeout = LIMIT;
                c.limits.send_timeout = LIMIT;
            })
            .await;
        Site {
            server,
            tls,
            timeouts: "dashcdn_origin_connections_total",
            refused: "dashcdn_origin_connections_total",
        }
    }

    async fn tls_edge(dir: &Path, upstream: SocketAddr) -> Site {
        let (args, tls) = tls_args(dir, "edge");
        let server = spawn_edge()
            .upstream(upstream)
            .config(|c| {
                c.tls = args;
                c.max_connections_per_client = Some(2);
                c.header_read_timeout_ms = LIMIT.as_millis() as u64;
                c.send_timeout_ms = LIMIT.as_millis() as u64;
            })
            .await;
        Site {
            server,
            tls,
            timeouts: "dashcdn_edge_connection_timeouts_total",
            refused: "dashcdn_edge_rejected_connections",
        }
    }

    /// Sum of the samples of `family` whose labels contain `label` (empty: all).
    async fn count(site: &Site, family: &str, label: &str) -> f64 {
        let path = if family.starts_with("dashcdn_edge") {
            "/_edge/metrics"
        } else {
            "/metrics"
        };
        let text = site.server.get(path).await.text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(family) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn s_client(tls: SocketAddr) -> Child {
        Command::new("openssl")
            .args(["s_client", "-quiet", "-servername", "localhost", "-connect"])
            .arg(tls.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client (scripts/setup.sh installs openssl)")
    }

    /// Waits (bounded) for a child to exit; how long it took.
    fn exits_within(child: &mut Child, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < within {
            if child.try_wait().unwrap().is_some() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    async fn check_all(site: &Site, label: &str) {
        // --- slowloris over TLS: handshake done, then half a request head, never finished.
        let before = count(site, site.timeouts, "header_timeout").await;
        let mut slow = s_client(site.tls);
        let mut stdin = slow.stdin.take().unwrap();
        stdin
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let took = tokio::task::block_in_place(|| exits_within(&mut slow, Duration::from_secs(10)));
        drop(stdin);
        assert!(
            took.is_some(),
            "{label}: a TLS slowloris is still connected after 10 s (header timeout {LIMIT:?})"
        );
        eventually(
            &format!("{label}: header_timeout counted"),
            Duration::from_secs(3),
            || async { count(site, site.timeouts, "header_timeout").await > before },
        )
        .await;

        // --- a client that opens TCP and stalls the handshake (half a record header).
        let before = count(site, site.timeouts, "header_timeout").await;
        let closed = tokio::task::block_in_place(|| {
            let mut s = TcpStream::connect(site.tls).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            let mut buf = [0u8; 64];
            matches!(s.read(&mut buf), Ok(0) | Err(_))
                && !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        assert!(closed, "{label}: a stalled handshake was not closed");
        eventually(
            &format!("{label}: stalled handshake counted"),
            Duration::from_secs(3),
            || async { count(site, site.timeouts, "header_timeout").await > before },
        )
        .await;

        // --- per-client cap: two connections held, the third is refused at once.
        let refused_label = if site.refused.starts_with("dashcdn_origin") {
            "refused_per_client"
        } else {
            ""
        };
        let before_refused = count(site, site.refused, refused_label).await;
        tokio::task::block_in_place(|| {
            // The metrics client's connections (same address) close first.
            std::thread::sleep(Duration::from_millis(200));
            let held: Vec<TcpStream> = (0..2)
                .map(|_| TcpStream::connect(site.tls).unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            for mut h in &held {
                h.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let still_open = matches!(
                    h.read(&mut [0u8; 8]),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                );
                assert!(still_open, "{label}: a connection under the cap was closed");
            }
            let mut extra = TcpStream::connect(site.tls).unwrap();
            extra
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 64];
            let n = extra.read(&mut buf).unwrap_or(0);
            assert_eq!(n, 0, "{label}: the connection over the cap got bytes");
            assert!(
                started.elapsed() < LIMIT,
                "{label}: the connection over the cap was not refused at once ({:?})",
                started.elapsed()
            );
            drop(held);
            // The server sees them close before the metrics request below asks for a slot.
            std::thread::sleep(Duration::from_millis(200));
        });
        eventually(
            &format!("{label}: per-client refusal counted"),
            Duration::from_secs(3),
            || async { count(site, site.refused, refused_label).await > before_refused },
        )
        .await;

        // --- slow reader: asks for 64 MB over TLS and reads nothing.
        let before = count(site, site.timeouts, "send_timeout").await;
        let mut reader = s_client(site.tls);
        let mut stdin = reader.stdin.take().unwrap();
        stdin
            .write_all(b"GET /vod/a/v0/2.m4s HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        eventually(
            &format!("{label}: send_timeout counted"),
            Duration::from_secs(15),
            || async { count(site, site.timeouts, "send_timeout").await > before },
        )
        .await;
        drop(stdin);
        let _ = reader.kill();
        let _ = reader.wait();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn https_has_the_plain_listeners_protections_on_origin_and_edge() {
        let dir = tempfile::tempdir().unwrap();
        let origin = tls_origin(&dir.path().join("o")).await;
        check_all(&origin, "origin").await;
        let edge = tls_edge(&dir.path().join("e"), origin.server.addr).await;
        check_all(&edge, "edge").await;
        edge.server.join().await;
        origin.server.join().await;
    }
}

/// `--redirect-https` and `--h2c` on origin and edge, checked with curl: plain HTTP answers
/// 308 to the HTTPS listener's port except ACME HTTP-01 and health/metrics paths; h2c only
/// when asked for.
mod redirect_and_h2c {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::Command;

    use dashcdn_http::https::TlsArgs;
    use dashcdn_testkit::{origin, spawn_edge};

    use crate::util::{free_port_on, run};

    fn tls_args(
        dir: &Path,
        redirect: bool,
        h2c: bool,
    ) -> (TlsArgs, SocketAddr, std::path::PathBuf) {
        let ca = dashcdn_http::tls::local_ca(&dir.join("ca")).unwrap();
        let pair = ca.issue("site", &["localhost", "127.0.0.1"]).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port_on(&["127.0.0.1"]))
            .parse()
            .unwrap();
        let args = TlsArgs {
            listen: Some(addr),
            cert: vec![pair.cert],
            key: vec![pair.key],
            redirect_https: redirect,
            h2c,
            ..Default::default()
        };
        (args, addr, ca.ca_cert())
    }

    /// curl → "`%{http_code} %{http_version} %{redirect_url}`", and its exit code.
    fn curl(args: &[&str]) -> (i32, String) {
        let out = run(Command::new("curl")
            .args(["-s", "--max-time", "10", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{http_version} %{redirect_url}")
            .args(args));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn check(label: &str, plain: SocketAddr, tls: SocketAddr, ca: &Path, health: &[&str]) {
        let seg = "/vod/a/v0/1.m4s?x=1";
        let (_, out) = curl(&[&format!("http://localhost:{}{seg}", plain.port())]);
        assert_eq!(
            out,
            format!("308 1.1 https://localhost:{}{seg}", tls.port()),
            "{label}: a plain request is sent to HTTPS on its port"
        );
        // Following it lands on HTTPS over HTTP/2.
        let (code, out) = curl(&[
            "-L",
            "--cacert",
            ca.to_str().unwrap(),
            &format!("http://localhost:{}{seg}", plain.port()),
        ]);
        assert!(code == 0 && out.starts_with("200 2 "), "{label}: -L: {out}");
        for path in health {
            let (_, out) = curl(&[&format!("http://127.0.0.1:{}{path}", plain.port())]);
            assert!(
                out.starts_with("200 1.1"),
                "{label}: {path} stays on plain HTTP: {out}"
            );
        }
        let (_, out) = curl(&[&format!(
            "http://127.0.0.1:{}/.well-known/acme-challenge/token",
            plain.port()
        )]);
        assert!(
            !out.starts_with("308"),
            "{label}: ACME HTTP-01 is not redirected: {out}"
        );
        // h2c: prior-knowledge HTTP/2 on the plain listener (health is not redirected).
        let (code, out) = curl(&[
            "--http2-prior-knowledge",
            &format!("http://127.0.0.1:{}{}", plain.port(), health[0]),
        ]);
        assert!(
            code == 0 && out.starts_with("200 2 "),
            "{label}: h2c: {out}"
        );
    }

    fn library(dir: &Path) -> std::path::PathBuf {
        let lib = dir.join("lib");
        std::fs::create_dir_all(lib.join("a/v0")).unwrap();
        std::fs::write(lib.join("a/v0/1.m4s"), vec![7u8; 1000]).unwrap();
        lib
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn plain_http_redirects_to_https_and_speaks_h2c_when_asked_on_origin_and_edge() {
        let dir = tempfile::tempdir().unwrap();
        let (args, tls, ca) = tls_args(&dir.path().join("o"), true, true);
        let o = origin(&library(dir.path())).config(|c| c.tls = args).await;
        tokio::task::block_in_place(|| {
            check("origin", o.addr, tls, &ca, &["/healthz", "/metrics"])
        });

        // The edges' upstream: an origin on plain HTTP only (a redirecting one would send
        // the edge its 308s).
        let plain = origin(&library(dir.path())).await;
        let (args, tls, ca) = tls_args(&dir.path().join("e"), true, true);
        let e = spawn_edge()
            .upstream(plain.addr)
            .config(|c| c.tls = args)
            .await;
        tokio::task::block_in_place(|| {
            check(
                "edge",
                e.addr,
                tls,
                &ca,
                &["/_edge/healthz", "/_edge/metrics"],
            )
        });

        // Without --h2c the plain listener speaks HTTP/1.1 only.
        let (args, _, _) = tls_args(&dir.path().join("p"), false, false);
        let p = spawn_edge()
            .upstream(plain.addr)
            .config(|c| c.tls = args)
            .await;
        tokio::task::block_in_place(|| {
            let (code, out) = curl(&[
                "--http2-prior-knowledge",
                &format!("http://127.0.0.1:{}/_edge/healthz", p.addr.port()),
            ]);
            assert!(
                code != 0 || !out.starts_with("200 2"),
                "h2c without --h2c: {out}"
            );
            let (_, out) = curl(&[&format!(
                "http://127.0.0.1:{}/vod/a/v0/1.m4s",
                p.addr.port()
            )]);
            assert!(
                out.starts_with("200 1.1"),
                "no redirect without --redirect-https: {out}"
            );
        });
        p.join().await;
        e.join().await;
        plain.join().await;
        o.join().await;
    }

    #[test]
    fn redirect_https_without_a_tls_listener_is_refused_at_start() {
        let out = run(crate::util::dashcdn().args([
            "edge",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--redirect-https",
        ]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--redirect-https needs --tls-listen"),
            "{err}"
        );
    }
}

/// dash.js in Chromium plays through an HTTPS edge over HTTP/2: `player/web/test/h2.mjs`
/// checks each response's negotiated protocol in Chromium's network events (CDP
/// `Network.responseReceived` → `response.protocol == "h2"`). Chromium trusts the test CA
/// through `--ignore-certificate-errors-spki-list` (hashes of the CA's and the leaf's
/// public keys), never the system store.
#[ignore = "slow: packages a clip and runs headless Chromium"]
#[tokio::test(flavor = "multi_thread")]
async fn dashjs_plays_through_an_https_edge_over_http2_in_chromium() {
    use std::net::SocketAddr;

    use dashcdn_origin::{package, PackageOptions};
    use dashcdn_testkit::{spawn_edge, spawn_origin, Clip};
    use tokio::io::{AsyncBufReadExt, BufReader};

    crate::browser::require_browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("lib");
    let lib = library.clone();
    tokio::task::spawn_blocking(move || {
        let source = lib.join("clip.mp4");
        std::fs::create_dir_all(&lib).unwrap();
        Clip::new(10.0).write(&source).unwrap();
        let mut opts = PackageOptions::new("abr", &lib);
        opts.ladder = "240p:700k,144p:150k".parse().unwrap();
        opts.segment_duration = 2.0;
        opts.encode.progress = false;
        package(&source, &opts).expect("packaging the clip");
        std::fs::remove_file(&source).unwrap();
    })
    .await
    .unwrap();

    let ca = dashcdn_http::tls::local_ca(&dir.path().join("ca")).unwrap();
    let pair = ca.issue("edge", &["localhost", "127.0.0.1"]).unwrap();
    let spki: Vec<String> = [ca.ca_cert(), pair.cert.clone()]
        .iter()
        .map(|pem| spki_sha256(pem))
        .collect();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port_on(&["127.0.0.1"]))
        .parse()
        .unwrap();
    let origin = spawn_origin(&library).await;
    let edge = spawn_edge()
        .upstream(origin.addr)
        .config(|c| {
            c.tls = dashcdn_http::https::TlsArgs {
                listen: Some(tls),
                cert: vec![pair.cert.clone()],
                key: vec![pair.key.clone()],
                ..Default::default()
            }
        })
        .await;

    let artifacts = crate::browser::artifact_dir().with_file_name("browser-h2");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new("node")
        .arg(repo.join("player/web/test/h2.mjs"))
        .arg(format!("https://127.0.0.1:{}", tls.port()))
        .arg(spki.join(","))
        .arg(&artifacts)
        .current_dir(repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut report = Vec::new();
    let status = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            report.push(line);
        }
        child.wait().await.unwrap()
    })
    .await
    .expect("h2.mjs hung for 180 s");
    edge.join().await;
    origin.join().await;
    let failed: Vec<&String> = report.iter().filter(|l| l.starts_with("not ok")).collect();
    assert!(
        status.success() && failed.is_empty(),
        "h2.mjs failed ({status}):\n{}",
        report.join("\n")
    );
    assert!(
        report
            .iter()
            .any(|l| l.starts_with("ok - every response from the edge was HTTP/2")),
        "the protocol check did not run:\n{}",
        report.join("\n")
    );
}

/// base64(SHA-256(SubjectPublicKeyInfo DER)) of a PEM certificate, as Chromium's
/// `--ignore-certificate-errors-spki-list` wants it (openssl, as the CA tests use).
fn spki_sha256(pem: &Path) -> String {
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | openssl base64 -A",
        pem.display()
    )));
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
