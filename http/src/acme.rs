//! Certificates from an ACME CA (RFC 8555) with instant-acme, served by a [`TlsServer`].
//!
//! - Challenges: HTTP-01 (the plain-HTTP listener answers `/.well-known/acme-challenge/`
//!   from [`Http01Answers`]), TLS-ALPN-01 (RFC 8737: the TLS listener serves a challenge
//!   certificate to `acme-tls/1` handshakes), DNS-01 (a [`TxtPublisher`] puts
//!   `_acme-challenge.<name>` TXT into geodns; see [`HttpTxtPublisher`]).
//! - Files in `--acme-dir`: `account.json` (credentials, reused), `<first-name>.pem` /
//!   `.key` (the issued chain and key; written to a temp file and renamed).
//! - Renewal at `renew_at` (default 2/3) of the lifetime; a failed attempt is retried with
//!   exponential backoff (`retry_min` doubling up to `retry_max`); the certificate already
//!   served keeps serving until a new one has loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::tls::{CertPair, TlsError, TlsServer};

/// The challenge type to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Http01,
    TlsAlpn01,
    Dns01,
}

impl std::str::FromStr for Challenge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http-01" => Ok(Challenge::Http01),
            "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
            "dns-01" => Ok(Challenge::Dns01),
            other => Err(format!(
                "unknown ACME challenge {other:?} (http-01, tls-alpn-01 or dns-01)"
            )),
        }
    }
}

/// `--acme-*` settings.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// Directory URL (`https://acme-v02.api.letsencrypt.org/directory`, Pebble's `/dir`).
    pub directory: String,
    /// Names on the certificate; the first names its files.
    pub domains: Vec<String>,
    pub email: Option<String>,
    /// Where the account and certificates are kept.
    pub dir: PathBuf,
    /// Trust for the ACME server's own HTTPS (a test CA); the system roots otherwise.
    pub ca_root: Option<PathBuf>,
    pub challenge: Challenge,
    /// Fraction of the lifetime after which to renew.
    pub renew_at: f64,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl AcmeConfig {
    pub fn new(directory: impl Into<String>, domains: Vec<String>, dir: PathBuf) -> Self {
        AcmeConfig {
            directory: directory.into(),
            domains,
            email: None,
            dir,
            ca_root: None,
            challenge: Challenge::Http01,
            renew_at: 2.0 / 3.0,
            retry_min: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
        }
    }

    /// Where the issued certificate is kept.
    pub fn pair(&self) -> CertPair {
        let stem = self
            .domains
            .first()
            .map(|d| d.replace('*', "_wildcard"))
            .unwrap_or_else(|| "acme".into());
        CertPair {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("acme: {0}")]
    Protocol(String),
    #[error("acme: the CA offered no {0:?} challenge for {1}")]
    NoChallenge(Challenge, String),
    #[error("acme: authorization for {0} is {1}")]
    Authorization(String, String),
    #[error("acme: order ended {0}")]
    Order(String),
    #[error("acme: no DNS-01 publisher configured (give --acme-dns-url and --acme-dns-token)")]
    NoPublisher,
    #[error("acme: publishing the TXT record failed ({0})")]
    Publish(String),
    #[error("acme: cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("acme: the issued certificate does not load")]
    Load(#[source] TlsError),
}

fn protocol(e: instant_acme::Error) -> AcmeError {
    AcmeError::Protocol(e.to_string())
}

/// HTTP-01 answers waiting for the CA: token → key authorization. The plain-HTTP router
/// calls [`Http01Answers::answer`] for `/.well-known/acme-challenge/{token}`.
#[derive(Debug, Clone, Default)]
pub struct Http01Answers(Arc<RwLock<HashMap<String, String>>>);

/// Path prefix of HTTP-01 (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

impl Http01Answers {
    /// The body to answer `path` with (`application/octet-stream`, 200), if it is a token
    /// being validated now.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// The whole answer for a router: `Some(200 text/plain key-authorization)` for a
    /// pending token, `None` to let the request through.
    pub fn respond(&self, path: &str) -> Option<http::Response<String>> {
        let body = self.answer(path)?;
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body)
            .ok()
    }

    fn set(&self, token: &str, value: Option<String>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => map.insert(token.to_owned(), v),
            None => map.remove(token),
        };
    }
}

/// Publishes DNS-01 TXT records (`_acme-challenge.<name>`).
pub trait TxtPublisher: Send + Sync + std::fmt::Debug {
    fn publish<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
    fn remove<'a>(
        &'a self,
        fqdn: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

mod publish;
pub use publish::{HttpTxtPublisher, TxtBoard};

/// Obtains and renews one certificate and hands it to a [`TlsServer`].
#[derive(Debug)]
pub struct Acme {
    config: AcmeConfig,
    tls: Arc<TlsServer>,
    http01: Http01Answers,
    dns: Option<Arc<dyn TxtPublisher>>,
}

impl Acme {
    pub fn new(config: AcmeConfig, tls: Arc<TlsServer>) -> Self {
        Acme {
            config,
            tls,
            http01: Http01Answers::default(),
            dns: None,
        }
    }

