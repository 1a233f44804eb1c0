//! The origin's shared state and its one error type.
//!
//! Handlers take the part of the state they use (`State<Files>`, `State<WebRoot>`,
//! `State<Metrics>`) through [`FromRef`], so a handler module never needs this one back.

use std::io;
use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::header::ALLOW;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, error, warn};

use crate::config::ServeConfig;
use crate::file::{FileError, Files};
use crate::library::{shown, Library, PathError, ResolveError};
use crate::metrics::Metrics;
use crate::web::WebRoot;

/// Shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The library and how its files are answered (cache, validators, Cache-Control).
    files: Files,
    /// Shared with the connection layer, which reports its counts here too.
    metrics: Arc<Metrics>,
    /// Where the watch page and dash.js are read from, located once at start-up.
    web: WebRoot,
    /// Live channels; empty until [`crate::server::run`] starts them.
    live: crate::live::Channels,
    /// What every request reports to: the metrics, and the access log when one is kept.
    observe: Arc<Observe>,
}

/// What [`crate::server`]'s middleware reports every request to.
pub(crate) struct Observe {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access: Option<crate::access::AccessLog>,
}

impl AppState {
    /// Opens the library named by `config`; fails if it is not a directory.
    pub fn new(config: &ServeConfig) -> io::Result<AppState> {
        let library = Library::open(&config.library)?;
        let metrics = Arc::new(Metrics::new());
        Ok(AppState {
            files: Files::new(
                library,
                config.mpd_max_age_secs,
                config.segment_max_age_secs,
            ),
            observe: Arc::new(Observe {
                metrics: metrics.clone(),
                access: None,
            }),
            metrics,
            web: WebRoot::discover(config.web_root.as_deref()),
            live: crate::live::Channels::default(),
        })
    }

    /// Serves these live channels under `/live/`.
    pub fn with_live(mut self, live: crate::live::Channels) -> AppState {
        self.live = live;
        self
    }

    /// Every request is logged to `log` (see [`crate::access`]).
    pub(crate) fn with_access_log(mut self, log: crate::access::AccessLog) -> AppState {
        self.observe = Arc::new(Observe {
            metrics: self.metrics.clone(),
            access: Some(log),
        });
        self
    }

    pub(crate) fn access_log(&self) -> Option<&crate::access::AccessLog> {
        self.observe.access.as_ref()
    }

    pub(crate) fn live(&self) -> &crate::live::Channels {
        &self.live
    }

    pub(crate) fn library(&self) -> &Library {
        self.files.library()
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn web(&self) -> &WebRoot {
        &self.web
    }
}

impl FromRef<AppState> for Files {
    fn from_ref(state: &AppState) -> Files {
        state.files.clone()
    }
}

impl FromRef<AppState> for WebRoot {
    fn from_ref(state: &AppState) -> WebRoot {
        state.web.clone()
    }
}

impl FromRef<AppState> for Arc<Observe> {
    fn from_ref(state: &AppState) -> Arc<Observe> {
        Arc::clone(&state.observe)
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Arc<Metrics> {
        Arc::clone(&state.metrics)
    }
}

/// Every failure a handler can return. Clients get a short plain-text reason; the
/// details (paths on disk, OS errors) go to the log only.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("refused request path {}", shown(.path))]
    BadPath {
        path: String,
        #[source]
        reason: PathError,
    },
    #[error("no such resource {}", shown(.path))]
    NotFound { path: String },
    #[error("refused request path {}", shown(.path))]
    Escapes {
        path: String,
        #[source]
        reason: ResolveError,
    },
    #[error("method {method} not allowed on {}", shown(.path))]
    MethodNotAllowed { method: Method, path: String },
    #[error("serving {}", shown(.path))]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl AppError {
    /// What a failed file request (`path`) tells the client.
    pub(crate) fn from_file(path: &str, e: FileError) -> AppError {
        let path = path.to_owned();
        match e {
            FileError::Resolve(ResolveError::NotFound) => AppError::NotFound { path },
            FileError::Resolve(reason @ ResolveError::Escapes { .. }) => {
                AppError::Escapes { path, reason }
            }
            FileError::Resolve(ResolveError::Io { source, .. }) | FileError::Io(source) => {
                AppError::Io { path, source }
            }
        }
    }
}

impl IntoResponse for AppError {
    /// Logs the error once (its whole chain on one line, the path cut short) and answers
    /// with a short reason that names nothing on disk.
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            AppError::BadPath { .. } => (StatusCode::BAD_REQUEST, "bad request\n"),
            // A symlink out of the library looks like any missing file to the client.
            AppError::NotFound { .. } | AppError::Escapes { .. } => {
                (StatusCode::NOT_FOUND, "not found\n")
            }
            AppError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            AppError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
        };
        let chain = dashcdn_config::chain(&self);
        match &self {
            AppError::BadPath { .. } | AppError::Escapes { .. } => warn!(error = %chain),
            AppError::NotFound { .. } | AppError::MethodNotAllowed { .. } => {
                debug!(error = %chain)
            }
            AppError::Io { .. } => error!(error = %chain),
        }
        let mut response = (status, message).into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_refused_path_is_shown_once_and_short() {
        let component = "x".repeat(60_000);
        let path = format!("/vod/{component}/manifest.mpd");
        let error = AppError::BadPath {
            path: path.clone(),
            reason: PathError::BadName(component),
        };
        let line = dashcdn_config::chain(&error);
        assert!(line.len() < 400, "{} bytes: {line}", line.len());
        assert!(line.contains("(60018 bytes)"), "{line}");
        assert!(line.contains("is not an allowed name"), "{line}");
    }
}
