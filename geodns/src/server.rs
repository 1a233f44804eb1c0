//! The DNS server: answers queries from the current [`Snapshot`], UDP and TCP on one port.
//!
//! - **TCP** runs on hickory-server's `Server` with our [`RequestHandler`]: it frames
//!   messages, applies idle timeouts and answers unparsable requests with FORMERR.
//! - **UDP** runs on blocking threads (one per core) that each `recv_from` the same socket
//!   and answer inline. Answering is pure CPU work on in-memory tables, so there is nothing
//!   to await between receive and send; hickory's UDP loop spawns a task per packet and
//!   funnels every answer through one channel and one sender task, which on two cores cost
//!   more than the lookup. The parsing and encoding are still hickory's (`Request`,
//!   `MessageResponseBuilder`), shared with the TCP path through [`prepare`]. Each
//!   thread has its own `SO_REUSEPORT` socket when the CLI binds ([`bind_udp_reuseport`],
//!   the gdnsd/Knot layout) and its own answer cache (see `answer_udp_cached`); on Linux
//!   it moves up to 32 datagrams per `recvmmsg`/`sendmmsg` (nix's safe wrappers).
//!
//! Why our own handler rather than hickory's `Catalog`: the catalog builds a fresh EDNS
//! record for each reply and so never echoes the EDNS Client Subnet option, and geo answers
//! need the option echoed with its scope (RFC 7871 §7.2.1).
//!
//! Reload: the answer tables, the MaxMind reader and the health table of one config
//! generation form a [`Snapshot`] behind an `ArcSwap`. A reload builds the new snapshot
//! beside the old one and swaps the pointer; a query in flight finishes on the snapshot it
//! loaded, so none is dropped. A config or database that fails to build is refused and the
//! old snapshot keeps serving.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageRequest, MessageResponseBuilder, Queries};
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::config::GeodnsConfig;
use crate::geo::{Decision, Locator};
use crate::health::{spawn_probers, HealthTable};
use crate::metrics::Metrics;
use crate::zone::{PopChoice, Zones};
use crate::GeodnsError;

/// How long a TCP connection may sit idle between queries (RFC 7766 §6.2.3 suggests
/// seconds, not minutes, for a busy server).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a blocked UDP thread wakes up to notice a shutdown.
const UDP_POLL: Duration = Duration::from_millis(100);
/// Largest datagram we read; longer ones are cut by the kernel and answered FORMERR.
const UDP_RECV_BUFFER: usize = 4096;
/// Datagrams read (and answers sent) per system call on Linux.
#[cfg(target_os = "linux")]
const UDP_BATCH: usize = 32;

/// Everything one config generation answers from.
pub struct Snapshot {
    pub config: GeodnsConfig,
    pub zones: Zones,
    pub locator: Locator,
    pub health: Arc<HealthTable>,
    /// `answers_by_pop_total` handles, indexed like `config.pops`, plus the all-PoPs one.
    pop_counters: Vec<Counter>,
    all_counter: Counter,
}

