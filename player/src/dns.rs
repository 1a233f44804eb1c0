//! `--dns ADDR [--client-subnet CIDR]`: resolving edge names through a given DNS server.
//!
//! Why a small stub over hickory-proto rather than hickory-resolver: the point of
//! `--client-subnet` is to send an EDNS Client Subnet option (RFC 7871) so a player on
//! loopback can ask "as if from London", and hickory-resolver 0.26 builds its queries'
//! EDNS from `ResolverOpts`, which has no subnet field. The stub sends one A query (AAAA if
//! there is no A) with the option, over UDP with a TCP retry on truncation (RFC 7766), and
//! follows the CNAME chain (`video.netcinema.test` → `a1105.kingcdn.test` → A), asking
//! again for the chain's last name when the server did not include its addresses. The
//! answer's lowest TTL says when to resolve again.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// CNAME hops followed before giving up (loops, misconfigurations).
const MAX_HOPS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("`{0}` is not a CIDR subnet (e.g. 81.2.69.0/24)")]
    BadSubnet(String),
    #[error("`{0}` is not a DNS name")]
    BadName(String),
    #[error("DNS server {server}: {what}")]
    Io {
        server: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS server {server} did not answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("DNS server {server} sent a malformed reply: {detail}")]
    Malformed { server: SocketAddr, detail: String },
    #[error("DNS server {server} answered {rcode} for {name}")]
    Rcode {
        server: SocketAddr,
        name: String,
        rcode: String,
    },
    #[error(
        "{name}: no A or AAAA record at the end of the CNAME chain {chain:?} (server {server})"
    )]
    NoAddress {
        server: SocketAddr,
        name: String,
        chain: Vec<String>,
    },
    #[error("{name}: CNAME chain longer than {MAX_HOPS} ({chain:?})")]
    TooLong { name: String, chain: Vec<String> },
}

/// A resolution: addresses, the chain of names that led to them, and how long to trust it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub addrs: Vec<IpAddr>,
    pub chain: Vec<String>,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct DnsClient {
    pub server: SocketAddr,
    pub subnet: Option<ClientSubnet>,
    pub timeout: Duration,
}

/// Parses `--client-subnet`.
pub(crate) fn parse_subnet(s: &str) -> Result<ClientSubnet, DnsError> {
    ClientSubnet::from_str(s).map_err(|_| DnsError::BadSubnet(s.into()))
}

impl DnsClient {
    pub fn new(server: SocketAddr, subnet: Option<ClientSubnet>) -> DnsClient {
        DnsClient {
            server,
            subnet,
            timeout: Duration::from_secs(2),
        }
    }

    fn message(&self, name: &Name, rtype: RecordType) -> Message {
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        if let Some(s) = self.subnet {
            edns.options_mut().insert(EdnsOption::Subnet(s));
        }
        m.set_edns(edns);
        m
    }

    async fn exchange(&self, q: &Message) -> Result<Message, DnsError> {
        let bytes = q.to_vec().map_err(|e| DnsError::Malformed {
            server: self.server,
            detail: e.to_string(),
        })?;
        let io = |what: &'static str| {
            let server = self.server;
            move |source| DnsError::Io {
                server,
                what,
                source,
            }
        };
        let local: SocketAddr = if self.server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let timeout = |_| DnsError::Timeout {
            server: self.server,
            timeout: self.timeout,
        };
        let sock = UdpSocket::bind(local).await.map_err(io("bind"))?;
        sock.connect(self.server).await.map_err(io("connect"))?;
        sock.send(&bytes).await.map_err(io("send"))?;
        let mut buf = vec![0u8; 4096];
        let reply = loop {
            let n = tokio::time::timeout(self.timeout, sock.recv(&mut buf))
                .await
                .map_err(timeout)?
                .map_err(io("receive"))?;
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if m.metadata.id == q.metadata.id {
                break m;
            }
        };
        if !reply.metadata.truncation {
            return Ok(reply);
        }
        // RFC 7766: the whole answer over TCP.
        let tcp = async {
            let mut s = TcpStream::connect(self.server)
                .await
                .map_err(io("tcp connect"))?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend(&bytes);
            s.write_all(&framed).await.map_err(io("tcp send"))?;
            let len = s.read_u16().await.map_err(io("tcp receive"))? as usize;
            let mut b = vec![0u8; len];
            s.read_exact(&mut b).await.map_err(io("tcp receive"))?;
            Message::from_vec(&b).map_err(|e| DnsError::Malformed {
                server: self.server,
                detail: e.to_string(),
            })
        };
        tokio::time::timeout(self.timeout, tcp)
            .await
            .map_err(timeout)?
    }

    /// Resolves `host` to addresses, following CNAMEs.
    pub async fn resolve(&self, host: &str) -> Result<Resolved, DnsError> {
        let mut name = Name::from_str_relaxed(host).map_err(|_| DnsError::BadName(host.into()))?;
        name.set_fqdn(true);
        let mut last_chain = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            let mut chain = vec![host.trim_end_matches('.').to_string()];
            let mut ttl = u32::MAX;
            let mut current = name.clone();
            for _ in 0..MAX_HOPS {
                let reply = self.exchange(&self.message(&current, rtype)).await?;
                let rcode = reply.metadata.response_code;
                if rcode != ResponseCode::NoError {
                    return Err(DnsError::Rcode {
                        server: self.server,
                        name: current.to_string(),
                        rcode: rcode.to_string(),
                    });
                }
                // Walk the chain as far as this answer goes.
                let mut moved = false;
                loop {
                    let addrs: Vec<(IpAddr, u32)> = reply
                        .answers
                        .iter()
                        .filter(|r| r.name == current)
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
                            RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl)),
                            _ => None,
                        })
                        .collect();
                    if !addrs.is_empty() {
                        let ttl = addrs.iter().map(|a| a.1).fold(ttl, u32::min);
                        return Ok(Resolved {
                            addrs: addrs.into_iter().map(|a| a.0).collect(),
                            chain,
                            ttl: Duration::from_secs(ttl as u64),
                        });
                    }
                    let next = reply.answers.iter().find_map(|r| match &r.data {
                        RData::CNAME(c) if r.name == current => Some((c.0.clone(), r.ttl)),
                        _ => None,
                    });
                    let Some((target, t)) = next else { break };
                    ttl = ttl.min(t);
                    chain.push(target.to_string().trim_end_matches('.').to_string());
                    if chain.len() > MAX_HOPS + 1 {
                        return Err(DnsError::TooLong {
                            name: host.into(),
                            chain,
                        });
                    }
                    current = target;
                    moved = true;
                }
                if !moved {
                    break;
                }
                // The server named the next hop but not its addresses: ask for it.
            }
            last_chain = chain;
        }
        Err(DnsError::NoAddress {
            server: self.server,
            name: host.into(),
            chain: last_chain,
        })
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}
