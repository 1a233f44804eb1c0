//! HTTP for the player: keep-alive connections per edge address, socket-level timing,
//! retries with backoff and failover between the addresses a name resolves to.
//!
//! Why one reqwest client per address: the player must know (and choose) which edge serves
//! each request — to fail over when it breaks and to log who served what. A client whose
//! resolver is pinned to one address (`ClientBuilder::resolve`) keeps its own keep-alive
//! pool to that edge, and the request still carries the real `Host`.
//!
//! Addresses come from, in order: `--resolve HOST:PORT:ADDR[,ADDR]` (like curl, and ADDR may
//! carry its own port), `--dns` (see [`crate::dns`], re-resolved when the TTL expires), or
//! the system resolver. An attempt fails on a connect error, a timeout (no response, or a
//! body that stops arriving), or a 5xx; it is retried on the same address with exponential
//! backoff, then the next address is tried. 4xx answers are not retried: the content is
//! not there.

use dashcdn_config::chain as error_chain;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;

use crate::dns::{DnsClient, DnsError};
use crate::mpd::Resource;
use crate::shape::Shaper;

/// Bytes per paced read under `--trace`.
const SHAPED_SLICE: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{url}: HTTP {status} from {edge}")]
    Status {
        url: String,
        status: u16,
        edge: String,
    },
    #[error("{url}: gave up after {attempts} attempts on {addrs:?}; last error: {last}")]
    Exhausted {
        url: String,
        attempts: u32,
        addrs: Vec<SocketAddr>,
        last: String,
    },
    #[error("{url}: cannot resolve {host}")]
    Resolve {
        url: String,
        host: String,
        #[source]
        source: DnsError,
    },
    #[error("{url}: cannot resolve {host}: {detail}")]
    System {
        url: String,
        host: String,
        detail: String,
    },
    #[error("{0}: only http:// URLs are supported")]
    Scheme(String),
    #[error("`{0}`: --resolve takes HOST:PORT:ADDR[,ADDR...] (ADDR an IP, or IP:PORT)")]
    BadResolve(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
}

/// `--resolve` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
}

impl std::str::FromStr for ResolveOverride {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::BadResolve(s.into());
        let mut it = s.splitn(3, ':');
        let host = it.next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let port: u16 = it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let rest = it.next().ok_or_else(bad)?;
        let addrs = rest
            .split(',')
            .map(|a| {
                let a = a.trim();
                a.parse::<SocketAddr>()
                    .or_else(|_| {
                        a.trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse::<IpAddr>()
                            .map(|ip| SocketAddr::new(ip, port))
                    })
                    .map_err(|_| bad())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(bad());
        }
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port,
            addrs,
        })
    }
}

/// Retry and timeout policy.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Connect, first-byte and between-chunks timeout.
    pub timeout: Duration,
    /// Retries on one address before moving to the next.
    pub retries: u32,
    /// First backoff; doubles per retry.
    pub backoff: Duration,
    /// Rounds over all addresses before giving up.
    pub rounds: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            timeout: Duration::from_secs(10),
            retries: 1,
            backoff: Duration::from_millis(100),
            rounds: 2,
        }
    }
}

/// The body so far, as [`Net::fetch_with`] reports it while a download runs.
pub(crate) struct Progress<'a> {
    /// Bytes received so far.
    pub bytes: u64,
    /// Content-Length (or range length) when the server said it; `None` for a chunked
    /// response (a live segment still being produced).
    pub size: Option<u64>,
    /// Request sent → now.
    pub since: Duration,
    /// Request sent → response headers.
    pub ttfb: Duration,
    /// The bytes that just arrived.
    pub data: &'a [u8],
}

/// What to ask of a fetch beyond getting the bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Want {
    /// Keep the body in [`Fetch::body`].
    pub keep: bool,
    /// A media segment: before it counts as fetched, its box structure must add up
    /// (`dashcdn_http::cmaf::check`); one that does not is retried like a failed attempt.
    pub verify: bool,
}

/// How one fetch went.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub bytes: u64,
    /// Content-Length (or range length) when the server said it.
    pub size: Option<u64>,
    /// Of the successful attempt: request sent → response headers.
    pub ttfb: Duration,
    /// Of the successful attempt: request sent → last byte read (or abandonment).
    pub total: Duration,
    /// Time lost to failed attempts and backoff before it.
    pub lost: Duration,
    pub addr: SocketAddr,
    pub via: Option<String>,
    pub x_cache: Option<String>,
    pub abandoned: bool,
    pub retries: u32,
    pub failovers: u32,
    pub status: u16,
    /// Attempts refused because the body's box structure did not add up (a cut segment).
    pub integrity_failures: u32,
    /// The body, when asked to keep it (indexes, MPDs).
    pub body: Option<Vec<u8>>,
    /// The `Date` header of the response, when there is one.
    pub date: Option<String>,
}

