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
