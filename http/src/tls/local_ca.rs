//! A local certificate authority in a folder, for `dashcdn demo` and tests: `ca.pem` +
//! `ca.key` (ECDSA P-256, kept across runs so a browser trusts it once), and leaf
//! certificates it signs (`{stem}.pem` + `{stem}.key`).
//!
//! ```no_run
//! # fn main() -> Result<(), dashcdn_http::tls::TlsError> {
//! let ca = dashcdn_http::tls::local_ca(std::path::Path::new("data/tls"))?;
//! let pair = ca.issue("localhost", &["localhost", "127.0.0.1", "::1"])?;
//! // serve `pair`; clients trust `ca.ca_cert()` (curl --cacert data/tls/ca.pem)
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{CertPair, TlsError};

/// A CA whose files live in one folder.
pub struct LocalCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").field("dir", &self.dir).finish()
    }
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn write(path: &Path, contents: &str) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|e| invalid(path, format!("cannot write ({e})")))
}

/// Open the CA in `dir`, creating the folder and a new CA when there is none.
pub fn local_ca(dir: &Path) -> Result<LocalCa, TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| invalid(dir, format!("cannot create ({e})")))?;
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca.key");
    if cert_path.exists() && key_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| invalid(&key_path, e))?;
        let issuer = Issuer::from_ca_cert_pem(&read(&cert_path)?, key)
            .map_err(|e| invalid(&cert_path, e))?;
        return Ok(LocalCa {
            dir: dir.to_owned(),
            issuer,
        });
    }
    let key = KeyPair::generate().map_err(|e| invalid(&key_path, e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid(dir, e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "dashcdn local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 86400)).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(&cert_path, e))?;
    write(&key_path, &key.serialize_pem())?;
    write(&cert_path, &cert.pem())?;
    Ok(LocalCa {
        dir: dir.to_owned(),
        issuer: Issuer::new(params, key),
    })
}

impl LocalCa {
    /// The CA certificate clients trust (`curl --cacert`, `--upstream-ca`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for `names` (DNS names or IP addresses), valid for 90 days from an hour ago.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Result<CertPair, TlsError> {
        let now = SystemTime::now();
        self.issue_valid(
            stem,
            names,
            now - Duration::from_secs(3600),
            now + Duration::from_secs(90 * 86400),
        )
    }

    /// A leaf with an explicit validity window (tests make expired ones with it).
    pub fn issue_valid(
        &self,
        stem: &str,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertPair, TlsError> {
        let key = KeyPair::generate().map_err(|e| invalid(&self.dir, e))?;
        self.issue_for_key(stem, names, &key, not_before, not_after)
    }

    /// A leaf for a key made elsewhere (an RSA key from `openssl genrsa`: ring cannot
    /// generate RSA keys), written next to it.
    pub fn issue_for_key(
        &self,
        stem: &str,
        names: &[&str],
        key: &KeyPair,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertPair, TlsError> {
        let pair = CertPair {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params =
            CertificateParams::new(names.clone()).map_err(|e| invalid(&pair.cert, e))?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|e| invalid(&pair.cert, e))?;
        // Key first: a watcher that sees the new cert should find its key already there.
        write(&pair.key, &key.serialize_pem())?;
        write(&pair.cert, &cert.pem())?;
        Ok(pair)
    }
}
