//! `--tls-*`, `--acme-*`, `--redirect-https` and `--h2c` for the origin and the edge
//! (flatten [`TlsArgs`] into a clap parser; the same keys in a `[tls]` table of the TOML
//! config), and [`Https`]: what they build — the certificate set, the reload watcher and
//! ACME. [`TlsArgs::listeners`] turns them into the [`Listener`]s a server hands to the one
//! accept loop, [`crate::serve::serve_listeners`], so HTTPS has the plain listener's caps,
//! timeouts and metrics.
//!
//! ```text
//! dashcdn edge ... --tls-listen 0.0.0.0:8443 \
//!     --tls-cert site.pem --tls-key site.key --tls-cert other.pem --tls-key other.key
//! dashcdn edge ... --tls-listen 0.0.0.0:443 --acme-directory URL --acme-domain cdn.example \
//!     --acme-dir /var/lib/dashcdn/acme [--acme-challenge http-01|tls-alpn-01|dns-01]
//! dashcdn edge ... --tls-listen 0.0.0.0:443 ... --redirect-https --h2c
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::acme::{Acme, AcmeConfig, Challenge, Http01Answers, HttpTxtPublisher};
use crate::serve::Listener;
use crate::tls::{CertPair, TlsConfig, TlsError, TlsServer};

/// TLS listener and ACME settings (CLI flags and `[tls]` in the config file).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, clap::Args, serde::Deserialize, serde::Serialize,
)]
#[serde(default, deny_unknown_fields)]
pub struct TlsArgs {
    /// HTTPS listener (TLS 1.3/1.2; HTTP/2 and HTTP/1.1 by ALPN) beside plain HTTP
    #[arg(id = "tls_listen", long = "tls-listen", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Certificate chain (PEM); repeat with --tls-key for more SNI names; the first is the default
    #[arg(id = "tls_cert", long = "tls-cert", value_name = "FILE")]
    pub cert: Vec<PathBuf>,
    /// Private key (PEM) of the --tls-cert at the same position
    #[arg(id = "tls_key", long = "tls-key", value_name = "FILE")]
    pub key: Vec<PathBuf>,
    /// Fail handshakes for unknown or missing SNI instead of serving the first certificate
    #[arg(id = "tls_strict_sni", long = "tls-strict-sni")]
    pub strict_sni: bool,
    /// ACME directory URL: obtain and renew the certificate automatically
    #[arg(long = "acme-directory", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Name for the ACME certificate (repeatable)
    #[arg(long = "acme-domain", value_name = "NAME")]
    pub acme_domain: Vec<String>,
    /// Contact address for the ACME account
    #[arg(long = "acme-email", value_name = "ADDR")]
    pub acme_email: Option<String>,
    /// Folder for the ACME account and certificates
    #[arg(long = "acme-dir", value_name = "DIR")]
    pub acme_dir: Option<PathBuf>,
    /// CA certificate that signs the ACME server's HTTPS (test CAs like Pebble)
    #[arg(long = "acme-ca-root", value_name = "FILE")]
    pub acme_ca_root: Option<PathBuf>,
    /// Challenge: http-01 (default), tls-alpn-01 or dns-01
    #[arg(long = "acme-challenge", value_name = "TYPE")]
    pub acme_challenge: Option<String>,
    /// DNS-01: geodns's TXT admin URL (e.g. http://127.0.0.1:9153/_geodns/acme)
    #[arg(long = "acme-dns-url", value_name = "URL")]
    pub acme_dns_url: Option<String>,
    /// DNS-01: bearer token of that URL
    #[arg(
        long = "acme-dns-token",
        value_name = "TOKEN",
        env = "DASHCDN_ACME_DNS_TOKEN"
    )]
    pub acme_dns_token: Option<String>,
    /// Plain HTTP answers 308 to the same URL on https:// (the --tls-listen port), except
    /// /.well-known/acme-challenge/ and the server's health and metrics paths (origin:
    /// /healthz, /metrics; edge: /_edge/healthz, /_edge/metrics)
    #[arg(long = "redirect-https")]
    pub redirect_https: bool,
    /// Also accept cleartext HTTP/2 (h2c, prior knowledge) on the plain listener
    #[arg(long = "h2c")]
    pub h2c: bool,
}

