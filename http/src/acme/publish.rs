//! DNS-01 through geodns: the edge publishes `_acme-challenge.<name>` TXT values on
//! geodns's admin listener, authenticated by a shared bearer token.
//!
//! Protocol (both ends here, so they cannot drift):
//! - `PUT {url}/{fqdn}` with `Authorization: Bearer {token}` and the TXT value as the body
//!   adds the value (a name may carry several: apex and wildcard orders share one name);
//! - `DELETE {url}/{fqdn}` with the same header removes every value of the name;
//! - 204 on success, 401 for a missing or wrong token, 400 for a name outside
//!   `_acme-challenge.` or a value that is not base64url of a SHA-256 (43 characters).
//!
//! geodns keeps a [`TxtBoard`], mounts [`TxtBoard::handle`] at `{url}` and answers TXT
//! queries for names on the board from [`TxtBoard::get`] (TTL 0-60 s).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::TxtPublisher;

/// Client side: publishes TXT values to a geodns admin URL.
#[derive(Debug, Clone)]
pub struct HttpTxtPublisher {
    url: String,
    token: String,
    client: Client<crate::client::HttpsConnector, Full<Bytes>>,
}

impl HttpTxtPublisher {
    /// `url` like `http://geodns-admin:9153/_geodns/acme`; `ca` trusts an HTTPS admin URL.
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, crate::tls::TlsError> {
        let connector = crate::client::https_connector(HttpConnector::new(), ca)?;
        Ok(HttpTxtPublisher {
            url: url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn send(&self, method: Method, fqdn: &str, body: &str) -> Result<(), String> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}/{}", self.url, fqdn))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| format!("{}: {e}", self.url))?;
        let rsp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{}: {}", self.url, dashcdn_config::chain(&e)))?;
        let status = rsp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = rsp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(format!("{}/{fqdn}: {status} {}", self.url, text.trim()))
    }
}

impl TxtPublisher for HttpTxtPublisher {
    fn publish<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.send(Method::PUT, fqdn, value))
    }
    fn remove<'a>(
        &'a self,
        fqdn: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.send(Method::DELETE, fqdn, ""))
    }
}

/// Server side: the TXT values published so far, by lower-case name without the final dot.
#[derive(Debug, Clone)]
pub struct TxtBoard {
    token: Arc<str>,
    values: Arc<RwLock<HashMap<String, Vec<String>>>>,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Compare without stopping at the first difference (no timing hint on the token).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TxtBoard {
    /// A board that accepts changes carrying `token` (must not be empty).
    pub fn new(token: impl Into<String>) -> Self {
        TxtBoard {
            token: token.into().into(),
            values: Arc::default(),
        }
    }

    /// TXT values of `name` (empty when none).
    pub fn get(&self, name: &str) -> Vec<String> {
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&normalize(name))
            .cloned()
            .unwrap_or_default()
    }

    /// Every name on the board with its values (for a server that rebuilds its zones).
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        let map = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort();
        all
    }

    /// Handle one admin request: `name` is the path after the mount point, `authorization`
    /// the header's value. Returns the status and a one-line body.
    pub fn handle(
        &self,
        method: &Method,
        name: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> (StatusCode, &'static str) {
        let token = authorization.and_then(|a| a.strip_prefix("Bearer "));
        if self.token.is_empty()
            || !token.is_some_and(|t| same(t.as_bytes(), self.token.as_bytes()))
        {
            return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
        }
        let name = normalize(name.trim_start_matches('/'));
        if !name.starts_with("_acme-challenge.") {
            return (StatusCode::BAD_REQUEST, "only _acme-challenge.* names\n");
        }
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        match *method {
            Method::PUT => {
                let value = String::from_utf8_lossy(body).trim().to_owned();
                let ok = value.len() == 43
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return (
                        StatusCode::BAD_REQUEST,
                        "value must be base64url of a SHA-256 (43 characters)\n",
                    );
                }
                let values = map.entry(name).or_default();
                if !values.contains(&value) {
                    values.push(value);
                }
                (StatusCode::NO_CONTENT, "")
            }
            Method::DELETE => {
                map.remove(&name);
                (StatusCode::NO_CONTENT, "")
            }
            _ => (StatusCode::METHOD_NOT_ALLOWED, "PUT or DELETE\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";

    #[test]
    fn board_needs_the_token_and_keeps_values_per_name() {
        let b = TxtBoard::new("s3cret");
        let name = "_acme-challenge.edge.test";
        assert_eq!(
            b.handle(&Method::PUT, name, None, V.as_bytes()).0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            b.handle(&Method::PUT, name, Some("Bearer wrong!"), V.as_bytes())
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert!(b.get(name).is_empty());
        assert_eq!(
            b.handle(&Method::PUT, name, Some("Bearer s3cret"), V.as_bytes())
                .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(b.get("_ACME-challenge.edge.test."), vec![V.to_string()]);
        assert_eq!(
            b.handle(
                &Method::PUT,
                "edge.test",
                Some("Bearer s3cret"),
                V.as_bytes()
            )
            .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            b.handle(&Method::PUT, name, Some("Bearer s3cret"), b"short")
                .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            b.handle(&Method::DELETE, name, Some("Bearer s3cret"), b"")
                .0,
            StatusCode::NO_CONTENT
        );
        assert!(b.get(name).is_empty());
    }

    #[test]
    fn an_empty_token_accepts_nothing() {
        let b = TxtBoard::new("");
        assert_eq!(
            b.handle(
                &Method::PUT,
                "_acme-challenge.x",
                Some("Bearer "),
                V.as_bytes()
            )
            .0,
            StatusCode::UNAUTHORIZED
        );
    }
}