impl Snapshot {
    fn build(
        config: GeodnsConfig,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, GeodnsError> {
        let zones = Zones::build(&config)?;
        let locator = Locator::build(&config)?;
        let health = Arc::new(HealthTable::new(
            &config.pops,
            previous.map(|p| p.health.as_ref()),
        ));
        let pop_counters = config
            .pops
            .iter()
            .map(|p| metrics.pop_counter(&p.name))
            .collect();
        Ok(Snapshot {
            zones,
            locator,
            health,
            pop_counters,
            all_counter: metrics.pop_counter("all"),
            config,
        })
    }
}

struct Shared {
    current: ArcSwap<Snapshot>,
    metrics: Metrics,
    /// The probe tasks of the current snapshot, while serving.
    probers: Mutex<Option<JoinSet<()>>>,
    /// Set while `serve` runs: reloads restart probers only then.
    serving: AtomicBool,
}

/// A geo DNS instance: cheap to clone, every clone is the same server.
#[derive(Clone)]
pub struct GeoDns {
    shared: Arc<Shared>,
}

impl GeoDns {
    /// Builds the answer tables and opens the MaxMind database; nothing runs yet.
    pub fn new(config: GeodnsConfig) -> Result<GeoDns, GeodnsError> {
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(config, &metrics, None)?;
        Ok(GeoDns {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(snapshot),
                metrics,
                probers: Mutex::new(None),
                serving: AtomicBool::new(false),
            }),
        })
    }

    /// Replaces config and database (the SIGHUP path). On error the old snapshot keeps
    /// serving and the error says why. Call from within the Tokio runtime while serving
    /// (health probes are restarted for the new PoPs).
    pub fn reload(&self, config: GeodnsConfig) -> Result<(), GeodnsError> {
        let old = self.shared.current.load_full();
        match Snapshot::build(config, &self.shared.metrics, Some(&old)) {
            Ok(new) => {
                let new = Arc::new(new);
                self.shared.current.store(new.clone());
                if self.shared.serving.load(Ordering::SeqCst) {
                    self.start_probers(&new);
                }
                self.shared.metrics.reload(true);
                info!(
                    zones = new.config.zones.len(),
                    pops = new.config.pops.len(),
                    maxmind = ?new.config.maxmind,
                    "reloaded config"
                );
                Ok(())
            }
            Err(e) => {
                self.shared.metrics.reload(false);
                Err(e)
            }
        }
    }

    /// The snapshot answering right now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Where `ip` would be sent right now (live health), and why.
    pub fn explain(&self, ip: IpAddr) -> crate::Explanation {
        let snap = self.snapshot();
        crate::Explanation::new(&snap.locator, &snap.health, ip)
    }

    /// The `/metrics` text, with the `pop_up` gauges refreshed from the health table.
    pub fn metrics_text(&self) -> String {
        let snap = self.shared.current.load();
        for (i, p) in snap.config.pops.iter().enumerate() {
            self.shared
                .metrics
                .pop_up_gauge(&p.name)
                .set(i64::from(snap.health.is_up(i)));
        }
        self.shared.metrics.encode()
    }

    /// `GET /metrics` as an axum router.
    pub fn metrics_router(&self) -> axum::Router {
        let me = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    (
                        [(http_content_type(), crate::metrics::CONTENT_TYPE)],
                        me.metrics_text(),
                    )
                }
            }),
        )
    }

    /// Serves `/metrics` on `listener` until `shutdown` completes.
    pub async fn serve_metrics(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GeodnsError> {
        let addr = listener
            .local_addr()
            .map_err(GeodnsError::io("metrics listener"))?;
        info!(%addr, "listening on {addr} (metrics)");
        axum::serve(listener, self.metrics_router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(GeodnsError::io("metrics server"))
    }

    fn start_probers(&self, snap: &Snapshot) {
        let set = spawn_probers(snap.health.clone(), &snap.config.pops, &snap.config.health);
        // Dropping the previous JoinSet aborts the previous generation's probes.
        *self
            .shared
            .probers
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(set);
    }

    fn stop_probers(&self) {
        self.shared
            .probers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Answers DNS on `udp` and `tcp` (normally the same address) until `shutdown`.
    /// `udp_threads` threads share the one socket; see [`GeoDns::serve_sockets`] and
    /// [`bind_udp_reuseport`] for one socket per thread.
    pub async fn serve(
        &self,
        udp: tokio::net::UdpSocket,
        tcp: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GeodnsError> {
        self.serve_sockets(vec![udp], tcp, shutdown).await
    }

    /// Like [`GeoDns::serve`] with several UDP sockets bound to the same address with
    /// `SO_REUSEPORT`: the kernel spreads clients over them and each has its own thread,
    /// so no two threads wake for the same datagram. With a single socket, `udp_threads`
    /// threads (default: one per core) share it.
    pub async fn serve_sockets(
        &self,
        udps: Vec<tokio::net::UdpSocket>,
        tcp: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GeodnsError> {
        let Some(first) = udps.first() else {
            return Err(GeodnsError::Server("no UDP socket to serve".into()));
        };
        let udp_addr = first.local_addr().map_err(GeodnsError::io("udp socket"))?;
        let tcp_addr = tcp.local_addr().map_err(GeodnsError::io("tcp listener"))?;
        info!(%udp_addr, sockets = udps.len(), "listening on {udp_addr} (udp)");
        info!(%tcp_addr, "listening on {tcp_addr} (tcp)");

        let threads = match (udps.len(), self.snapshot().config.udp_threads) {
            (1, 0) => default_udp_threads(),
            (1, n) => n,
            (n, _) => n,
        };
        let mut socks = Vec::new();
        for udp in udps {
            let udp = udp.into_std().map_err(GeodnsError::io("udp socket"))?;
            udp.set_nonblocking(false)
                .and_then(|()| udp.set_read_timeout(Some(UDP_POLL)))
                .map_err(GeodnsError::io("udp socket"))?;
            socks.push(udp);
        }

        self.shared.serving.store(true, Ordering::SeqCst);
        self.start_probers(&self.snapshot());

        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for n in 0..threads {
            let sock = socks[n % socks.len()]
                .try_clone()
                .map_err(GeodnsError::io("udp socket"))?;
            let (me, stop) = (self.clone(), stop.clone());
            let h = std::thread::Builder::new()
                .name(format!("geodns-udp-{n}"))
                .spawn(move || {
                    #[cfg(target_os = "linux")]
                    me.udp_loop_batched(sock, &stop);
                    #[cfg(not(target_os = "linux"))]
                    me.udp_loop(sock, &stop);
                })
                .map_err(GeodnsError::io("udp thread"))?;
            handles.push(h);
        }

        let mut server = hickory_server::Server::new(TcpHandler(self.clone()));
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, 64);

        shutdown.await;
        info!("geodns shutting down");
        stop.store(true, Ordering::SeqCst);
        self.shared.serving.store(false, Ordering::SeqCst);
        self.stop_probers();
        let tcp_result = server.shutdown_gracefully().await;
        // The UDP threads notice `stop` within UDP_POLL.
        tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await
        .ok();
        tcp_result.map_err(|e| GeodnsError::Server(e.to_string()))
    }

    /// The portable loop: one `recv_from`/`send_to` per datagram.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    fn udp_loop(&self, sock: std::net::UdpSocket, stop: &AtomicBool) {
        let mut buf = vec![0u8; UDP_RECV_BUFFER];
        let mut out = Vec::with_capacity(1232);
        let mut cache = AnswerCache::default();
        while !stop.load(Ordering::Relaxed) {
            let (len, src) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems.
                    debug!(error = %e, "udp receive failed");
                    continue;
                }
            };
            out.clear();
            if self.answer_udp_cached(&buf[..len], src, &mut out, &mut cache) {
                if let Err(e) = sock.send_to(&out, src) {
                    debug!(%src, error = %e, "udp send failed");
                }
            }
        }
    }

    /// Linux: the same loop with `recvmmsg`/`sendmmsg`, up to [`UDP_BATCH`] datagrams per
    /// system call. Under load the socket queue holds several queries whenever a thread
    /// wakes up, so this saves most of the per-packet syscalls and wake-ups (gdnsd does
    /// the same). `MSG_WAITFORONE`: block for the first datagram only.
    #[cfg(target_os = "linux")]
    fn udp_loop_batched(&self, sock: std::net::UdpSocket, stop: &AtomicBool) {
        use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
        use std::io::{IoSlice, IoSliceMut};
        use std::os::fd::AsRawFd;

        let fd = sock.as_raw_fd();
        let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; UDP_RECV_BUFFER]; UDP_BATCH];
        let mut outs: Vec<Vec<u8>> = (0..UDP_BATCH).map(|_| Vec::with_capacity(1232)).collect();
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
        let mut got: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(UDP_BATCH);
        let mut cache = AnswerCache::default();
        while !stop.load(Ordering::Relaxed) {
            got.clear();
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => {
                        for r in results {
                            if let Some(a) = r.address {
                                got.push((r.bytes, a));
                            }
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        debug!(error = %e, "udp receive failed");
                        continue;
                    }
                }
            }
            let mut replies: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(got.len());
            for (i, (len, addr)) in got.iter().enumerate() {
                let src = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
                    (Some(v4), _) => SocketAddr::V4((*v4).into()),
                    (_, Some(v6)) => SocketAddr::V6((*v6).into()),
                    _ => continue,
                };
                let len = (*len).min(UDP_RECV_BUFFER);
                let out = &mut outs[i];
                out.clear();
                if self.answer_udp_cached(&bufs[i][..len], src, out, &mut cache) {
                    replies.push((i, Some(*addr)));
                }
            }
            if replies.is_empty() {
                continue;
            }
            let slices: Vec<[IoSlice<'_>; 1]> = replies
                .iter()
                .map(|(i, _)| [IoSlice::new(&outs[*i])])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> = replies.iter().map(|(_, a)| *a).collect();
            if let Err(e) = sendmmsg(
                fd,
                &mut send_headers,
                slices.iter(),
                &addrs,
                [],
                MsgFlags::empty(),
            ) {
                debug!(error = %e, len = addrs.len(), "udp send failed");
            }
        }
    }

    /// [`GeoDns::answer_udp`] through a per-thread answer cache.
    ///
    /// The key is the whole query after its ID (question as sent, flags, EDNS options
    /// including ECS) plus the client address, so a hit is byte-for-byte the answer the
    /// full path would give; entries carry the snapshot and health epoch they were made
    /// under and are dropped when either changes. Per thread, so no locks. Resolvers
    /// repeat the same popular names from the same addresses, which is where this pays;
    /// PowerDNS has the same idea as its packet cache.
    fn answer_udp_cached(
        &self,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
        cache: &mut AnswerCache,
    ) -> bool {
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            return self.answer_udp(packet, src, out);
        }
        let started = Instant::now();
        let snap = self.shared.current.load();
        let stamp = (Arc::as_ptr(&*snap) as usize, snap.health.epoch());
        if cache.stamp != stamp {
            cache.entries.clear();
            cache.stamp = stamp;
        }
        cache.key.clear();
        cache.key.extend_from_slice(&packet[2..]);
        match src.ip() {
            IpAddr::V4(a) => cache.key.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => cache.key.extend_from_slice(&a.octets()),
        }
        if let Some(hit) = cache.entries.get(cache.key.as_slice()) {
            out.clear();
            out.extend_from_slice(&packet[..2]);
            out.extend_from_slice(&hit.answer);
            match hit.geo {
                Some(PopChoice::One(i)) => {
                    snap.pop_counters[i].inc();
                }
                Some(PopChoice::All) => {
                    snap.all_counter.inc();
                }
                None => {}
            }
            self.shared
                .metrics
                .query(hit.qtype, hit.rcode, hit.ecs, started.elapsed());
            return true;
        }
        drop(snap);
        let mut info = None;
        let answered = self.answer_udp_inner(packet, src, out, &mut info);
        if let Some((qtype, rcode, ecs, geo)) = info {
            if out.len() >= 2 {
                if cache.entries.len() >= ANSWER_CACHE_ENTRIES {
                    cache.entries.clear();
                }
                let key = cache.key.clone().into_boxed_slice();
                cache.entries.insert(
                    key,
                    CachedAnswer {
                        answer: out[2..].into(),
                        qtype,
                        rcode,
                        ecs,
                        geo,
                    },
                );
            }
        }
        answered
    }

    /// Answers one UDP datagram into `out`; `false` means send nothing (not a query).
    pub fn answer_udp(&self, packet: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        self.answer_udp_inner(packet, src, out, &mut None)
    }

    /// `info` receives what a cached copy of this answer needs for metrics.
    fn answer_udp_inner(
        &self,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
        info: &mut Option<AnswerInfo>,
    ) -> bool {
        let started = Instant::now();
        // Fewer than 12 bytes: not even a header to answer to (RFC 1035 §4.1.1).
        let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
            debug!(%src, len = packet.len(), "dropped datagram shorter than a DNS header");
            return false;
        };
        if header.metadata.message_type == MessageType::Response {
            // Never answer a response: that is how reflection loops start.
            return false;
        }
        let request = match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
            Ok(r) => r,
            Err(e) => {
                debug!(%src, error = %e, "malformed query: FORMERR");
                write_error(out, &header.metadata, ResponseCode::FormErr);
                self.shared
                    .metrics
                    .query(None, ResponseCode::FormErr, false, started.elapsed());
                return true;
            }
        };
        let snap = self.shared.current.load();
        let p = prepare(&snap, &request, src.ip());
        let limit = match &request.edns {
            Some(e) => e.max_payload().clamp(512, snap.config.max_udp_payload),
            None => 512,
        } as usize;
        let (qtype, rcode, ecs, geo) = (p.qtype, p.metadata.response_code, p.ecs, p.geo);
        encode(&request.queries, p, out, limit);
        self.shared
            .metrics
            .query(qtype, rcode, ecs, started.elapsed());
        *info = Some((qtype, rcode, ecs, geo));
        true
    }
}

