//! Choosing the certificate for a handshake: by SNI name (exact, then `*.` wildcard), then
//! by what the client can verify (ECDSA or RSA), else the default pair — or no certificate
//! at all when the listener is strict about names. A TLS-ALPN-01 validation (RFC 8737)
//! gets the ACME challenge certificate instead.
//!
//! The set is swapped whole on reload (`RwLock<Arc<_>>`): a handshake in progress keeps the
//! set it started with, connections already up are never touched.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::load::Loaded;

/// ALPN protocol id of TLS-ALPN-01 validation (RFC 8737 §6.2).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
pub(crate) struct CertSet {
    /// Lower-case SNI name or `*.suffix` → the pairs for it, in configuration order.
    by_name: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// The first configured pair(s): served for no SNI or an unknown name unless strict.
    default: Vec<Arc<CertifiedKey>>,
}

impl CertSet {
    pub(crate) fn new(pairs: &[Loaded]) -> Self {
        let mut set = CertSet::default();
        for (i, pair) in pairs.iter().enumerate() {
            if i == 0 {
                set.default.push(pair.key.clone());
            } else if pairs[0].names == pair.names {
                // The same names again (an RSA twin of an ECDSA default): also a default.
                set.default.push(pair.key.clone());
            }
            for name in &pair.names {
                set.by_name
                    .entry(name.clone())
                    .or_default()
                    .push(pair.key.clone());
            }
        }
        set
    }

    fn lookup(&self, name: &str) -> Option<&[Arc<CertifiedKey>]> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(keys) = self.by_name.get(&name) {
            return Some(keys);
        }
        let (_, parent) = name.split_once('.')?;
        self.by_name.get(&format!("*.{parent}")).map(Vec::as_slice)
    }
}

/// The listener's certificate resolver: shared by the rustls config, reloads and ACME.
#[derive(Debug)]
pub(crate) struct Resolver {
    certs: RwLock<Arc<CertSet>>,
    /// TLS-ALPN-01 challenge certificates by name, present only while a validation runs.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Unknown or absent SNI: `true` fails the handshake, `false` serves the default pair.
    strict_sni: bool,
}

impl Resolver {
    pub(crate) fn new(set: CertSet, strict_sni: bool) -> Self {
        Resolver {
            certs: RwLock::new(Arc::new(set)),
            challenges: RwLock::default(),
            strict_sni,
        }
    }

    pub(crate) fn replace(&self, set: CertSet) {
        *self.certs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    pub(crate) fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut map = self.challenges.write().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(key) => map.insert(name.to_ascii_lowercase(), key),
            None => map.remove(&name.to_ascii_lowercase()),
        };
    }

    fn current(&self) -> Arc<CertSet> {
        self.certs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The first pair whose key can sign with a scheme the client offered.
fn pick(keys: &[Arc<CertifiedKey>], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
    keys.iter()
        .find(|k| k.key.choose_scheme(schemes).is_some())
        .or_else(|| keys.first())
        .cloned()
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: the validation handshake must get the challenge certificate or
            // nothing; serving the real one would be a wrong answer.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        let set = self.current();
        let schemes = hello.signature_schemes();
        if let Some(name) = hello.server_name() {
            if let Some(keys) = set.lookup(name) {
                return pick(keys, schemes);
            }
        }
        if self.strict_sni {
            return None;
        }
        pick(&set.default, schemes)
    }
}
