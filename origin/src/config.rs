//! Configuration of `dashcdn origin serve`.
//!
//! A TOML file (see `origin/example.toml`) is parsed into [`RawServeConfig`], which mirrors
//! the file exactly and rejects unknown keys, then validated into [`ServeConfig`]. CLI
//! flags (`--listen`, `--library`, `--web-root`) override the file by assigning the public fields after
//! [`ServeConfig::load`]. Every key is optional: `ServeConfig::default()` is what an empty
//! file gives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default `listen`: loopback only, so a bare `dashcdn origin serve` is not exposed
/// to the network by accident.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `library`, relative to the working directory.
pub(crate) const DEFAULT_LIBRARY: &str = "library";
/// Default `mpd_max_age_secs`. A static (VOD) MPD could be cached for much longer, but a
/// re-packaged asset then shows up only after this delay; 2 s matches the segment
/// duration, which is also what live workflows use.
pub(crate) const DEFAULT_MPD_MAX_AGE_SECS: u32 = 2;
/// Default `segment_max_age_secs`: one year, the conventional "forever" for
/// `immutable` responses (RFC 8246). Segments are content-addressed by asset, rep and
/// number and never change once packaged.
pub(crate) const DEFAULT_SEGMENT_MAX_AGE_SECS: u32 = 31_536_000;
/// Default `header_timeout_ms`: a client (an edge, a player) sends its request head in one
/// packet; 10 s is generous on any real network and closes slowloris connections.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `idle_timeout_ms`: edges reuse their pooled connections within seconds (the
/// edge's own pool keeps them 90 s); a keep-alive connection idle for a minute is
/// closed so that thousands of abandoned ones cannot pile up.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `send_timeout_ms`, as nginx's `send_timeout`: a response that makes no progress
/// (the client accepts not one byte) for this long is dropped with its connection.
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Validated configuration of the HTTP origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Where `dashcdn origin serve` binds. [`crate::server::run`] itself takes an already
    /// bound listener, so tests and the in-process demo ignore this.
    pub listen: SocketAddr,
    /// The media library root: `{library}/{asset}/manifest.mpd` and so on, as written by
    /// `dashcdn origin package`.
    pub library: PathBuf,
    /// `Cache-Control: public, max-age=N` on MPDs: how stale a manifest edges and players
    /// may use.
    pub mpd_max_age_secs: u32,
    /// `Cache-Control: public, max-age=N, immutable` on init and media segments.
    pub segment_max_age_secs: u32,
    /// The watch page's folder (`player/web` of the repository: `index.html`, `app.js`,
    /// `style.css`, and `node_modules/dashjs` once `npm ci` ran). `None` looks for it next
    /// to the working directory and the executable, see [`crate::web::WebRoot::discover`].
    pub web_root: Option<PathBuf>,
    /// Connection limits and timeouts (slowloris, idle keep-alives, slow readers).
    pub limits: Limits,
    /// Live channels (`[[live]]`, `--live NAME=INPUT`), see [`crate::live`].
    pub live: Vec<crate::live::LiveConfig>,
    /// HTTPS listener and ACME (`[tls]`, `--tls-*`, `--acme-*`; docs/tls.md).
    pub tls: dashcdn_http::https::TlsArgs,
    /// Bearer token of the admin calls (`/_origin/live/NAME/record/…`,
    /// docs/origin-live.md); `None`: they are off (always 401).
    pub admin_token: Option<String>,
    /// The access log (`access_log_file`, `--access-log FILE`): a line per request,
    /// reopened on SIGHUP (docs/origin-serving.md); `None`: no access log.
    pub access_log_file: Option<PathBuf>,
}

/// How many connections the origin holds and for how long. See docs/origin-serving.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; beyond it a new connection gets 503 and is closed.
    /// `None`: derived at start from the open-file limit (raised to its hard limit), so
    /// the cap is reached before the process runs out of descriptors.
    pub max_connections: Option<usize>,
    /// Connections one client address may hold at once; beyond it, 503 and close.
    /// `None`: a quarter of `max_connections`. Edges pool connections, so one address
    /// may rightly hold many, but no single client can take every slot.
    pub max_connections_per_client: Option<usize>,
    /// Time a new connection (or a kept-alive one, for its next request) has to send a
    /// whole request head.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a response may go without the client accepting a byte.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_connections_per_client: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a socket address"),
            library: PathBuf::from(DEFAULT_LIBRARY),
            mpd_max_age_secs: DEFAULT_MPD_MAX_AGE_SECS,
            segment_max_age_secs: DEFAULT_SEGMENT_MAX_AGE_SECS,
            web_root: None,
            limits: Limits::default(),
            live: Vec::new(),
            tls: Default::default(),
            admin_token: None,
            access_log_file: None,
        }
    }
}

