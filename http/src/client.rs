//! TLS to upstreams (edge → origin or parent): a rustls client config that trusts the
//! system roots (`/etc/ssl/certs` via rustls-native-certs) or only the CAs of
//! `--upstream-ca FILE`, offers ALPN `h2` and `http/1.1`, and an HTTPS-or-HTTP connector for
//! hyper-util's pooled client built on it.
//!
//! A certificate the roots do not vouch for fails the handshake; the connector's error chain
//! carries rustls's reason ("invalid peer certificate: UnknownIssuer"), which the caller logs
//! beside the upstream's URL.

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::tls::TlsError;

/// The connector [`https_connector`] returns (`http://` and `https://`).
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Trust anchors: `ca` alone when given, else the system's roots.
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })?;
            for der in CertificateDer::pem_slice_iter(&pem) {
                let der = der.map_err(|e| TlsError::Pem {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                store.add(der).map_err(|e| TlsError::Invalid {
                    path: path.to_owned(),
                    reason: format!("not a usable CA certificate ({e})"),
                })?;
            }
            if store.is_empty() {
                return Err(TlsError::NoCertificate {
                    path: path.to_owned(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "tls client: skipping a system root");
            }
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("tls client: no system root certificates found; HTTPS upstreams will fail unless --upstream-ca is given");
            }
        }
    }
    Ok(store)
}

/// Client config for upstreams: TLS 1.3 and 1.2, ALPN h2 then http/1.1, resumption on.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connector for `hyper_util::client::legacy::Client` that speaks `https://` with
/// [`client_config`] and still allows `http://`; `http` is the caller's TCP connector
/// (timeouts, nodelay; `enforce_http(false)` is set here).
pub fn https_connector(
    mut http: HttpConnector,
    ca: Option<&Path>,
) -> Result<HttpsConnector, TlsError> {
    http.enforce_http(false);
    let mut config = Arc::unwrap_or_clone(client_config(ca)?);
    config.alpn_protocols.clear(); // the connector sets them from the versions enabled below
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http))
}