/// Entries per UDP thread; the cache is emptied when full (cheap, and a hot set refills
/// it within a few hundred queries).
const ANSWER_CACHE_ENTRIES: usize = 8192;

type AnswerInfo = (Option<RecordType>, ResponseCode, bool, Option<PopChoice>);

struct CachedAnswer {
    /// The encoded answer without its 2-byte ID.
    answer: Box<[u8]>,
    qtype: Option<RecordType>,
    rcode: ResponseCode,
    ecs: bool,
    geo: Option<PopChoice>,
}

#[derive(Default)]
struct AnswerCache {
    /// (snapshot address, health epoch) the entries were answered under.
    stamp: (usize, u64),
    entries: HashMap<Box<[u8]>, CachedAnswer>,
    /// Reused key buffer.
    key: Vec<u8>,
}

fn default_udp_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Binds `count` UDP sockets (0 = one per core) to `addr` with `SO_REUSEPORT`, for
/// [`GeoDns::serve_sockets`]. This is how gdnsd and Knot spread UDP over cores.
pub fn bind_udp_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<tokio::net::UdpSocket>> {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    let count = if count == 0 {
        default_udp_threads()
    } else {
        count
    };
    let mut out = Vec::new();
    for _ in 0..count {
        let s = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM,
            Some(SockProtocol::UDP),
        )?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        out.push(tokio::net::UdpSocket::from_std(s.into())?);
        if !cfg!(unix) {
            break;
        }
    }
    Ok(out)
}