/// The TOML file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServeConfig {
    pub listen: Option<String>,
    pub library: Option<PathBuf>,
    pub mpd_max_age_secs: Option<u32>,
    pub segment_max_age_secs: Option<u32>,
    pub web_root: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    #[serde(default)]
    pub live: Vec<crate::live::RawLive>,
    #[serde(default)]
    pub tls: dashcdn_http::https::TlsArgs,
    pub admin_token: Option<String>,
    pub access_log_file: Option<PathBuf>,
}

pub(crate) use dashcdn_config::ConfigError;

/// Longest `max-age` accepted: RFC 9111 §1.2.2 lets caches cap delta-seconds at
/// 2^31, and more than a year is never meant.
const MAX_AGE_LIMIT_SECS: u32 = 31_536_000;

impl RawServeConfig {
    pub(crate) fn validate(self) -> Result<ServeConfig, ConfigError> {
        let defaults = ServeConfig::default();
        let listen = match self.listen {
            None => defaults.listen,
            Some(text) => text.parse().map_err(|_| {
                ConfigError::field(
                    "listen",
                    &text,
                    "expected IP:PORT, e.g. 127.0.0.1:8080 or [::]:80",
                )
            })?,
        };
        let library = self.library.unwrap_or(defaults.library);
        if library.as_os_str().is_empty() {
            return Err(ConfigError::field("library", "", "must name a directory"));
        }
        let mpd_max_age_secs = self.mpd_max_age_secs.unwrap_or(defaults.mpd_max_age_secs);
        let segment_max_age_secs = self
            .segment_max_age_secs
            .unwrap_or(defaults.segment_max_age_secs);
        for (field, value) in [
            ("mpd_max_age_secs", mpd_max_age_secs),
            ("segment_max_age_secs", segment_max_age_secs),
        ] {
            if value > MAX_AGE_LIMIT_SECS {
                return Err(ConfigError::field(
                    field,
                    value,
                    "must be at most 31536000 (one year)",
                ));
            }
        }
        if self.admin_token.as_deref() == Some("") {
            return Err(ConfigError::field(
                "admin_token",
                "",
                "must not be empty (leave it out to turn the admin calls off)",
            ));
        }
        for (field, path, what) in [
            (
                "access_log_file",
                &self.access_log_file,
                "must name a file, or be left out (no access log)",
            ),
            (
                "web_root",
                &self.web_root,
                "must name a directory (player/web of the repository), or be left out",
            ),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(ConfigError::field(field, "", what));
            }
        }
        let mut limits = Limits::default();
        for (field, value) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_client",
                self.max_connections_per_client,
            ),
        ] {
            if value == Some(0) {
                return Err(ConfigError::field(field, 0, "must be at least 1"));
            }
        }
        limits.max_connections = self.max_connections;
        limits.max_connections_per_client = self.max_connections_per_client;
        for (field, value, slot) in [
            (
                "header_timeout_ms",
                self.header_timeout_ms,
                &mut limits.header_timeout,
            ),
            (
                "idle_timeout_ms",
                self.idle_timeout_ms,
                &mut limits.idle_timeout,
            ),
            (
                "send_timeout_ms",
                self.send_timeout_ms,
                &mut limits.send_timeout,
            ),
        ] {
            match value {
                Some(0) => {
                    return Err(ConfigError::field(
                        field,
                        0,
                        "must be at least 1 (milliseconds)",
                    ))
                }
                Some(ms) => *slot = Duration::from_millis(ms),
                None => {}
            }
        }
        Ok(ServeConfig {
            listen,
            library,
            mpd_max_age_secs,
            segment_max_age_secs,
            web_root: self.web_root,
            limits,
            live: self
                .live
                .into_iter()
                .map(crate::live::RawLive::validate)
                .collect::<Result<_, _>>()?,
            tls: self.tls,
            admin_token: self.admin_token,
            access_log_file: self.access_log_file,
        })
    }
}

