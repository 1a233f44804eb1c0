//! Header hygiene of what the edge stores and sends on: the upstream's headers without
//! hop-by-hop fields (`dashcdn_http::hop`), without what the edge computes itself (`Age`,
//! `X-Cache`, `Content-Length`), with this PoP's `Via` appended, and every value in its
//! own allocation.

use dashcdn_http::hop;
use http::header::{AGE, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Cache: HIT | MISS | STALE | COALESCED | REVALIDATED | PASS`.
pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// An upstream's headers as stored and sent on: hop-by-hop headers (and any named in
/// `Connection`) removed, `Age`, `X-Cache` and `Content-Length` removed (we compute our
/// own), our `Via` appended.
///
/// Every value is copied into its own allocation: hyper parses header values as `Bytes`
/// slices of the connection's read buffer (up to ~400 KB, holding the first body bytes
/// too), so storing them as received kept one whole read buffer alive per cached object.
/// Found with DHAT: ~0.5 MB per cached segment beyond its weight, RSS 1.5x cache_size.
pub(crate) fn stored_headers(upstream: &HeaderMap, via: &HeaderValue) -> HeaderMap {
    let options = hop::connection_options(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len() + 4);
    for (name, value) in upstream {
        if hop::is_connection_specific(name, &options) || computed_here(name) {
            continue;
        }
        out.append(name.clone(), detach(value));
    }
    hop::append_via(&mut out, via);
    out
}

/// Fields the edge writes itself, never taken from an upstream, and the targeted
/// `Dashcdn-CDN-Control` (RFC 9213), which is for this CDN alone: obeyed, then stripped.
pub(crate) fn computed_here(name: &HeaderName) -> bool {
    name == AGE || name == X_CACHE || name == CONTENT_LENGTH || name == DASHCDN_CDN_CONTROL
}

/// Our RFC 9213 targeted cache-control field.
pub(crate) const DASHCDN_CDN_CONTROL: HeaderName = HeaderName::from_static("dashcdn-cdn-control");

/// A copy of `value` that shares no buffer with anything (see [`stored_headers`]).
pub(crate) fn detach(value: &HeaderValue) -> HeaderValue {
    let mut v = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
    v.set_sensitive(value.is_sensitive());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONNECTION, VIA};

    #[test]
    fn stored_headers_drop_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert(AGE, HeaderValue::from_static("5"));
        h.insert(X_CACHE, HeaderValue::from_static("HIT"));
        h.insert(VIA, HeaderValue::from_static("1.1 shield"));
        h.insert("etag", HeaderValue::from_static("\"a\""));
        h.insert(DASHCDN_CDN_CONTROL, HeaderValue::from_static("max-age=600"));
        h.insert("cdn-cache-control", HeaderValue::from_static("max-age=60"));
        let out = stored_headers(&h, &HeaderValue::from_static("1.1 eu"));
        assert!(out.get("x-secret").is_none() && out.get(AGE).is_none());
        assert!(out.get("transfer-encoding").is_none() && out.get(X_CACHE).is_none());
        let via: Vec<_> = out.get_all(VIA).iter().collect();
        assert_eq!(via, ["1.1 shield", "1.1 eu"]);
        assert_eq!(out.get("etag").unwrap(), "\"a\"");
        assert!(
            out.get(DASHCDN_CDN_CONTROL).is_none(),
            "ours: obeyed, not forwarded"
        );
        assert!(
            out.get("cdn-cache-control").is_some(),
            "other CDNs' field is forwarded"
        );
    }
}