    /// The DNS-01 publisher (needed for `Challenge::Dns01`).
    pub fn with_dns(mut self, publisher: Arc<dyn TxtPublisher>) -> Self {
        self.dns = Some(publisher);
        self
    }

    /// Share HTTP-01 answers with other [`Acme`]s behind one plain listener.
    pub fn with_answers(mut self, answers: Http01Answers) -> Self {
        self.http01 = answers;
        self
    }

    /// Answers for the plain-HTTP listener.
    pub fn http01(&self) -> Http01Answers {
        self.http01.clone()
    }

    /// Serve the certificate already on disk if it is valid, then keep it renewed until
    /// `shutdown`. Failures are logged and retried with backoff.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let pair = self.config.pair();
            if pair.cert.exists() {
                match self.tls.add_pair(pair.clone()) {
                    Ok(_) => {
                        tracing::info!(cert = %pair.cert.display(), "acme: serving the certificate on disk")
                    }
                    Err(e) => tracing::warn!(
                        "acme: certificate on disk not usable, ordering a new one: {}",
                        dashcdn_config::chain(&e)
                    ),
                }
            }
            let mut backoff = self.config.retry_min;
            loop {
                let wait = self.until_renewal(&pair);
                if !wait.is_zero() {
                    tracing::info!(in_secs = wait.as_secs(), "acme: next renewal");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                let attempt = tokio::select! {
                    _ = &mut shutdown => return,
                    r = self.obtain() => r,
                };
                match attempt {
                    Ok(p) => {
                        tracing::info!(cert = %p.cert.display(), "acme: certificate issued and serving");
                        backoff = self.config.retry_min;
                    }
                    Err(e) => {
                        tracing::error!(
                            retry_in_secs = backoff.as_secs(),
                            "acme: renewal failed, the current certificate keeps serving: {}",
                            dashcdn_config::chain(&e)
                        );
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.config.retry_max);
                    }
                }
            }
        })
    }

    /// Time left until the certificate on disk reaches `renew_at` of its lifetime
    /// (zero: none, unreadable, or due).
    pub fn until_renewal(&self, pair: &CertPair) -> Duration {
        let Ok((not_before, not_after)) = crate::tls::validity(&pair.cert) else {
            return Duration::ZERO;
        };
        let life = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        let due = not_before + life.mul_f64(self.config.renew_at.clamp(0.0, 1.0));
        due.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = || match &self.config.ca_root {
            Some(root) => Account::builder_with_root(root).map_err(protocol),
            None => Account::builder().map_err(protocol),
        };
        let path = self.config.dir.join("account.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(creds) = serde_json::from_str::<AccountCredentials>(&text) {
                match builder()?.from_credentials(creds).await {
                    Ok(account) => return Ok(account),
                    Err(e) => {
                        tracing::warn!(error = %e, "acme: stored account refused, creating a new one")
                    }
                }
            }
        }
        let contact: Vec<String> = self
            .config
            .email
            .iter()
            .map(|e| format!("mailto:{e}"))
            .collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, creds) = builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                None,
            )
            .await
            .map_err(protocol)?;
        let json = serde_json::to_string_pretty(&creds).expect("credentials serialize");
        write_atomic(&path, json.as_bytes())?;
        Ok(account)
    }

    /// One issuance: order, answer every authorization, finalize, install.
    pub async fn obtain(&self) -> Result<CertPair, AcmeError> {
        std::fs::create_dir_all(&self.config.dir).map_err(|source| AcmeError::Write {
            path: self.config.dir.clone(),
            source,
        })?;
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(protocol)?;
        let mut cleanup = Cleanup::default();
        let result = self.authorize(&mut order, &mut cleanup).await;
        let result = match result {
            Ok(()) => self.finish(&mut order).await,
            Err(e) => Err(e),
        };
        cleanup.run(self).await;
        result
    }

    async fn authorize(
        &self,
        order: &mut instant_acme::Order,
        cleanup: &mut Cleanup,
    ) -> Result<(), AcmeError> {
        let kind = match self.config.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Dns01 => ChallengeType::Dns01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(protocol)?;
            let name = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Authorization(name, format!("{other:?}"))),
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::NoChallenge(self.config.challenge, name.clone()))?;
            let key_auth = challenge.key_authorization();
            // The bare name (no `*.`): what TLS-ALPN-01 connects to and DNS-01 publishes under.
            let host = match challenge.identifier().identifier {
                Identifier::Dns(d) => d.clone(),
                other => other.authorized(false).to_string(),
            };
            match self.config.challenge {
                Challenge::Http01 => {
                    let token = challenge.token.clone();
                    self.http01.set(&token, Some(key_auth.as_str().to_owned()));
                    cleanup.http01.push(token);
                }
                Challenge::TlsAlpn01 => {
                    let key = alpn_challenge_cert(&host, key_auth.digest().as_ref(), &self.tls)?;
                    self.tls.set_alpn_challenge(&host, Some(key));
                    cleanup.alpn.push(host.clone());
                }
                Challenge::Dns01 => {
                    let publisher = self.dns.as_ref().ok_or(AcmeError::NoPublisher)?;
                    let fqdn = format!("_acme-challenge.{}", host.trim_start_matches("*."));
                    publisher
                        .publish(&fqdn, &key_auth.dns_value())
                        .await
                        .map_err(AcmeError::Publish)?;
                    cleanup.dns.push(fqdn);
                }
            }
            tracing::info!(name = %host, challenge = ?self.config.challenge, "acme: challenge ready");
            challenge.set_ready().await.map_err(protocol)?;
        }
        Ok(())
    }

    async fn finish(&self, order: &mut instant_acme::Order) -> Result<CertPair, AcmeError> {
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await.map_err(protocol)?;
        if status != OrderStatus::Ready {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            return Err(AcmeError::Order(format!("{status:?} {detail}")));
        }
        let key_pem = order.finalize().await.map_err(protocol)?;
        let chain_pem = order.poll_certificate(&retry).await.map_err(protocol)?;
        let pair = self.config.pair();
        // Check before it replaces anything on disk: a bad issuance leaves the old files.
        crate::tls::check_pem(chain_pem.as_bytes(), key_pem.as_bytes(), &pair)
            .map_err(AcmeError::Load)?;
        write_atomic(&pair.key, key_pem.as_bytes())?;
        write_atomic(&pair.cert, chain_pem.as_bytes())?;
        self.tls.add_pair(pair.clone()).map_err(AcmeError::Load)?;
        Ok(pair)
    }
}

