//! DNSSEC online signing checked by real validators: `delv` (bind9-dnsutils) against the
//! server directly, and unbound (a validating resolver with ECS) in the slow tier.
//!
//! Each test makes its own keys with `keygen` and uses the printed DS records as trust
//! anchors, as an operator would give them to the parent.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use dashcdn_geodns::{keygen, GeodnsConfig, KeyAlgorithm};
use support::*;

const EU: &str = "127.0.1.1";
const US: &str = "127.0.2.1";

struct Signed {
    dir: tempfile::TempDir,
    /// `zone. 3600 IN DS …` per zone.
    ds: Vec<String>,
}

fn keys(alg: KeyAlgorithm) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let keydir = dir.path().join("keys");
    let ds = ["kingcdn.test", "netcinema.test"]
        .iter()
        .map(|z| keygen(z, alg, &keydir).unwrap().1)
        .collect();
    Signed { dir, ds }
}

impl Signed {
    fn keydir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn config(&self) -> GeodnsConfig {
        let mut c = config("");
        c.dnssec_keys = Some(self.keydir());
        c
    }

    /// A bind-style trust anchor file for delv.
    fn anchors(&self) -> PathBuf {
        let path = self.dir.path().join("anchors.conf");
        let mut text = String::from("trust-anchors {\n");
        for ds in &self.ds {
            let f: Vec<&str> = ds.split_whitespace().collect();
            // zone TTL IN DS tag alg digest-type digest
            text += &format!(
                "  {} static-ds {} {} {} \"{}\";\n",
                f[0], f[4], f[5], f[6], f[7]
            );
        }
        text += "};\n";
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// `delv @server -a anchors +root=ZONE NAME TYPE`: prints `; fully validated` on success.
async fn delv(addr: SocketAddr, anchors: &Path, zone: &str, args: &[&str]) -> String {
    let mut c = Command::new("delv");
    c.arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .arg("-a")
        .arg(anchors)
        .arg(format!("+root={zone}"))
        .args(args);
    let out = tokio::task::spawn_blocking(move || c.output())
        .await
        .unwrap()
        .expect("delv runs (bind9-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_answers_carry_rrsigs_and_the_apex_its_keys() {
    let k = keys(KeyAlgorithm::Ecdsap256sha256);
    let s = spawn(k.config()).await;
    let d = dig(
        s.addr,
        &["a1105.kingcdn.test", "+dnssec", "+subnet=81.2.69.160/27"],
    )
    .await;
    assert_eq!(d.values("A"), [EU], "{}", d.text);
    assert_eq!(d.values("RRSIG").len(), 1, "{}", d.text);
    assert!(
        !d.flags.contains(&"ad".to_string()),
        "an authority never sets AD"
    );
    // Without DO: no signatures.
    let d = dig(s.addr, &["a1105.kingcdn.test"]).await;
    assert!(d.values("RRSIG").is_empty(), "{}", d.text);
    let d = dig(s.addr, &["kingcdn.test", "DNSKEY", "+dnssec"]).await;
    assert_eq!(d.values("DNSKEY").len(), 1, "{}", d.text);
    assert_eq!(d.values("RRSIG").len(), 1, "{}", d.text);
    let d = dig(s.addr, &["kingcdn.test", "CDS"]).await;
    assert_eq!(d.values("CDS").len(), 1, "{}", d.text);
    // Compact denial: a missing name is NOERROR with an NSEC at the name (RFC 9824).
    let d = dig(s.addr, &["nope.kingcdn.test", "A", "+dnssec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(
        d.text.contains("nope.kingcdn.test.") && d.text.contains("NSEC"),
        "{}",
        d.text
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_every_pop_answer_and_the_denials() {
    for alg in [KeyAlgorithm::Ecdsap256sha256, KeyAlgorithm::Ed25519] {
        let k = keys(alg);
        let anchors = k.anchors();
        let s = spawn(k.config()).await;
        // delv asks from 127.0.0.1: the default PoP (us-west) answers.
        let out = delv(
            s.addr,
            &anchors,
            "kingcdn.test",
            &["a1105.kingcdn.test", "A"],
        )
        .await;
        assert!(out.contains("; fully validated"), "{alg:?}: {out}");
        assert!(out.contains(US), "{out}");
        for (what, name, qtype) in [
            ("NODATA", "a1105.kingcdn.test", "MX"),
            ("NXDOMAIN", "nope.kingcdn.test", "A"),
            ("DNSKEY", "kingcdn.test", "DNSKEY"),
        ] {
            let out = delv(s.addr, &anchors, "kingcdn.test", &[name, qtype]).await;
            assert!(
                out.contains("; fully validated")
                    || out.contains("; negative response, fully validated"),
                "{what}: {out}"
            );
        }
        let out = delv(
            s.addr,
            &anchors,
            "netcinema.test",
            &["netcinema.test", "MX"],
        )
        .await;
        assert!(out.contains("; fully validated"), "{out}");
        // Signatures from keys the anchor does not name do not validate.
        let other = keys(alg);
        let out = delv(
            s.addr,
            &other.anchors(),
            "kingcdn.test",
            &["a1105.kingcdn.test", "A"],
        )
        .await;
        assert!(!out.contains("fully validated"), "{out}");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_key_set_keeps_validating() {
    let k = keys(KeyAlgorithm::Ecdsap256sha256);
    let s = spawn(k.config()).await;
    // Roll: a second key joins (double signature), then the first leaves.
    let old: Vec<_> = std::fs::read_dir(k.keydir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let (_, new_ds, _) = keygen("kingcdn.test", KeyAlgorithm::Ed25519, &k.keydir()).unwrap();
    s.dns.reload(k.config()).await.unwrap();
    let d = dig(s.addr, &["a1105.kingcdn.test", "+dnssec"]).await;
    assert_eq!(d.values("RRSIG").len(), 2, "both keys sign: {}", d.text);
    for p in old {
        std::fs::remove_file(p).unwrap();
    }
    s.dns.reload(k.config()).await.unwrap();
    let rolled = Signed {
        dir: k.dir,
        ds: vec![new_ds],
    };
    let out = delv(
        s.addr,
        &rolled.anchors(),
        "kingcdn.test",
        &["a1105.kingcdn.test", "A"],
    )
    .await;
    assert!(out.contains("; fully validated"), "{out}");
    s.stop().await;
}

/// A validating unbound on a loopback port, stub zones pointing at geodns, our DS records
/// as its trust anchors, ECS sent to geodns. Killed on drop.
struct Unbound {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn unbound(geodns: SocketAddr, ds: &[String]) -> Unbound {
    // The port is picked by binding and releasing it, so another process may take it (UDP
    // or TCP) before unbound binds: unbound then exits at once. Try again on a new port.
    let mut failures = String::new();
    for _ in 0..3 {
        match unbound_once(geodns, ds).await {
            Ok(u) => return u,
            Err(e) => failures += &format!("{e}\n"),
        }
    }
    panic!("unbound did not start:\n{failures}");
}

/// One start: `Err` with unbound's log when it exited before answering.
async fn unbound_once(geodns: SocketAddr, ds: &[String]) -> Result<Unbound, String> {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-tcp: yes\n  do-ip6: no\n\
         \x20 do-not-query-localhost: no\n  username: \"\"\n  chroot: \"\"\n\
         \x20 directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n\
         \x20 verbosity: 1\n  val-log-level: 2\n  access-control: 127.0.0.0/8 allow\n\
         \x20 module-config: \"subnetcache validator iterator\"\n\
         \x20 send-client-subnet: 127.0.0.1\n  client-subnet-always-forward: yes\n\
         \x20 max-client-subnet-ipv4: 32\n  max-client-subnet-ipv6: 128\n\
         \x20 qname-minimisation: no\n  local-zone: \"test.\" nodefault\n",
        dir = dir.path().display()
    );
    for d in ds {
        conf += &format!("  trust-anchor: \"{d}\"\n");
    }
    for zone in ["kingcdn.test", "netcinema.test"] {
        conf += &format!(
            "stub-zone:\n  name: \"{zone}\"\n  stub-addr: 127.0.0.1@{}\n",
            geodns.port()
        );
    }
    let path = dir.path().join("unbound.conf");
    std::fs::write(&path, conf).unwrap();
    let log_path = dir.path().join("unbound.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new("unbound")
        .arg("-d")
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("unbound runs (geodns/tests/setup.sh installs it)");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut u = Unbound {
        addr,
        child,
        _dir: dir,
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Up when it answers what it answers itself; then primed when a zone answers at all
    // (the first answer waits for the validator's DNSKEY fetches: slow on a loaded machine,
    // slower with anchors it cannot match, when the answer is SERVFAIL).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = u.child.try_wait() {
            return Err(format!(
                "port {port}: unbound exited ({status}):\n{}",
                log()
            ));
        }
        if !dig(addr, &["version.server", "CH", "TXT"])
            .await
            .status
            .is_empty()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unbound does not answer on port {port}:\n{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let primed = eventually(std::time::Duration::from_secs(30), || async {
        !dig(addr, &["kingcdn.test", "SOA"]).await.status.is_empty()
    })
    .await;
    assert!(primed, "unbound answers for kingcdn.test:\n{}", log());
    Ok(u)
}

/// `dig` through a resolver: recursion desired (the helper sends +norec; +rec wins).
async fn resolve(addr: SocketAddr, args: &[&str]) -> Dig {
    let mut a = vec!["+rec", "+dnssec"];
    a.extend_from_slice(args);
    dig(addr, &a).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: starts a validating unbound"]
async fn unbound_validates_geo_answers_for_every_region_with_ecs() {
    let k = keys(KeyAlgorithm::Ecdsap256sha256);
    let s = spawn(k.config()).await;
    let u = unbound(s.addr, &k.ds).await;
    for (subnet, want) in [
        ("81.2.69.160/27", EU),
        ("216.160.83.56/29", US),
        ("175.16.199.0/24", "127.0.3.1"),
        // IPv4-mapped in an IPv6 option: scope in IPv6 bits, so Seattle is not served
        // London's cached answer.
        ("::ffff:81.2.69.160/123", EU),
        ("::ffff:216.160.83.56/125", US),
    ] {
        let d = resolve(
            u.addr,
            &["video.netcinema.test", "A", &format!("+subnet={subnet}")],
        )
        .await;
        assert_eq!(d.values("A"), [want], "{subnet}: {}", d.text);
        assert!(d.flags.contains(&"ad".to_string()), "validated: {}", d.text);
    }
    // NODATA and a name that does not exist (NOERROR under compact denial) validate.
    for (name, qtype) in [("a1105.kingcdn.test", "MX"), ("nope.kingcdn.test", "A")] {
        let d = resolve(u.addr, &[name, qtype]).await;
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        assert!(d.answers.is_empty(), "{}", d.text);
        assert!(d.flags.contains(&"ad".to_string()), "validated: {}", d.text);
    }
    drop(u);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_pops_down_answer_validates_too() {
    let k = keys(KeyAlgorithm::Ecdsap256sha256);
    let edges = [fake_edge().await, fake_edge().await, fake_edge().await];
    let urls: Vec<String> = edges.iter().map(|e| e.url.clone()).collect();
    let mut c = GeodnsConfig::from_toml(&config_text(Some(&city_db()), &urls, "")).unwrap();
    c.dnssec_keys = Some(k.keydir());
    let bound = c.health.detection_bound();
    let s = spawn(c).await;
    for e in &edges {
        e.set_healthy(false);
    }
    let all = eventually(bound * 10, || async {
        dig(s.addr, &["a1105.kingcdn.test"]).await.values("A").len() == 3
    })
    .await;
    assert!(all, "all PoPs answered when all are down");
    let out = delv(
        s.addr,
        &k.anchors(),
        "kingcdn.test",
        &["a1105.kingcdn.test", "A"],
    )
    .await;
    assert!(out.contains("; fully validated"), "{out}");
    assert!(
        [EU, US, "127.0.3.1"].iter().all(|a| out.contains(a)),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: starts a validating unbound"]
async fn unbound_refuses_signatures_from_a_key_it_does_not_trust() {
    let k = keys(KeyAlgorithm::Ed25519);
    let s = spawn(k.config()).await;
    // The anchors of another key set: geodns's signatures are bogus to this resolver.
    let other = keys(KeyAlgorithm::Ed25519);
    let u = unbound(s.addr, &other.ds).await;
    // Finding the signatures bogus takes unbound a while (DNSKEY fetched, retried from
    // every server): ask again until it answers, at most 10 × dig's 2 s.
    let mut d = resolve(u.addr, &["a1105.kingcdn.test", "A"]).await;
    for _ in 0..10 {
        if !d.status.is_empty() {
            break;
        }
        d = resolve(u.addr, &["a1105.kingcdn.test", "A"]).await;
    }
    assert_eq!(d.status, "SERVFAIL", "{}", d.text);
    drop(u);
    s.stop().await;
}
