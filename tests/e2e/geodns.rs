//! `dashcdn geodns` as an operator runs it: a config file, dig against it, SIGHUP reloads
//! (a broken MaxMind database refused while the old one keeps routing, a good change
//! applied), and a broken database refused at start.

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{dashcdn, free_port_on, run};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn test_db(name: &str) -> PathBuf {
    repo().join("geodns/tests/data").join(name)
}

/// A port free for both UDP and TCP on 127.0.0.1 (below the ephemeral range, see
/// [`free_port_on`]).
fn dns_port() -> u16 {
    loop {
        let p = free_port_on(&["127.0.0.1"]);
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// geodns/example.toml with a MaxMind database and no health probes (nothing listens on
/// the example's edges here, and with probes every PoP would go down).
fn config(db: &Path, extra: &str) -> String {
    let text = std::fs::read_to_string(repo().join("geodns/example.toml")).unwrap();
    let text = text.replace(
        "# maxmind = \"tests/data/GeoIP2-City-Test.mmdb\"",
        &format!("maxmind = {:?}", db.display().to_string()),
    );
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("health_url"))
        .map(|l| format!("{l}\n"))
        .collect();
    // Top-level tables must come before the zones' array tables.
    text.replacen("[[zone]]", &format!("{extra}\n[[zone]]"), 1)
}

fn dig_a(port: u16, subnet: &str) -> String {
    let out = run(std::process::Command::new("dig").args([
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        "a1105.kingcdn.test",
        &format!("+subnet={subnet}"),
        "+short",
        "+tries=1",
        "+time=2",
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {sig}");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reloads_and_a_broken_database_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.toml");
    let good_db = test_db("GeoIP2-City-Test.mmdb");
    std::fs::write(&path, config(&good_db, "")).unwrap();
    let port = dns_port();
    let log = dir.path().join("geodns.log");
    let mut server = Server(
        dashcdn()
            .args(["geodns", "--config"])
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let london = "81.2.69.160/27";
    wait_for("geodns to answer", || dig_a(port, london) == "127.0.1.1");

    // A broken database: the reload is refused, the old database keeps routing.
    let broken = test_db("GeoIP2-City-Test-Broken-Double-Format.mmdb");
    std::fs::write(&path, config(&broken, "")).unwrap();
    signal(&server.0, "HUP");
    wait_for("the refusal in the log", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reload refused")
    });
    assert_eq!(dig_a(port, london), "127.0.1.1");
    assert_eq!(dig_a(port, "175.16.199.0/24"), "127.0.3.1");

    // A good change is applied: pin London's network to ap-east with a coverage zone.
    std::fs::write(
        &path,
        config(
            &good_db,
            "[[coverage]]\ncidr = \"81.2.69.0/24\"\npop = \"ap-east\"\n",
        ),
    )
    .unwrap();
    signal(&server.0, "HUP");
    wait_for("the new coverage zone", || {
        dig_a(port, london) == "127.0.3.1"
    });
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "geodns exited during reloads"
    );

    signal(&server.0, "TERM");
    let status = server.0.wait().unwrap();
    assert!(status.success(), "geodns exited with {status}");
}

#[test]
fn a_broken_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.toml");
    let broken = test_db("GeoIP2-City-Test-Broken-Double-Format.mmdb");
    std::fs::write(&path, config(&broken, "")).unwrap();
    let mut child = dashcdn()
        .args(["geodns", "--config"])
        .arg(&path)
        .args(["--listen", &format!("127.0.0.1:{}", dns_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        err.contains("GeoIP2-City-Test-Broken-Double-Format.mmdb"),
        "the error names the file: {err}"
    );
}

/// `dashcdn geodns explain IP | head -1`: the reader closes the pipe early; that is not
/// a failure (it used to panic with exit 101).
#[test]
fn explain_into_a_closed_pipe_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.toml");
    std::fs::write(&path, config(&test_db("GeoIP2-City-Test.mmdb"), "")).unwrap();
    let mut child = dashcdn()
        .args(["geodns", "--config"])
        .arg(&path)
        .args(["explain", "81.2.69.160"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read nothing and close our end before it writes: the write meets a broken pipe.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `dashcdn geodns keygen` writes a key and prints the DS record; a server with
/// `--dnssec-keys` then signs.
#[test]
fn keygen_prints_a_ds_and_the_server_signs_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = run(dashcdn()
        .args(["geodns", "keygen", "--zone", "kingcdn.test", "--dir"])
        .arg(&keys));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("kingcdn.test. 3600 IN DS "), "{text}");

    let path = dir.path().join("geodns.toml");
    std::fs::write(&path, config(&test_db("GeoIP2-City-Test.mmdb"), "")).unwrap();
    let port = dns_port();
    let child = dashcdn()
        .args(["geodns", "--config"])
        .arg(&path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--dnssec-keys"])
        .arg(&keys)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let signed = || {
        let out = run(std::process::Command::new("dig").args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "a1105.kingcdn.test",
            "+dnssec",
            "+tries=1",
            "+time=1",
        ]));
        String::from_utf8_lossy(&out.stdout).contains("RRSIG")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !signed() {
        assert!(Instant::now() < deadline, "no signed answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}