fn http_content_type() -> axum::http::HeaderName {
    axum::http::header::CONTENT_TYPE
}

/// A header-only error answer (FORMERR to an unparsable query): id and opcode echoed,
/// no sections, since the question itself could not be read.
fn write_error(out: &mut Vec<u8>, query: &Metadata, rcode: ResponseCode) {
    let mut meta = Metadata::response_from_request(query);
    meta.response_code = rcode;
    let header = Header {
        metadata: meta,
        counts: Default::default(),
    };
    let mut enc = BinEncoder::new(out);
    if header.emit(&mut enc).is_err() {
        out.clear();
    }
}

/// An answer ready to encode: borrowed from the snapshot.
pub struct Prepared<'a> {
    pub metadata: Metadata,
    pub answers: Vec<&'a Record>,
    pub soa: Option<&'a Record>,
    pub edns: Option<Edns>,
    /// For metrics.
    pub qtype: Option<RecordType>,
    pub ecs: bool,
    /// The PoP choice, when a geo-routed name was answered.
    pub geo: Option<PopChoice>,
}

/// Validates a Client Subnet option (RFC 7871 §6, §7.1.1).
fn valid_ecs(cs: &ClientSubnet) -> bool {
    let (max, bits) = match cs.addr() {
        IpAddr::V4(a) => (32, u128::from(u32::from(a)) << 96),
        IpAddr::V6(a) => (128, u128::from(a)),
    };
    let source = cs.source_prefix();
    if source > max || cs.scope_prefix() != 0 {
        return false;
    }
    // "ADDRESS ... MUST be ... truncated to the number of bits indicated by the SOURCE
    // PREFIX-LENGTH field, ... [else] the server MUST return FORMERR": the decoder reads
    // whole octets, so stray bits can only sit in the last octet's tail.
    let mask = if source == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(source))
    };
    bits & !mask == 0
}

