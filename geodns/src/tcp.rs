//! Stream serving: DNS over TCP (RFC 7766) and, on the same loop, over TLS (RFC 7858).
//!
//! Each message is a 2-byte length and the message; queries on one connection are
//! answered in order. A connection is closed when it sits idle for [`IDLE_TIMEOUT`]
//! (RFC 7766 §6.2.3 suggests seconds, not minutes, for a busy server), when a message
//! cannot be read (after its FORMERR: the framing is no longer trusted, and gdnsd and
//! Knot do the same), or when it sends something that is not a query. Beyond
//! [`MAX_CONNECTIONS`] a new connection is closed at once, so a flood of idle connections
//! cannot take the memory or the file descriptors of the UDP path.
//!
//! Our own loop rather than hickory-server's `Server`: that one logs two INFO lines per
//! TCP query (a client could grow the logs at will) and keeps a connection open after a
//! malformed message until its idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::debug;

use crate::answer::Reply;
use crate::cache::answer_stream;
use crate::state::State;

/// How long a connection may wait for its next query, or take to send one.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections per listener.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// Accepts on `listener` until `stop` turns true; `wrap` turns a TCP stream into the
/// transport (identity for TCP, a TLS handshake for DoT).
pub(crate) async fn serve<S, F, Fut>(
    state: Arc<State>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    wrap: F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<S>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        while conns.try_join_next().is_some() {}
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached: closed");
            continue;
        };
        let _ = sock.set_nodelay(true);
        let state = state.clone();
        let io = wrap(sock);
        conns.spawn(async move {
            let _permit = permit;
            if let Ok(Some(io)) = timeout(IDLE_TIMEOUT, io).await {
                serve_stream(&state, io, peer).await;
            }
        });
    }
    conns.abort_all();
}

/// Answers the queries of one connection in order until it closes or misbehaves.
pub(crate) async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    state: &State,
    mut io: S,
    peer: SocketAddr,
) {
    let mut msg = Vec::new();
    let mut out = Vec::with_capacity(512);
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            timeout(IDLE_TIMEOUT, io.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            break;
        }
        msg.resize(usize::from(u16::from_be_bytes(len)), 0);
        if !matches!(
            timeout(IDLE_TIMEOUT, io.read_exact(&mut msg)).await,
            Ok(Ok(_))
        ) {
            break;
        }
        out.clear();
        out.extend_from_slice(&[0, 0]);
        let mut body = Vec::new();
        let reply = answer_stream(state, &msg, peer, &mut body);
        if reply == Reply::Nothing {
            debug!(%peer, "not a query: connection closed");
            break;
        }
        let n = u16::try_from(body.len()).unwrap_or(u16::MAX);
        out[..2].copy_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&body[..usize::from(n)]);
        let sent = timeout(IDLE_TIMEOUT, async {
            io.write_all(&out).await?;
            io.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) || reply == Reply::Malformed {
            break;
        }
    }
    let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
}
