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