/// Errors in the TLS settings themselves (before any file is read).
#[derive(Debug, thiserror::Error)]
pub enum TlsArgsError {
    #[error("--tls-cert is given {certs} times but --tls-key {keys} times; give them in pairs")]
    Unpaired { certs: usize, keys: usize },
    #[error("--tls-listen needs --tls-cert/--tls-key or --acme-directory")]
    NoCertificate,
    #[error("--acme-directory needs --acme-domain and --acme-dir")]
    AcmeIncomplete,
    #[error("{0}")]
    Challenge(String),
    #[error("--acme-challenge dns-01 needs --acme-dns-url and --acme-dns-token")]
    Dns01Incomplete,
    #[error("--redirect-https needs --tls-listen (the HTTPS listener to send clients to)")]
    RedirectWithoutTls,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl TlsArgs {
    /// CLI flags over the config file's `[tls]`: a value given on the command line wins.
    pub fn over(self, file: TlsArgs) -> TlsArgs {
        TlsArgs {
            listen: self.listen.or(file.listen),
            cert: if self.cert.is_empty() {
                file.cert
            } else {
                self.cert
            },
            key: if self.key.is_empty() {
                file.key
            } else {
                self.key
            },
            strict_sni: self.strict_sni || file.strict_sni,
            acme_directory: self.acme_directory.or(file.acme_directory),
            acme_domain: if self.acme_domain.is_empty() {
                file.acme_domain
            } else {
                self.acme_domain
            },
            acme_email: self.acme_email.or(file.acme_email),
            acme_dir: self.acme_dir.or(file.acme_dir),
            acme_ca_root: self.acme_ca_root.or(file.acme_ca_root),
            acme_challenge: self.acme_challenge.or(file.acme_challenge),
            acme_dns_url: self.acme_dns_url.or(file.acme_dns_url),
            acme_dns_token: self.acme_dns_token.or(file.acme_dns_token),
            redirect_https: self.redirect_https || file.redirect_https,
            h2c: self.h2c || file.h2c,
        }
    }

    /// Check and load: `None` when no `--tls-listen`. Certificate errors name the file.
    pub fn build(&self) -> Result<Option<Https>, TlsArgsError> {
        let Some(listen) = self.listen else {
            if self.redirect_https {
                return Err(TlsArgsError::RedirectWithoutTls);
            }
            return Ok(None);
        };
        if self.cert.len() != self.key.len() {
            return Err(TlsArgsError::Unpaired {
                certs: self.cert.len(),
                keys: self.key.len(),
            });
        }
        if self.cert.is_empty() && self.acme_directory.is_none() {
            return Err(TlsArgsError::NoCertificate);
        }
        let pairs = self
            .cert
            .iter()
            .zip(&self.key)
            .map(|(c, k)| CertPair {
                cert: c.clone(),
                key: k.clone(),
            })
            .collect();
        let tls = TlsServer::new(&TlsConfig {
            pairs,
            strict_sni: self.strict_sni,
        })?;
        let acme = match &self.acme_directory {
            None => None,
            Some(directory) => {
                let (Some(dir), false) = (&self.acme_dir, self.acme_domain.is_empty()) else {
                    return Err(TlsArgsError::AcmeIncomplete);
                };
                let mut config =
                    AcmeConfig::new(directory.clone(), self.acme_domain.clone(), dir.clone());
                config.email = self.acme_email.clone();
                config.ca_root = self.acme_ca_root.clone();
                if let Some(c) = &self.acme_challenge {
                    config.challenge = c.parse().map_err(TlsArgsError::Challenge)?;
                }
                let mut acme = Acme::new(config.clone(), tls.clone());
                if config.challenge == Challenge::Dns01 {
                    let (Some(url), Some(token)) = (&self.acme_dns_url, &self.acme_dns_token)
                    else {
                        return Err(TlsArgsError::Dns01Incomplete);
                    };
                    let publisher = HttpTxtPublisher::new(
                        url.clone(),
                        token.clone(),
                        config.ca_root.as_deref(),
                    )?;
                    acme = acme.with_dns(Arc::new(publisher));
                }
                Some(Arc::new(acme))
            }
        };
        Ok(Some(Https { listen, tls, acme }))
    }

    /// The listeners for the shared accept loop: `plain` with `--h2c` and
    /// `--redirect-https` applied (the server's `exempt` paths, its health and metrics,
    /// stay on plain HTTP with ACME's), and `https`'s TLS listener bound on `--tls-listen`
    /// (first, so the redirect names its real port); with the HTTPS upkeep (certificate
    /// reload on SIGHUP and file change, ACME), which runs until the [`Upkeep`] is dropped.
    pub async fn listeners(
        &self,
        plain: TcpListener,
        https: Option<Https>,
        exempt: &'static [&'static str],
    ) -> std::io::Result<(Vec<Listener>, Upkeep)> {
        let mut listeners = Vec::with_capacity(2);
        let mut upkeep = Upkeep(Vec::new());
        let mut https_port = None;
        if let Some(https) = https {
            let tcp = TcpListener::bind(https.listen).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {} ({e})", https.listen))
            })?;
            https_port = Some(tcp.local_addr()?.port());
            upkeep = https.spawn_upkeep();
            listeners.push(Listener::tls(tcp, https.tls.server_config()));
        }
        let plain = Listener::plain(plain)
            .h2c(self.h2c)
            .redirect_https(https_port.filter(|_| self.redirect_https))
            .redirect_exempt(exempt);
        listeners.insert(0, plain);
        Ok((listeners, upkeep))
    }
}

