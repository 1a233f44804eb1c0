//! Real handshakes over loopback sockets against certificates made by [`local_ca`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashcdn_config::chain;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::*;

const DAY: Duration = Duration::from_secs(86400);

fn client(ca: &Path, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(crate::client::roots(Some(ca)).unwrap())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// A listener that accepts TLS handshakes forever (no HTTP), for certificate checks.
async fn handshake_server(tls: Arc<TlsServer>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = tls.acceptor();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(s).await {
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
                }
            });
        }
    });
    addr
}

struct Seen {
    names: Vec<String>,
    version: ProtocolVersion,
    alpn: Option<Vec<u8>>,
    kind: HandshakeKind,
}

async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
) -> Result<Seen, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let mut s = TlsConnector::from(config)
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await?;
    // Read to the server's close: TLS 1.3 tickets come after the handshake.
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut Vec::new()).await;
    let (_, c) = s.get_ref();
    let leaf = &c.peer_certificates().unwrap()[0];
    let (names, _, _) = load::inspect_leaf(leaf, Path::new("peer")).unwrap();
    Ok(Seen {
        names,
        version: c.protocol_version().unwrap(),
        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
        kind: c.handshake_kind().unwrap(),
    })
}

#[tokio::test]
async fn sni_picks_the_pair_for_the_name_tls13_alpn_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let a = ca.issue("a", &["a.test"]).unwrap();
    let b = ca.issue("b", &["b.test", "*.wild.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![a, b],
        strict_sni: false,
    })
    .unwrap();
    let addr = handshake_server(tls).await;
    let c = client(&ca.ca_cert(), &[b"h2", b"http/1.1"]);
    let seen = connect(addr, c.clone(), "b.test").await.unwrap();
    assert_eq!(seen.names, ["b.test", "*.wild.test"]);
    assert_eq!(seen.version, ProtocolVersion::TLSv1_3);
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        connect(addr, c.clone(), "x.wild.test").await.unwrap().names[0],
        "b.test"
    );
    assert_eq!(
        connect(addr, c.clone(), "a.test").await.unwrap().names,
        ["a.test"]
    );
    // An unknown name gets the default (first) pair, which the client then rejects.
    let err = connect(addr, c.clone(), "other.test").await.err().unwrap();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // HTTP/1.1-only clients still negotiate.
    let h1 = client(&ca.ca_cert(), &[b"http/1.1"]);
    let seen = connect(addr, h1, "a.test").await.unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn strict_sni_fails_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let a = ca.issue("a", &["a.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![a],
        strict_sni: true,
    })
    .unwrap();
    let addr = handshake_server(tls).await;
    let c = client(&ca.ca_cert(), &[b"h2"]);
    assert!(connect(addr, c.clone(), "a.test").await.is_ok());
    let err = connect(addr, c, "other.test").await.err().unwrap();
    assert!(err.to_string().contains("alert"), "{err}");
}

#[tokio::test]
async fn tls12_and_resumption_work() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let a = ca.issue("a", &["a.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![a],
        ..Default::default()
    })
    .unwrap();
    let addr = handshake_server(tls).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(crate::client::roots(Some(&ca.ca_cert())).unwrap())
            .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec()];
        let c = Arc::new(c);
        let first = connect(addr, c.clone(), "a.test").await.unwrap();
        assert_eq!(first.kind, HandshakeKind::Full);
        assert_eq!(first.version, version.version);
        let second = connect(addr, c, "a.test").await.unwrap();
        assert_eq!(second.kind, HandshakeKind::Resumed, "{:?}", version.version);
    }
}

#[tokio::test]
async fn rsa_and_ecdsa_for_one_name_follow_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let ec = ca.issue("ec", &["a.test"]).unwrap();
    let rsa_pem = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl is installed");
    let rsa_key = rcgen::KeyPair::from_pem(&String::from_utf8(rsa_pem.stdout).unwrap()).unwrap();
    let now = SystemTime::now();
    let rsa = ca
        .issue_for_key("rsa", &["a.test"], &rsa_key, now - DAY, now + DAY)
        .unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![ec, rsa],
        ..Default::default()
    })
    .unwrap();
    let addr = handshake_server(tls).await;
    let roots = Arc::new(crate::client::roots(Some(&ca.ca_cert())).unwrap());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .unwrap();
    let verify = |rsa_only: bool| {
        let webpki = webpki.clone();
        async move {
            let c = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Schemes {
                    inner: webpki,
                    rsa_only,
                }))
                .with_no_client_auth();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let s = TlsConnector::from(Arc::new(c))
                .connect(ServerName::try_from("a.test").unwrap(), tcp)
                .await
                .unwrap();
            let leaf = s.get_ref().1.peer_certificates().unwrap()[0].clone();
            use x509_parser::prelude::FromDer;
            let (_, x) =
                x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()).unwrap();
            x.public_key().algorithm.algorithm.to_id_string()
        }
    };
    // A client that verifies only RSA signatures gets the RSA certificate.
    assert_eq!(verify(true).await, "1.2.840.113549.1.1.1"); // rsaEncryption
    assert_eq!(verify(false).await, "1.2.840.10045.2.1"); // id-ecPublicKey
}
#[test]
fn bad_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let now = SystemTime::now();
    let a = ca.issue("a", &["a.test"]).unwrap();
    let b = ca.issue("b", &["b.test"]).unwrap();
    let line = |pair: CertPair| {
        let e = check_pair(&pair).unwrap_err();
        let s = chain(&e);
        assert!(!s.contains('\n'), "{s}");
        s
    };
    let mismatch = line(CertPair {
        cert: a.cert.clone(),
        key: b.key.clone(),
    });
    assert!(
        mismatch.contains("b.key")
            && mismatch.contains("a.pem")
            && mismatch.contains("does not match"),
        "{mismatch}"
    );
    let expired = ca
        .issue_valid("old", &["a.test"], now - 10 * DAY, now - DAY)
        .unwrap();
    let e = line(expired);
    assert!(e.contains("old.pem") && e.contains("expired on"), "{e}");
    let future = ca
        .issue_valid("future", &["a.test"], now + DAY, now + 10 * DAY)
        .unwrap();
    assert!(line(future).contains("not valid before"));
    let missing = line(CertPair {
        cert: dir.path().join("nope.pem"),
        key: a.key.clone(),
    });
    assert!(
        missing.starts_with("cannot read ") && missing.contains("nope.pem"),
        "{missing}"
    );
    std::fs::write(dir.path().join("empty.pem"), "hello\n").unwrap();
    let empty = line(CertPair {
        cert: dir.path().join("empty.pem"),
        key: a.key.clone(),
    });
    assert!(
        empty.contains("empty.pem") && empty.contains("no certificate"),
        "{empty}"
    );
    let nokey = line(CertPair {
        cert: a.cert.clone(),
        key: a.cert.clone(),
    });
    assert!(
        nokey.contains("a.pem") && nokey.contains("no private key"),
        "{nokey}"
    );
    // The same at start: TlsServer::new refuses.
    assert!(TlsServer::new(&TlsConfig {
        pairs: vec![CertPair {
            cert: a.cert.clone(),
            key: b.key.clone()
        }],
        ..Default::default()
    })
    .is_err());
}