impl Fetch {
    /// Who served it: the `Via` pseudonym when there is one, else the address.
    pub fn edge(&self) -> String {
        match &self.via {
            Some(v) => v
                .rsplit(',')
                .next()
                .unwrap_or(v)
                .split_whitespace()
                .last()
                .unwrap_or(v)
                .to_string(),
            None => self.addr.to_string(),
        }
    }
}

struct Pool {
    addrs: Vec<SocketAddr>,
    current: usize,
    expires: Option<Instant>,
    clients: HashMap<SocketAddr, reqwest::Client>,
}

/// One session's view of the network.
pub struct Net {
    cfg: NetConfig,
    dns: Option<DnsClient>,
    overrides: Vec<ResolveOverride>,
    pools: HashMap<(String, u16), Pool>,
    pub shaper: Option<Shaper>,
    /// Ranged requests answered 200 with the whole file (warned about once).
    range_ignored: u32,
}

enum Attempt {
    Fatal(NetError),
    Retry(String),
    /// The body arrived but is not a whole segment (see [`Want::verify`]).
    Integrity(String),
}

/// Whether `body` starts like an ISO BMFF file (a box type a segment begins with): only
/// those are checked, so a WebM or MPEG-TS presentation is not refused for not being MP4.
fn looks_mp4(body: &[u8]) -> bool {
    matches!(
        body.get(4..8),
        Some(
            b"styp" | b"moof" | b"sidx" | b"ftyp" | b"prft" | b"emsg" | b"free" | b"mdat" | b"moov"
        )
    )
}

impl Net {
    pub fn new(
        cfg: NetConfig,
        dns: Option<DnsClient>,
        overrides: Vec<ResolveOverride>,
        shaper: Option<Shaper>,
    ) -> Net {
        Net {
            cfg,
            dns,
            overrides,
            pools: HashMap::new(),
            shaper,
            range_ignored: 0,
        }
    }

    async fn resolve(
        &self,
        url: &Url,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Option<Instant>), NetError> {
        if let Some(o) = self
            .overrides
            .iter()
            .find(|o| o.host == host && o.port == port)
        {
            return Ok((o.addrs.clone(), None));
        }
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok((vec![SocketAddr::new(ip, port)], None));
        }
        if let Some(d) = &self.dns {
            let r = d.resolve(host).await.map_err(|source| NetError::Resolve {
                url: url.to_string(),
                host: host.into(),
                source,
            })?;
            debug!(host, chain = ?r.chain, addrs = ?r.addrs, ttl = ?r.ttl, "resolved");
            let addrs = r
                .addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            return Ok((addrs, Some(Instant::now() + r.ttl)));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| NetError::System {
                url: url.to_string(),
                host: host.into(),
                detail: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(NetError::System {
                url: url.to_string(),
                host: host.into(),
                detail: "no addresses".into(),
            });
        }
        Ok((addrs, Some(Instant::now() + Duration::from_secs(60))))
    }