/// Builds the answer to `request` from `snap` (shared by UDP and TCP).
pub fn prepare<'a>(snap: &'a Snapshot, request: &MessageRequest, src: IpAddr) -> Prepared<'a> {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = false;
    let mut p = Prepared {
        metadata: meta,
        answers: Vec::new(),
        soa: None,
        edns: None,
        qtype: request.queries.queries().first().map(|q| q.query_type()),
        ecs: false,
        geo: None,
    };
    let mut subnet: Option<ClientSubnet> = None;
    if let Some(req_edns) = &request.edns {
        let mut e = Edns::new();
        e.set_max_payload(snap.config.max_udp_payload)
            .set_version(0);
        p.edns = Some(e);
        // RFC 6891 §6.1.3: a version we do not implement gets BADVERS.
        if req_edns.version() > 0 {
            p.metadata.response_code = ResponseCode::BADVERS;
            return p;
        }
        if let Some(EdnsOption::Subnet(cs)) = req_edns.option(EdnsCode::Subnet) {
            p.ecs = true;
            if !valid_ecs(cs) {
                p.metadata.response_code = ResponseCode::FormErr;
                return p;
            }
            subnet = Some(*cs);
        }
    }
    if request.metadata.op_code != OpCode::Query {
        p.metadata.response_code = ResponseCode::NotImp;
        return p;
    }
    let [query] = request.queries.queries() else {
        // RFC 9619: exactly one question.
        p.metadata.response_code = ResponseCode::FormErr;
        return p;
    };
    if query.query_class() != DNSClass::IN {
        p.metadata.response_code = ResponseCode::Refused;
        return p;
    }
    let qtype = query.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // No zone transfers: the zones come from config files, not secondaries.
        p.metadata.response_code = ResponseCode::Refused;
        return p;
    }

    // RFC 7871 §7.1.2: a SOURCE PREFIX-LENGTH of 0 means "do not use my subnet": fall
    // back to the packet's source address.
    let client = match &subnet {
        Some(cs) if cs.source_prefix() > 0 => cs.addr(),
        _ => src,
    };
    let client = canonical(client);
    let mut decision: Option<Decision> = None;
    let res = snap.zones.resolve(query.name(), qtype, &mut || {
        let d = snap.locator.decide(client, &snap.health, false);
        let choice = match d.pop {
            Some(i) => {
                snap.pop_counters[i].inc();
                PopChoice::One(i)
            }
            None => {
                snap.all_counter.inc();
                PopChoice::All
            }
        };
        decision = Some(d);
        choice
    });
    p.metadata.authoritative = res.authoritative;
    p.metadata.response_code = res.rcode;
    p.answers = res.answers;
    p.soa = res.soa;
    p.geo = res.geo;
    if let (Some(mut cs), Some(e)) = (subnet, p.edns.as_mut()) {
        // §7.2.1: echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS; SCOPE says for how wide a
        // network this answer holds. Answers that do not depend on location get /0.
        let scope = match (&decision, res.geo) {
            (Some(d), Some(_)) => d.scope,
            _ => 0,
        };
        cs.set_scope_prefix(scope);
        e.options_mut().insert(EdnsOption::Subnet(cs));
    }
    p
}

