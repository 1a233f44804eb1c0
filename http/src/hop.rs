//! Hop-by-hop header hygiene and `Via`, for anything that forwards a message (the edge).
//!
//! RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header field before a
//! message is forwarded and, for each connection-option in this field, remove any header
//! field(s) from the message with the same name as the connection-option, and then remove
//! the Connection header field itself". The fixed list adds the fields that are hop-by-hop
//! whatever `Connection` says (§7.6.1's examples, `TE`, `Transfer-Encoding`, `Upgrade`,
//! RFC 9112's `Keep-Alive`, the legacy `Proxy-Connection`) and the proxy credentials
//! (`Proxy-Authenticate`, `Proxy-Authorization`, meant for the next proxy only).
//!
//! RFC 9110 §7.6.3: a proxy "MUST send an appropriate Via header field ... in each message
//! that it forwards"; a proxy that finds its own pseudonym in `Via` sees a forwarding loop.

use http::header::{CONNECTION, VIA};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message: never forwarded nor stored.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// The field names listed in `headers`' `Connection` options, lowercased.
pub fn connection_options(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `name` must not be forwarded: hop-by-hop, or listed in `options` (from
/// [`connection_options`] of the same message).
pub fn is_connection_specific(name: &HeaderName, options: &[String]) -> bool {
    is_hop_by_hop(name) || options.iter().any(|o| o == name.as_str())
}

/// Removes every hop-by-hop field and every field named in `Connection` from `headers`.
pub fn strip(headers: &mut HeaderMap) {
    let options = connection_options(headers);
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_connection_specific(n, &options))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Appends `1.1 <pseudonym>` to `Via` (after any entries already there).
pub fn append_via(headers: &mut HeaderMap, value: &HeaderValue) {
    headers.append(VIA, value.clone());
}

/// Whether `pseudonym` already appears as a received-by in `Via`: a forwarding loop.
pub fn via_contains(headers: &HeaderMap, pseudonym: &str) -> bool {
    headers
        .get_all(VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|entry| entry.split_whitespace().nth(1))
        .any(|by| by.eq_ignore_ascii_case(pseudonym))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strip_removes_fixed_list_and_connection_options() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("transfer-encoding", "chunked"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("etag", "\"a\""),
        ]);
        strip(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["etag"]);
    }

    #[test]
    fn via_appends_and_detects_loops() {
        let mut h = map(&[("via", "1.1 shield, HTTP/1.1 other")]);
        append_via(&mut h, &HeaderValue::from_static("1.1 eu"));
        let all: Vec<_> = h.get_all(VIA).iter().collect();
        assert_eq!(all, ["1.1 shield, HTTP/1.1 other", "1.1 eu"]);
        assert!(via_contains(&h, "eu") && via_contains(&h, "shield") && via_contains(&h, "OTHER"));
        assert!(!via_contains(&h, "us") && !via_contains(&h, "1.1"));
    }
}