impl ServeConfig {
    /// A default configuration serving `library`.
    pub fn new(library: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            library: library.into(),
            ..ServeConfig::default()
        }
    }

    /// Parses and validates TOML text. Errors name the field but not a file; see [`load`].
    ///
    /// [`load`]: ServeConfig::load
    pub fn from_toml(text: &str) -> Result<ServeConfig, ConfigError> {
        let raw: RawServeConfig = toml::from_str(text)?;
        raw.validate()
    }

    /// Reads, parses and validates a TOML file; errors name the file. A relative
    /// `library` is left relative to the working directory, like the CLI flag.
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        dashcdn_config::load(path, |text, _| ServeConfig::from_toml(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use dashcdn_config::chain;

    #[test]
    fn example_toml_parses() {
        let text = include_str!("../example.toml");
        let config = ServeConfig::from_toml(text).expect("example.toml is valid");
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.library, PathBuf::from("/var/lib/dashcdn/library"));
        assert_eq!(config.mpd_max_age_secs, 2);
        assert_eq!(config.segment_max_age_secs, 31_536_000);
        assert_eq!(
            config.web_root,
            Some(PathBuf::from("/usr/share/dashcdn/web"))
        );
    }

    #[test]
    fn limits_from_the_file() {
        let config = ServeConfig::from_toml(
            "max_connections = 100\nmax_connections_per_client = 7\nheader_timeout_ms = 1500\n\
             idle_timeout_ms = 2000\nsend_timeout_ms = 2500\n",
        )
        .unwrap();
        let l = config.limits;
        assert_eq!(l.max_connections, Some(100));
        assert_eq!(l.max_connections_per_client, Some(7));
        assert_eq!(l.header_timeout, Duration::from_millis(1500));
        assert_eq!(l.idle_timeout, Duration::from_secs(2));
        assert_eq!(l.send_timeout, Duration::from_millis(2500));
        for bad in ["max_connections = 0", "send_timeout_ms = 0"] {
            let err = ServeConfig::from_toml(bad).unwrap_err();
            let field = bad.split(' ').next().unwrap();
            assert!(chain(&err).contains(&format!("`{field}`")), "{err}");
        }
    }

    #[test]
    fn access_log_file_from_the_file_and_never_empty() {
        let config = ServeConfig::from_toml("access_log_file = \"/var/log/o.log\"").unwrap();
        assert_eq!(
            config.access_log_file.as_deref(),
            Some(Path::new("/var/log/o.log"))
        );
        assert_eq!(ServeConfig::default().access_log_file, None);
        let err = ServeConfig::from_toml("access_log_file = \"\"").unwrap_err();
        assert!(err.to_string().contains("access_log_file"), "{err}");
    }

    #[test]
    fn admin_token_from_the_file_and_never_empty() {
        let config = ServeConfig::from_toml("admin_token = \"s3cret\"").unwrap();
        assert_eq!(config.admin_token.as_deref(), Some("s3cret"));
        let err = ServeConfig::from_toml("admin_token = \"\"").unwrap_err();
        assert!(chain(&err).contains("`admin_token`"), "{err}");
        // The example shows it commented out: uncommented, it is a valid key.
        let example = include_str!("../example.toml").replace("# admin_token", "admin_token");
        let config = ServeConfig::from_toml(&example).unwrap();
        assert_eq!(config.admin_token.as_deref(), Some("change-me"));
    }

    #[test]
    fn empty_web_root_is_refused() {
        let err = ServeConfig::from_toml("web_root = \"\"").unwrap_err();
        assert!(chain(&err).contains("`web_root`"), "{err}");
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(ServeConfig::from_toml("").unwrap(), ServeConfig::default());
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = ServeConfig::from_toml("listen = \"127.0.0.1:1\"\nmax_age = 3\n").unwrap_err();
        let text = chain(&err);
        assert!(text.contains("unknown field `max_age`"), "{text}");
    }

    #[test]
    fn bad_listen_names_field_and_value() {
        let err = ServeConfig::from_toml("listen = \"localhost\"").unwrap_err();
        let text = chain(&err);
        assert!(text.contains("`listen`"), "{text}");
        assert!(text.contains("\"localhost\""), "{text}");
    }

    #[test]
    fn max_age_is_bounded() {
        let err = ServeConfig::from_toml("mpd_max_age_secs = 99999999").unwrap_err();
        assert!(chain(&err).contains("`mpd_max_age_secs`"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("origin.toml");
        std::fs::write(&path, "library = 3\n").unwrap();
        let text = chain(&ServeConfig::load(&path).unwrap_err());
        assert!(text.contains("origin.toml"), "{text}");
        assert!(text.contains("library"), "{text}");

        let missing = dir.path().join("missing.toml");
        let text = chain(&ServeConfig::load(&missing).unwrap_err());
        assert!(text.contains("missing.toml"), "{text}");
    }
}
