//! UDP serving: blocking threads that each receive, answer inline and send.
//!
//! Answering is pure CPU work on in-memory tables, so there is nothing to await between
//! receive and send; hickory's UDP loop spawns a task per packet and funnels every answer
//! through one channel and one sender task, which on two cores cost more than the lookup.
//! Each thread has its own `SO_REUSEPORT` socket when the CLI binds ([`bind_reuseport`],
//! the gdnsd/Knot layout) and its own answer cache ([`AnswerCache`]); on Linux it moves up
//! to 64 datagrams per `recvmmsg`/`sendmmsg` (nix's safe wrappers; with one thread on a
//! busy socket, `perf stat` counted 31 datagrams per call at a cap of 32).
//!
//! Tried and not kept: threads pinned to their CPU with a reuseport BPF program handing
//! each datagram to the socket of the CPU it arrived on. It cut CPU per answer by a
//! quarter on the loopback bench but also qps by ~14%: the packets of a load generator on
//! one CPU all went to the one thread pinned beside it (docs/benchmarks.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::answer::{Reply, Transport};
use crate::cache::{answer_cached, AnswerCache};
use crate::rrl::{truncate, Verdict};
use crate::state::State;

/// How often a blocked UDP thread wakes up to notice a shutdown.
const UDP_POLL: Duration = Duration::from_millis(100);
/// Largest datagram we read; longer ones are cut by the kernel and answered FORMERR.
const UDP_RECV_BUFFER: usize = 4096;
/// Datagrams read (and answers sent) per system call on Linux.
#[cfg(target_os = "linux")]
const UDP_BATCH: usize = 64;

/// Starts `threads` threads answering on `socks` (round-robin) until `stop` is set.
pub(crate) fn spawn(
    state: &Arc<State>,
    socks: Vec<tokio::net::UdpSocket>,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut std_socks = Vec::new();
    for udp in socks {
        let udp = udp.into_std()?;
        udp.set_nonblocking(false)?;
        udp.set_read_timeout(Some(UDP_POLL))?;
        std_socks.push(udp);
    }
    let mut handles = Vec::new();
    for n in 0..threads {
        let sock = std_socks[n % std_socks.len()].try_clone()?;
        let (state, stop) = (state.clone(), stop.clone());
        let h = std::thread::Builder::new()
            .name(format!("geodns-udp-{n}"))
            .spawn(move || {
                #[cfg(target_os = "linux")]
                udp_loop_batched(&state, sock, &stop);
                #[cfg(not(target_os = "linux"))]
                udp_loop(&state, sock, &stop);
            })?;
        handles.push(h);
    }
    Ok(handles)
}

/// The portable loop: one `recv_from`/`send_to` per datagram.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn udp_loop(state: &State, sock: std::net::UdpSocket, stop: &AtomicBool) {
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
        if respond(state, &buf[..len], src, &mut out, &mut cache) {
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
fn udp_loop_batched(state: &State, sock: std::net::UdpSocket, stop: &AtomicBool) {
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
            if respond(state, &bufs[i][..len], src, out, &mut cache) {
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

/// Answers one datagram (through the cache), then lets rate limiting decide whether the
/// answer goes out whole, truncated or not at all. `false`: send nothing.
fn respond(
    state: &State,
    packet: &[u8],
    src: SocketAddr,
    out: &mut Vec<u8>,
    cache: &mut AnswerCache,
) -> bool {
    if answer_cached(state, packet, src, Transport::Udp, out, cache) == Reply::Nothing {
        return false;
    }
    let snap = state.current.load();
    let Some(rrl) = &snap.rrl else {
        return true;
    };
    if rrl.exempt(src.ip()) {
        return true;
    }
    match rrl.check(src.ip(), out, Instant::now()) {
        Verdict::Send => true,
        Verdict::Slip => {
            state.metrics.rrl[1].inc();
            truncate(out);
            true
        }
        Verdict::Drop => {
            state.metrics.rrl[0].inc();
            false
        }
    }
}

pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Binds `count` UDP sockets (0 = one per core) to `addr` with `SO_REUSEPORT`, for
/// `GeoDns::serve_sockets`. This is how gdnsd and Knot spread UDP over cores.
pub(crate) fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<tokio::net::UdpSocket>> {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    let count = if count == 0 { default_threads() } else { count };
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
