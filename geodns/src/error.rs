//! The error of starting or reloading the geo DNS.

use thiserror::Error;

use crate::dnssec::KeyError;
use crate::geo::GeoDbError;

/// Why the geo DNS could not start or reload.
#[derive(Debug, Error)]
pub enum GeodnsError {
    #[error(transparent)]
    GeoDb(#[from] GeoDbError),
    #[error(transparent)]
    Dnssec(#[from] KeyError),
    #[error("{what} failed")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("dns server failed: {0}")]
    Server(String),
}

impl GeodnsError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> GeodnsError {
        move |source| GeodnsError::Io { what, source }
    }
}
