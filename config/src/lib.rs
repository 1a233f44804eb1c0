//! What every dashcdn server's config shares: reading a TOML file and the error that says
//! which file, which field, which value and why. Each crate keeps its own config *type*
//! (origin `ServeConfig`, edge `EdgeConfig`, geodns `GeodnsConfig`); only the loading and
//! the error live here, once. Also the one shutdown signal every server stops on.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    // toml's message already names the line and the offending key.
    #[error("invalid TOML")]
    Toml(#[from] toml::de::Error),
    #[error("invalid `{field}`{}: {reason}", if value.is_empty() { String::new() } else { format!(" {value:?}") })]
    Field {
        field: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    /// `field` holds `value`, which is refused because of `reason` (say what to write instead).
    pub fn field(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Field {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// The field a [`ConfigError::Field`] is about, looking through [`ConfigError::File`].
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ConfigError::Field { field, .. } => Some(field),
            ConfigError::File { source, .. } => source.field_name(),
            _ => None,
        }
    }
}

/// An error and its causes on one line, `a: b: c`, as the binaries print errors with `{:#}`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Reads `path` and parses it with `parse` (given the text and the file's folder, for
/// relative paths inside); any error names the file.
pub fn load<T>(
    path: &Path,
    parse: impl FnOnce(&str, &Path) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let folder = path.parent().unwrap_or(Path::new(""));
    parse(&text, folder).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, whichever comes first, so a server can stop
/// accepting and finish in-flight requests. Every dashcdn server stops on this one signal
/// future. If SIGTERM cannot be watched (no signal driver), Ctrl-C alone still works.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_field_and_value() {
        let dir = std::env::temp_dir().join(format!("dashcdn-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "listen = 'nowhere'\n").unwrap();
        let err = load(&file, |text, folder| {
            assert_eq!(folder, dir.as_path());
            let v: toml::Table = toml::from_str(text)?;
            Err::<(), _>(ConfigError::field(
                "listen",
                v["listen"].as_str().unwrap(),
                "expected IP:PORT",
            ))
        })
        .unwrap_err();
        assert_eq!(err.field_name(), Some("listen"));
        let chain = chain(&err);
        assert!(chain.contains("bad.toml"), "{chain}");
        assert!(
            chain.contains("invalid `listen` \"nowhere\": expected IP:PORT"),
            "{chain}"
        );
        let missing = load(&dir.join("missing.toml"), |_, _| Ok(())).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
        let no_value = ConfigError::field("pop", "", "unknown PoP");
        assert_eq!(no_value.to_string(), "invalid `pop`: unknown PoP");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