    async fn pool(&mut self, url: &Url, force: bool) -> Result<&mut Pool, NetError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(80);
        let key = (host.clone(), port);
        let stale = match self.pools.get(&key) {
            None => true,
            Some(p) => force || p.expires.is_some_and(|e| Instant::now() >= e),
        };
        if stale {
            let (addrs, expires) = self.resolve(url, &host, port).await?;
            let pool = self.pools.entry(key.clone()).or_insert_with(|| Pool {
                addrs: Vec::new(),
                current: 0,
                expires: None,
                clients: HashMap::new(),
            });
            // Stay on the current edge if the new answer still has it.
            let cur = pool.addrs.get(pool.current).copied();
            pool.current = cur
                .and_then(|c| addrs.iter().position(|a| *a == c))
                .unwrap_or(0);
            pool.addrs = addrs;
            pool.expires = expires;
        }
        Ok(self.pools.get_mut(&key).expect("pool just made"))
    }

    fn client(
        cfg: &NetConfig,
        pool: &mut Pool,
        host: &str,
        addr: SocketAddr,
    ) -> Result<reqwest::Client, NetError> {
        if let Some(c) = pool.clients.get(&addr) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4)
            .redirect(reqwest::redirect::Policy::limited(5))
            .no_proxy();
        if host.parse::<IpAddr>().is_err() {
            b = b.resolve(host, addr);
        }
        let c = b.build().map_err(|e| NetError::Client(e.to_string()))?;
        pool.clients.insert(addr, c.clone());
        Ok(c)
    }

    /// Fetches `res`. `on_progress(bytes so far, size, since request, ttfb)` is called as
    /// the body arrives; returning true abandons the download. `keep` keeps the body.
    pub async fn fetch(
        &mut self,
        res: &Resource,
        keep: bool,
        mut on_progress: impl FnMut(u64, Option<u64>, Duration, Duration) -> bool,
    ) -> Result<Fetch, NetError> {
        let want = Want {
            keep,
            verify: false,
        };
        self.fetch_with(res, want, |p| on_progress(p.bytes, p.size, p.since, p.ttfb))
            .await
    }

    /// [`Net::fetch`] with the bytes themselves passed to `on_progress` as they arrive,
    /// and the body checked when `want.verify`.
    pub(crate) async fn fetch_with(
        &mut self,
        res: &Resource,
        want: Want,
        mut on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<Fetch, NetError> {
        let url = &res.url;
        if url.scheme() != "http" {
            return Err(NetError::Scheme(url.to_string()));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let began = Instant::now();
        let mut retries = 0u32;
        let mut failovers = 0u32;
        let mut on_addr = 0u32;
        let mut tried_in_round = 0usize;
        let mut rounds = 0u32;
        let mut force = false;
        let mut integrity_failures = 0u32;
        let mut last;
        loop {
            let cfg = self.cfg.clone();
            let pool = self.pool(url, force).await?;
            force = false;
            let addr = pool.addrs[pool.current];
            let n_addrs = pool.addrs.len();
            let client = Net::client(&cfg, pool, &host, addr)?;
            let attempt_start = Instant::now();
            match self
                .attempt(&client, res, addr, want, &mut on_progress)
                .await
            {
                Ok(mut f) => {
                    if retries > 0 {
                        f.lost = attempt_start.duration_since(began);
                    }
                    f.retries = retries;
                    f.failovers = failovers;
                    f.integrity_failures = integrity_failures;
                    return Ok(f);
                }
                Err(attempt) => {
                    let why = match attempt {
                        Attempt::Fatal(e) => return Err(e),
                        Attempt::Retry(why) => why,
                        Attempt::Integrity(why) => {
                            integrity_failures += 1;
                            why
                        }
                    };
                    last = format!("{addr}: {why}");
                    retries += 1;
                    on_addr += 1;
                    if on_addr > cfg.retries {
                        on_addr = 0;
                        tried_in_round += 1;
                        if tried_in_round >= n_addrs {
                            tried_in_round = 0;
                            rounds += 1;
                            if rounds >= cfg.rounds {
                                let addrs =
                                    self.pools.values().flat_map(|p| p.addrs.clone()).collect();
                                return Err(NetError::Exhausted {
                                    url: url.to_string(),
                                    attempts: retries,
                                    addrs,
                                    last,
                                });
                            }
                            // Everything failed: maybe the DNS knows better by now.
                            force = true;
                        }
                        let pool = self.pool(url, false).await?;
                        if pool.addrs.len() > 1 {
                            pool.current = (pool.current + 1) % pool.addrs.len();
                            let next = pool.addrs[pool.current];
                            failovers += 1;
                            warn!(url = %url, failed = %addr, next = %next, stalled_ms = began.elapsed().as_millis() as u64, "edge failed ({why}); failing over");
                        } else {
                            warn!(url = %url, edge = %addr, stalled_ms = began.elapsed().as_millis() as u64, "edge failed ({why}); retrying");
                        }
                    } else {
                        warn!(url = %url, edge = %addr, attempt = on_addr, "request failed ({why}); retrying");
                    }
                    let backoff = cfg.backoff * 2u32.saturating_pow(on_addr.min(6));
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    async fn attempt(
        &mut self,
        client: &reqwest::Client,
        res: &Resource,
        addr: SocketAddr,
        want: Want,
        on_progress: &mut impl FnMut(&Progress) -> bool,
    ) -> Result<Fetch, Attempt> {
        if let Some(s) = &self.shaper {
            let lat = s.latency();
            if !lat.is_zero() {
                tokio::time::sleep(lat).await;
            }
        }
        let timeout = self.cfg.timeout;
        let mut req = client.get(res.url.clone());
        if let Some((a, b)) = res.range {
            req = req.header(reqwest::header::RANGE, format!("bytes={a}-{b}"));
        }
        let start = Instant::now();
        let resp = match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => return Err(Attempt::Retry(format!("no response within {timeout:?}"))),
            Ok(Err(e)) => return Err(Attempt::Retry(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let ttfb = start.elapsed();
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // Every hop appends itself (possibly as a header line of its own): the last hop
        // is the edge that served us.
        let via = {
            let hops: Vec<&str> = resp
                .headers()
                .get_all("via")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!hops.is_empty()).then(|| hops.join(", "))
        };
        let x_cache = header("x-cache");
        let date = header("date");
        let edge = via.clone().unwrap_or_else(|| addr.to_string());
        if resp.status().is_server_error() {
            return Err(Attempt::Retry(format!("HTTP {status} from {edge}")));
        }
        if !resp.status().is_success() {
            return Err(Attempt::Fatal(NetError::Status {
                url: res.url.to_string(),
                status,
                edge,
            }));
        }
        if res.range.is_some() && status == 200 {
            // RFC 9110 §14.2: a server may ignore Range. Then every segment costs the whole
            // file; say so once rather than on every segment.
            if self.range_ignored == 0 {
                warn!(url = %res.url, edge = %edge, "the server ignored Range and sent the whole file (200, not 206): every segment downloads all of it");
            }
            self.range_ignored += 1;
        }
        let size = resp.content_length().or(res.range_len());
        let mut stream = resp.bytes_stream();
        let mut bytes = 0u64;
        let mut body = (want.keep || want.verify).then(Vec::new);
        let mut abandoned = false;
        loop {
            let chunk = match tokio::time::timeout(timeout, stream.next()).await {
                Err(_) => {
                    return Err(Attempt::Retry(format!(
                        "body stalled: nothing for {timeout:?} after {bytes} bytes"
                    )))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Attempt::Retry(error_chain(&e))),
                Ok(Some(Ok(c))) => c,
            };
            // A socket read can hold a whole segment; under a trace it is paced (and may be
            // abandoned) a slice at a time, as a slow link would deliver it.
            let slice = if self.shaper.is_some() {
                SHAPED_SLICE
            } else {
                chunk.len().max(1)
            };
            for piece in chunk.chunks(slice) {
                if let Some(s) = &mut self.shaper {
                    s.take(piece.len()).await;
                }
                bytes += piece.len() as u64;
                if let Some(b) = &mut body {
                    b.extend_from_slice(piece);
                }
                let p = Progress {
                    bytes,
                    size,
                    since: start.elapsed(),
                    ttfb,
                    data: piece,
                };
                if on_progress(&p) {
                    abandoned = true;
                    break;
                }
            }
            if abandoned {
                break;
            }
        }
        if !abandoned {
            if let Some(n) = size {
                if bytes < n {
                    return Err(Attempt::Retry(format!(
                        "body ended after {bytes} of {n} bytes"
                    )));
                }
            }
            if want.verify {
                let b = body.as_deref().unwrap_or_default();
                if looks_mp4(b) {
                    if let Err(e) = dashcdn_http::cmaf::check(b) {
                        return Err(Attempt::Integrity(format!(
                            "the segment's boxes do not add up ({bytes} bytes): {e}"
                        )));
                    }
                }
            }
        }
        if !want.keep {
            body = None;
        }
        Ok(Fetch {
            bytes,
            size,
            ttfb,
            total: start.elapsed(),
            lost: Duration::ZERO,
            addr,
            via,
            x_cache,
            abandoned,
            retries: 0,
            failovers: 0,
            status,
            integrity_failures: 0,
            body,
            date,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_flags() {
        let r: ResolveOverride = "Video.test:80:127.0.0.1,127.0.0.2:8081".parse().unwrap();
        assert_eq!(r.host, "video.test");
        assert_eq!(
            r.addrs,
            vec![
                "127.0.0.1:80".parse().unwrap(),
                "127.0.0.2:8081".parse().unwrap()
            ]
        );
        assert!("video.test:80".parse::<ResolveOverride>().is_err());
        assert!("video.test:x:1.2.3.4".parse::<ResolveOverride>().is_err());
        assert!("video.test:80:notanip".parse::<ResolveOverride>().is_err());
    }
}
