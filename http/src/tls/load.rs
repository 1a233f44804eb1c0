//! Reading one certificate/key pair from PEM files and checking it before it is served:
//! the key matches the leaf, the leaf is inside its validity window. Every error names the
//! file, so an operator reads one line and knows which file to fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// A certificate chain and its key, checked and ready for the resolver.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) key: Arc<CertifiedKey>,
    /// DNS names of the leaf (subjectAltName, or the CN when there is none): what SNI matches.
    pub(crate) names: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Load and check `cert` + `key` at `now`.
pub(crate) fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    from_pem(&cert_pem, &key_pem, cert, key, provider, now)
}

/// The same checks on PEM already in memory (ACME hands its certificate over this way);
/// `cert`/`key` are the names used in errors.
pub(crate) fn from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key.to_owned(),
        },
        other => TlsError::Pem {
            path: key.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let (names, not_before, not_after) = inspect_leaf(&chain[0], cert)?;
    if now > not_after {
        return Err(TlsError::Expired {
            path: cert.to_owned(),
            not_after: httpdate::fmt_http_date(not_after),
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: cert.to_owned(),
            not_before: httpdate::fmt_http_date(not_before),
        });
    }
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            key: key.to_owned(),
            cert: cert.to_owned(),
        },
        other => TlsError::Key {
            path: key.to_owned(),
            reason: other.to_string(),
        },
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
    })
}

/// Names and validity window of a leaf certificate.
pub(crate) fn inspect_leaf(
    der: &CertificateDer<'_>,
    path: &Path,
) -> Result<(Vec<String>, SystemTime, SystemTime), TlsError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let bad = |reason: String| TlsError::Pem {
        path: PathBuf::from(path),
        reason,
    };
    let (_, x509) = X509Certificate::from_der(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in x509.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    let to_time = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    let validity = x509.validity();
    Ok((
        names,
        to_time(validity.not_before),
        to_time(validity.not_after),
    ))
}
