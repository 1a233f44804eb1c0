//! TLS for the origin's and edge's listeners (rustls, ring provider).
//!
//! - TLS 1.3 and 1.2; ECDSA and RSA certificates (both for one name: the client's
//!   signature schemes choose); SNI over several pairs with `*.` wildcards; the first pair is
//!   the default for no/unknown SNI unless [`TlsConfig::strict_sni`].
//! - Session resumption both ways: a server-side session cache (TLS 1.2 ids) and
//!   stateless tickets (rotating ticketer, TLS 1.3 and 1.2).
//! - ALPN `h2`, `http/1.1` (and `acme-tls/1` for TLS-ALPN-01 validations only).
//! - Reload without dropping connections: [`TlsServer::reload`] reads every pair again and
//!   swaps the set only when all of them load; otherwise the old set keeps serving and the
//!   error names the file. [`TlsServer::watch`] calls it on SIGHUP and when a file changes.
//! - [`serve_tls`]: one HTTPS listener on the shared accept loop ([`crate::serve`]);
//!   HTTP/1.1 and HTTP/2 by ALPN with hyper's HTTP/2 flood limits set ([`Limits`]).
//! - [`TlsArgs`]: `--tls-*`/`--acme-*` flags and `[tls]` config; [`Https`] runs all of it.
//! - [`local_ca`]: a local CA and leaf certificates in a folder (demo, tests).
//!
//! Layout: `load` (PEM → checked pair), `resolve` (SNI choice), `serve` (`serve_tls`),
//! `local_ca`.

mod load;
mod local_ca;
mod resolve;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

pub use local_ca::{local_ca, LocalCa};
pub use serve::{serve_tls, Limits};

pub(crate) use resolve::ACME_TLS_ALPN;

/// Errors loading TLS material. Each is one line naming the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid PEM ({reason})")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no private key in it (expected PEM PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: unusable private key ({reason})")]
    Key { path: PathBuf, reason: String },
    #[error("{key}: the private key does not match the certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{path}: certificate expired on {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("{path}: certificate is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("tls setup failed ({0})")]
    Rustls(String),
}

/// One certificate chain file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a TLS listener serves.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// `--tls-cert`/`--tls-key` pairs in order; the first is the default certificate.
    pub pairs: Vec<CertPair>,
    /// Unknown or missing SNI fails the handshake instead of getting the default pair.
    pub strict_sni: bool,
}

/// The crypto provider every dashcdn TLS config uses (ring: builds without cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS listener's certificates and rustls config; cheap to share (`Arc`).
#[derive(Debug)]
pub struct TlsServer {
    resolver: Arc<resolve::Resolver>,
    config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
    /// Pairs served, static ones from the config plus those ACME added.
    pairs: Mutex<Vec<CertPair>>,
    /// Modification times seen at the last (re)load, for the file watcher.
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsServer {
    /// Load every pair (all must be valid) and build the rustls config.
    pub fn new(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let loaded = load_all(&config.pairs, &provider)?;
        let resolver = Arc::new(resolve::Resolver::new(
            resolve::CertSet::new(&loaded),
            config.strict_sni,
        ));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        server.session_storage = ServerSessionMemoryCache::new(16 * 1024);
        server.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Rustls(e.to_string()))?;
        server.max_early_data_size = 0; // no 0-RTT: replayable GETs are not worth the risk here
        Ok(Arc::new(TlsServer {
            resolver,
            config: Arc::new(server),
            provider,
            stamps: Mutex::new(stamps(&config.pairs)),
            pairs: Mutex::new(config.pairs.clone()),
        }))
    }

    /// The rustls server config (for callers with their own accept loop).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// Read every pair again; swap them in only if all load. On error the old
    /// certificates keep serving.
    pub fn reload(&self) -> Result<usize, TlsError> {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps(&pairs);
        let loaded = load_all(&pairs, &self.provider)?;
        self.resolver.replace(resolve::CertSet::new(&loaded));
        Ok(loaded.len())
    }

    /// Add a pair (ACME's issued certificate) or replace the one with the same cert path,
    /// then reload. Fails, keeping the old set, if the pair does not load.
    pub fn add_pair(&self, pair: CertPair) -> Result<usize, TlsError> {
        load::load_pair(&pair.cert, &pair.key, &self.provider, SystemTime::now())?;
        {
            let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        self.reload()
    }

    /// Serve (or stop serving, `None`) a TLS-ALPN-01 challenge certificate for `name`.
    pub(crate) fn set_alpn_challenge(
        &self,
        name: &str,
        key: Option<Arc<rustls::sign::CertifiedKey>>,
    ) {
        self.resolver.set_challenge(name, key);
    }

    pub(crate) fn crypto(&self) -> &CryptoProvider {
        &self.provider
    }

    /// Reload on SIGHUP and when a certificate or key file changes (checked every
    /// `poll`), until `shutdown` completes. Errors are logged; the old set keeps serving.
    pub fn watch(
        self: &Arc<Self>,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "tls: no SIGHUP handler; reloading on file change only");
                    None
                }
            };
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                let why = tokio::select! {
                    _ = &mut shutdown => return,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
                    _ = tick.tick() => {
                        let pairs = this.pairs.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let now = stamps(&pairs);
                        if *this.stamps.lock().unwrap_or_else(|e| e.into_inner()) == now {
                            continue;
                        }
                        // Give a writer replacing cert then key a moment to finish both.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        "file change"
                    }
                };
                match this.reload() {
                    Ok(n) => tracing::info!(pairs = n, trigger = why, "tls: certificates reloaded"),
                    Err(e) => tracing::error!(
                        trigger = why,
                        "tls: reload refused, old certificates keep serving: {}",
                        dashcdn_config::chain(&e)
                    ),
                }
            }
        })
    }
}

fn stamps(pairs: &[CertPair]) -> Vec<Option<SystemTime>> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    pairs
        .iter()
        .flat_map(|p| [mtime(&p.cert), mtime(&p.key)])
        .collect()
}

fn load_all(pairs: &[CertPair], provider: &CryptoProvider) -> Result<Vec<load::Loaded>, TlsError> {
    let now = SystemTime::now();
    pairs
        .iter()
        .map(|p| load::load_pair(&p.cert, &p.key, provider, now))
        .collect()
}

/// Check a pair without serving it (for `--check` style validation and tests).
pub fn check_pair(pair: &CertPair) -> Result<(), TlsError> {
    load::load_pair(&pair.cert, &pair.key, &provider(), SystemTime::now()).map(|_| ())
}

/// Check PEM in memory as if it were `pair` (ACME checks an issued chain before writing it).
pub(crate) fn check_pem(cert: &[u8], key: &[u8], pair: &CertPair) -> Result<(), TlsError> {
    load::from_pem(
        cert,
        key,
        &pair.cert,
        &pair.key,
        &provider(),
        SystemTime::now(),
    )
    .map(|_| ())
}

/// The leaf's `notBefore`/`notAfter` of a PEM certificate file (ACME renewal timing).
pub fn validity(cert: &Path) -> Result<(SystemTime, SystemTime), TlsError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_owned(),
        source,
    })?;
    let der =
        rustls::pki_types::CertificateDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    let (_, nb, na) = load::inspect_leaf(&der, cert)?;
    Ok((nb, na))
}

#[cfg(test)]
mod tests;
