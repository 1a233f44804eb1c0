//! A bounded experiment for issue 12's "2 MB hits: CPU per request ≤ nginx": one 2 MB
//! body served over HTTP/1.1 keep-alive two ways, to measure what `sendfile` would save.
//!
//! - `hyper ADDR`: the shared accept loop (`dashcdn_http::serve`, as the edge) answering
//!   with the body as one `Bytes` — what a cache hit costs today (hyper `writev`s it,
//!   the kernel copies it from user space into socket buffers).
//! - `sendfile ADDR`: the body in a memfd, answered on a raw socket by a minimal HTTP/1.1
//!   loop: the head with `write`, the body with `sendfile(2)` from the memfd (the page
//!   cache pages go to the socket with no user→kernel copy — what nginx does from its
//!   cache files).
//!
//! `bench/edge-sendfile.sh` runs both pinned to one core with wrk on the other, in
//! alternating slices, and reports CPU-ms per request (docs/edge.md has the figures).
//!
//! `cargo run --release -p dashcdn-edge --example sendfile_2mb -- sendfile 127.0.0.1:8080`

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use nix::sys::memfd::{memfd_create, MFdFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZE: usize = 2_000_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: sendfile_2mb hyper|sendfile ADDR");
    };
    let addr: SocketAddr = addr.parse()?;
    let body = Bytes::from((0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    // One worker, as the edge pinned to one core in bench/edge.sh.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tcp = TcpListener::bind(addr).await?;
        match mode.as_str() {
            "hyper" => {
                hyper_mode(tcp, body).await;
                Ok(())
            }
            "sendfile" => sendfile_mode(tcp, &body).await,
            other => anyhow::bail!("unknown mode {other:?}: hyper or sendfile"),
        }
    })
}

async fn hyper_mode(tcp: TcpListener, body: Bytes) {
    let svc = move |_peer: SocketAddr| {
        let body = body.clone();
        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
            let body = body.clone();
            async move {
                let mut rsp = Response::new(Full::new(body));
                rsp.headers_mut()
                    .insert("content-type", "video/iso.segment".parse().unwrap());
                Ok::<_, Infallible>(rsp)
            }
        })
    };
    dashcdn_http::serve::serve(
        tcp,
        dashcdn_http::serve::Limits::default(),
        Arc::new(()),
        svc,
        std::future::pending(),
    )
    .await;
}

async fn sendfile_mode(tcp: TcpListener, body: &[u8]) -> anyhow::Result<()> {
    let fd = memfd_create("body", MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, body)?;
    let fd = Arc::new(OwnedFd::from(file));
    loop {
        let (stream, _) = tcp.accept().await?;
        stream.set_nodelay(true)?;
        let fd = Arc::clone(&fd);
        tokio::spawn(async move {
            let _ = connection(stream, &fd, SIZE).await;
        });
    }
}

/// HTTP/1.1 keep-alive: read a request head, answer the head, `sendfile` the body.
async fn connection(mut s: TcpStream, fd: &OwnedFd, len: usize) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: video/iso.segment\r\ncontent-length: {len}\r\n\r\n"
    );
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    loop {
        let end = loop {
            if let Some(at) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if have == buf.len() {
                return Ok(());
            }
            let n = s.read(&mut buf[have..]).await?;
            if n == 0 {
                return Ok(());
            }
            have += n;
        };
        buf.copy_within(end..have, 0);
        have -= end;
        s.write_all(head.as_bytes()).await?;
        let mut offset: nix::libc::off_t = 0;
        while (offset as usize) < len {
            s.writable().await?;
            let left = len - offset as usize;
            match s.try_io(Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(s.as_fd(), fd.as_fd(), Some(&mut offset), left)
                    .map_err(io::Error::from)
            }) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}