/// `::ffff:a.b.c.d` (a dual-stack socket's view of an IPv4 client) → `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Encodes `p` into `out`. If the answer does not fit `limit` bytes it is replaced by an
/// empty one with TC set (RFC 2181 §9: the client retries over TCP and gets it whole),
/// keeping the question and the OPT record so EDNS and ECS are still echoed.
fn encode(queries: &Queries, p: Prepared<'_>, out: &mut Vec<u8>, limit: usize) {
    let Prepared {
        metadata,
        answers,
        soa,
        edns,
        ..
    } = p;
    {
        let response = MessageResponseBuilder::new(queries, edns.as_ref()).build(
            metadata,
            answers.iter().copied(),
            std::iter::empty(),
            soa,
            std::iter::empty(),
        );
        let mut enc = BinEncoder::new(out);
        if let Err(e) = response.destructive_emit(&mut enc) {
            error!(error = %e, "cannot encode answer");
            out.clear();
        }
    }
    if out.len() <= limit && !out.is_empty() {
        return;
    }
    out.clear();
    let mut meta = metadata;
    if meta.response_code == ResponseCode::NoError || meta.response_code == ResponseCode::NXDomain {
        meta.truncation = true;
    } else {
        meta.response_code = ResponseCode::ServFail;
    }
    let response = MessageResponseBuilder::new(queries, edns.as_ref()).build_no_records(meta);
    let mut enc = BinEncoder::new(out);
    if response.destructive_emit(&mut enc).is_err() {
        out.clear();
    }
}

/// The TCP side: hickory-server calls this per framed message.
struct TcpHandler(GeoDns);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let snap = self.0.snapshot();
        let p = prepare(&snap, request, request.src().ip());
        let (qtype, rcode, ecs) = (p.qtype, p.metadata.response_code, p.ecs);
        let metadata = p.metadata;
        let response = MessageResponseBuilder::new(&request.queries, p.edns.as_ref()).build(
            metadata,
            p.answers.iter().copied(),
            std::iter::empty(),
            p.soa,
            std::iter::empty(),
        );
        let result = response_handle.send_response(response).await;
        self.0
            .shared
            .metrics
            .query(qtype, rcode, ecs, started.elapsed());
        match result {
            Ok(info) => info,
            Err(e) => {
                warn!(src = %request.src(), error = %e, "cannot send TCP answer");
                let mut meta = metadata;
                meta.response_code = ResponseCode::ServFail;
                Header {
                    metadata: meta,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_validation_follows_rfc7871() {
        let ok = ClientSubnet::new("81.2.69.0".parse().unwrap(), 24, 0);
        assert!(valid_ecs(&ok));
        let stray = ClientSubnet::new("81.2.69.1".parse().unwrap(), 24, 0);
        assert!(!valid_ecs(&stray));
        let scoped = ClientSubnet::new("81.2.69.0".parse().unwrap(), 24, 8);
        assert!(!valid_ecs(&scoped));
        let v6 = ClientSubnet::new("2001:db8::".parse().unwrap(), 56, 0);
        assert!(valid_ecs(&v6));
        let zero = ClientSubnet::new("0.0.0.0".parse().unwrap(), 0, 0);
        assert!(valid_ecs(&zero));
    }
}