/// What a finished or failed attempt must take down again.
#[derive(Default)]
struct Cleanup {
    http01: Vec<String>,
    alpn: Vec<String>,
    dns: Vec<String>,
}

impl Cleanup {
    async fn run(self, acme: &Acme) {
        for token in self.http01 {
            acme.http01.set(&token, None);
        }
        for host in self.alpn {
            acme.tls.set_alpn_challenge(&host, None);
        }
        if let Some(publisher) = &acme.dns {
            for fqdn in self.dns {
                if let Err(e) = publisher.remove(&fqdn).await {
                    tracing::warn!(%fqdn, error = %e, "acme: could not remove the TXT record");
                }
            }
        }
    }
}

/// RFC 8737 §3: a self-signed certificate for `host` with the critical acmeIdentifier
/// extension holding SHA-256 of the key authorization.
pub(crate) fn alpn_challenge_cert(
    host: &str,
    digest: &[u8],
    tls: &TlsServer,
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let err = |e: rcgen::Error| AcmeError::Protocol(format!("tls-alpn-01 certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(err)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = tls
        .crypto()
        .key_provider
        .load_private_key(der_key)
        .map_err(|e| AcmeError::Protocol(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    let tmp = path.with_extension("tmp");
    let err = |source| AcmeError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_answers_only_known_tokens_under_the_prefix() {
        let a = Http01Answers::default();
        a.set("tok", Some("tok.thumb".into()));
        assert_eq!(
            a.answer("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(a.answer("/.well-known/acme-challenge/other"), None);
        assert_eq!(a.answer("/tok"), None);
        a.set("tok", None);
        assert_eq!(a.answer("/.well-known/acme-challenge/tok"), None);
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::local_ca(dir.path()).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        // 90-day certificate issued 30 days ago: due in 30 days.
        let pair = ca
            .issue_valid("a", &["a.test"], now - 30 * day, now + 60 * day)
            .unwrap();
        let tls = TlsServer::new(&Default::default()).unwrap();
        let acme = Acme::new(
            AcmeConfig::new(
                "https://ca.test/dir",
                vec!["a.test".into()],
                dir.path().into(),
            ),
            tls,
        );
        let left = acme.until_renewal(&pair);
        assert!(left > 29 * day && left < 31 * day, "{left:?}");
        // Issued 70 days ago: overdue.
        let old = ca
            .issue_valid("b", &["a.test"], now - 70 * day, now + 20 * day)
            .unwrap();
        assert_eq!(acme.until_renewal(&old), Duration::ZERO);
        assert_eq!(
            acme.until_renewal(&CertPair {
                cert: dir.path().join("none.pem"),
                key: dir.path().join("none.key")
            }),
            Duration::ZERO
        );
    }

    #[test]
    fn challenge_names_parse() {
        assert_eq!("dns-01".parse::<Challenge>(), Ok(Challenge::Dns01));
        assert!("dns".parse::<Challenge>().unwrap_err().contains("http-01"));
    }
}