/// Background work of an HTTPS listener (certificate reload, ACME); stopped on drop.
#[derive(Debug)]
pub struct Upkeep(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Upkeep {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A configured HTTPS listener, ready to bind and serve.
#[derive(Debug)]
pub struct Https {
    pub listen: SocketAddr,
    pub tls: Arc<TlsServer>,
    pub acme: Option<Arc<Acme>>,
}

impl Https {
    /// Answers the plain-HTTP listener gives at `/.well-known/acme-challenge/` (always
    /// present: empty without ACME, so callers need no `Option`).
    pub fn http01(&self) -> Http01Answers {
        self.acme.as_ref().map(|a| a.http01()).unwrap_or_default()
    }

    /// Start the certificate reload watcher (SIGHUP, file change) and ACME when configured.
    pub fn spawn_upkeep(&self) -> Upkeep {
        let mut tasks = vec![self
            .tls
            .watch(Duration::from_secs(5), std::future::pending())];
        if let Some(acme) = &self.acme {
            tasks.push(acme.clone().spawn(std::future::pending()));
        }
        Upkeep(tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The servers' own flags share names with these fields (`--listen`): ids must not clash.
    #[derive(Parser)]
    struct Cli {
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        tls: TlsArgs,
    }

    #[test]
    fn ids_do_not_clash_with_the_servers_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "x",
            "--listen",
            "127.0.0.1:1",
            "--tls-listen",
            "127.0.0.1:2",
        ]);
        assert_eq!(cli.listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(cli.tls.listen, Some("127.0.0.1:2".parse().unwrap()));
        assert!(cli.cert.is_none() && cli.key.is_none());
    }

    #[test]
    fn flags_parse_and_pair_up() {
        let cli = Cli::parse_from([
            "x",
            "--tls-listen",
            "127.0.0.1:8443",
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "a.key",
            "--tls-cert",
            "b.pem",
        ]);
        assert_eq!(cli.tls.cert.len(), 2);
        let e = cli.tls.build().unwrap_err().to_string();
        assert!(e.contains("2 times") && e.contains("1 times"), "{e}");
        let none = Cli::parse_from(["x"]).tls.build().unwrap();
        assert!(none.is_none());
        let nocert = Cli::parse_from(["x", "--tls-listen", "127.0.0.1:1"])
            .tls
            .build();
        assert!(matches!(nocert, Err(TlsArgsError::NoCertificate)));
    }

    #[test]
    fn toml_table_and_cli_override() {
        let file: TlsArgs = toml::from_str(
            "listen = \"127.0.0.1:8443\"\ncert = [\"a.pem\"]\nkey = [\"a.key\"]\nacme_email = \"ops@x.test\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["x", "--tls-listen", "127.0.0.1:9443"]).tls;
        let merged = cli.over(file);
        assert_eq!(merged.listen, Some("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(merged.cert, [PathBuf::from("a.pem")]);
        assert_eq!(merged.acme_email.as_deref(), Some("ops@x.test"));
        assert!(toml::from_str::<TlsArgs>("lsten = \"x\"").is_err());
    }

    #[test]
    fn redirect_and_h2c_keys_merge_and_redirect_needs_a_tls_listener() {
        let file: TlsArgs = toml::from_str("redirect_https = true\nh2c = true\n").unwrap();
        let merged = Cli::parse_from(["x"]).tls.over(file);
        assert!(merged.redirect_https && merged.h2c);
        assert!(matches!(
            merged.build(),
            Err(TlsArgsError::RedirectWithoutTls)
        ));
        let flags = Cli::parse_from(["x", "--h2c"]).tls;
        assert!(flags.h2c && !flags.redirect_https);
        assert!(flags.build().unwrap().is_none(), "h2c alone needs no TLS");
    }

    #[test]
    fn a_bad_pair_fails_at_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::local_ca(dir.path()).unwrap();
        let a = ca.issue("a", &["a.test"]).unwrap();
        let b = ca.issue("b", &["b.test"]).unwrap();
        let args = TlsArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            cert: vec![a.cert],
            key: vec![b.key],
            ..Default::default()
        };
        let e = dashcdn_config::chain(&args.build().unwrap_err());
        assert!(e.contains("b.key") && e.contains("does not match"), "{e}");
    }
}