#[tokio::test]
async fn reload_swaps_certificates_and_a_bad_reload_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let pair = ca.issue("site", &["old.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![pair.clone()],
        ..Default::default()
    })
    .unwrap();
    let addr = handshake_server(tls.clone()).await;
    let c = client(&ca.ca_cert(), &[b"h2"]);
    assert!(connect(addr, c.clone(), "old.test").await.is_ok());

    // A key that does not match: refused, the old certificate keeps serving.
    let other = ca.issue("other", &["new.test"]).unwrap();
    let good_key = std::fs::read(&pair.key).unwrap();
    std::fs::copy(&other.key, &pair.key).unwrap();
    let e = chain(&tls.reload().unwrap_err());
    assert!(
        e.contains("site.key") && e.contains("does not match"),
        "{e}"
    );
    std::fs::write(&pair.key, good_key).unwrap();
    assert!(connect(addr, c.clone(), "old.test").await.is_ok());

    // A good new pair at the same paths: new handshakes get it.
    std::fs::copy(&other.cert, &pair.cert).unwrap();
    std::fs::copy(&other.key, &pair.key).unwrap();
    assert_eq!(tls.reload().unwrap(), 1);
    assert_eq!(
        connect(addr, c.clone(), "new.test").await.unwrap().names,
        ["new.test"]
    );
}

#[tokio::test]
async fn the_watcher_reloads_when_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let pair = ca.issue("site", &["old.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![pair.clone()],
        ..Default::default()
    })
    .unwrap();
    let addr = handshake_server(tls.clone()).await;
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _w = tls.watch(Duration::from_millis(50), async {
        let _ = stopped.await;
    });
    // mtime granularity: make sure the rewrite is seen as a change.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ca.issue("site", &["new.test"]).unwrap();
    let c = client(&ca.ca_cert(), &[b"h2"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(seen) = connect(addr, c.clone(), "new.test").await {
            assert_eq!(seen.names, ["new.test"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload after the files changed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn acme_tls_alpn_handshakes_get_only_the_challenge_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(dir.path()).unwrap();
    let a = ca.issue("a", &["a.test"]).unwrap();
    let tls = TlsServer::new(&TlsConfig {
        pairs: vec![a],
        ..Default::default()
    })
    .unwrap();
    let addr = handshake_server(tls.clone()).await;
    let verifier_free = |alpn: &[u8]| {
        // Challenge certificates are self-signed: the validator checks the extension, not a chain.
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth();
        c.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(c)
    };
    // No challenge pending: the handshake fails rather than showing the real certificate.
    assert!(connect(addr, verifier_free(ACME_TLS_ALPN), "a.test")
        .await
        .is_err());
    let key = crate::acme::alpn_challenge_cert("a.test", &[7u8; 32], &tls).unwrap();
    tls.set_alpn_challenge("a.test", Some(key));
    let seen = connect(addr, verifier_free(ACME_TLS_ALPN), "a.test")
        .await
        .unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(ACME_TLS_ALPN));
    assert_eq!(seen.names, ["a.test"]);
    // Ordinary clients meanwhile still get the real one.
    assert!(connect(addr, client(&ca.ca_cert(), &[b"h2"]), "a.test")
        .await
        .is_ok());
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A verifier that checks chains like webpki but offers only RSA (or all) schemes, so the
/// server's choice between an ECDSA and an RSA pair can be seen.
#[derive(Debug)]
struct Schemes {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    rsa_only: bool,
}

impl rustls::client::danger::ServerCertVerifier for Schemes {
    fn verify_server_cert(
        &self,
        end: &rustls::pki_types::CertificateDer<'_>,
        im: &[rustls::pki_types::CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end, im, name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        let all = self.inner.supported_verify_schemes();
        if !self.rsa_only {
            return all;
        }
        all.into_iter()
            .filter(|s| format!("{s:?}").starts_with("RSA"))
            .collect()
    }
}
