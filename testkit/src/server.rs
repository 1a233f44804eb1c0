//! Servers on `127.0.0.1:0` in the caller's tokio runtime, and the handle that stops them.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;

use dashcdn_edge::{EdgeConfig, UpstreamConfig};
use dashcdn_geodns::{GeoDns, GeodnsConfig};
use dashcdn_origin::ServeConfig;
use futures_util::FutureExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server. Dropping it stops the server (and re-raises a failure that already
/// happened); [`Server::join`] stops it and waits, re-raising whatever it failed with.
pub struct Server {
    /// Where it listens (for geodns: UDP and TCP on this same address).
    pub addr: SocketAddr,
    /// Which server, for failure messages.
    name: String,
    /// Where its Prometheus text is (`/metrics` or `/_edge/metrics`), if it serves HTTP.
    metrics_path: Option<&'static str>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

async fn shutdown_on(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

impl Server {
    fn spawn<F>(
        name: String,
        addr: SocketAddr,
        metrics_path: Option<&'static str>,
        run: F,
    ) -> Server
    where
        F: FnOnce(
            oneshot::Receiver<()>,
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
    {
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(run(rx));
        Server {
            addr,
            name,
            metrics_path,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GETs `path`; panics if the request cannot be sent (any status is returned).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = self.url(path);
        crate::client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// The sum of every sample of the Prometheus family whose lines start with `prefix`
    /// (e.g. `dashcdn_origin_http_requests_total{route="segment"`), from the server's metrics.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let path = self
            .metrics_path
            .unwrap_or_else(|| panic!("{} serves no HTTP metrics", self.name));
        let text = self.get(path).await.text().await.expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops the server, waits for it, and panics with its error or its panic if it had one.
    pub async fn join(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("joined once");
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{} failed: {e}", self.name),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{} task: {e}", self.name),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A server that already ended is looked at now; one still draining finishes in the
        // background. Never a second panic while the test is already unwinding.
        let Some(task) = self.task.take() else { return };
        if std::thread::panicking() || !task.is_finished() {
            return;
        }
        match task.now_or_never() {
            Some(Ok(Err(e))) => panic!("{} failed: {e}", self.name),
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            _ => {}
        }
    }
}

async fn loopback() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let a = l.local_addr().expect("local addr");
    (l, a)
}

/// The origin serving `library`, with default settings.
pub async fn spawn_origin(library: &Path) -> Server {
    origin(library).await
}

/// An origin to configure before it starts: `origin(lib).config(|c| c.mpd_max_age_secs = 0).await`.
pub fn origin(library: &Path) -> OriginBuilder {
    OriginBuilder {
        config: ServeConfig::new(library),
    }
}

/// See [`origin`].
pub struct OriginBuilder {
    config: ServeConfig,
}

impl OriginBuilder {
    /// Changes any field of the typed config.
    pub fn config(mut self, f: impl FnOnce(&mut ServeConfig)) -> Self {
        f(&mut self.config);
        self
    }
}

impl IntoFuture for OriginBuilder {
    type Output = Server;
    type IntoFuture = Pin<Box<dyn Future<Output = Server> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (listener, addr) = loopback().await;
            let mut config = self.config;
            config.listen = addr;
            Server::spawn("origin".into(), addr, Some("/metrics"), move |rx| {
                Box::pin(async move {
                    dashcdn_origin::run(listener, config, shutdown_on(rx))
                        .await
                        .map_err(|e| dashcdn_config::chain(&e))
                })
            })
        })
    }
}

/// An edge to configure before it starts:
/// `spawn_edge().upstream(origin.addr).pop("eu-west").cache_size("16MiB").await`.
pub fn spawn_edge() -> EdgeBuilder {
    EdgeBuilder {
        config: EdgeConfig {
            pop: "edge".into(),
            access_log: false,
            ..EdgeConfig::default()
        },
    }
}

/// See [`spawn_edge`].
pub struct EdgeBuilder {
    config: EdgeConfig,
}

impl EdgeBuilder {
    /// An origin upstream at `addr` (plain HTTP).
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.config
            .upstreams
            .push(UpstreamConfig::origin(format!("http://{addr}")));
        self
    }

    /// A parent edge (shield) at `addr`.
    pub fn parent(mut self, addr: SocketAddr) -> Self {
        self.config
            .upstreams
            .push(UpstreamConfig::parent(format!("http://{addr}")));
        self
    }

    /// The PoP name (in `Via`, stats and loop detection).
    pub fn pop(mut self, name: &str) -> Self {
        self.config.pop = name.into();
        self
    }

    /// The memory cache budget, e.g. `"16MiB"`.
    pub fn cache_size(mut self, size: &str) -> Self {
        self.config.cache_size = size.parse().expect("a size like 16MiB");
        self
    }

    /// Changes any field of the typed config.
    pub fn config(mut self, f: impl FnOnce(&mut EdgeConfig)) -> Self {
        f(&mut self.config);
        self
    }
}

impl IntoFuture for EdgeBuilder {
    type Output = Server;
    type IntoFuture = Pin<Box<dyn Future<Output = Server> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (listener, addr) = loopback().await;
            let mut config = self.config;
            config.listen = addr;
            let name = format!("edge {}", config.pop);
            Server::spawn(name, addr, Some("/_edge/metrics"), move |rx| {
                Box::pin(async move {
                    dashcdn_edge::run(listener, config, shutdown_on(rx))
                        .await
                        .map_err(|e| dashcdn_config::chain(&e))
                })
            })
        })
    }
}

/// geodns with `config`, on UDP and TCP of one loopback port.
pub async fn spawn_geodns(config: GeodnsConfig) -> Server {
    let dns = GeoDns::new(config)
        .unwrap_or_else(|e| panic!("geodns config: {}", dashcdn_config::chain(&e)));
    // TCP on port 0, then UDP on the same port, retrying if UDP's is taken.
    let (udp, tcp) = loop {
        let (tcp, addr) = loopback().await;
        if let Ok(udp) = UdpSocket::bind(addr).await {
            break (udp, tcp);
        }
    };
    let addr = tcp.local_addr().expect("local addr");
    Server::spawn("geodns".into(), addr, None, move |rx| {
        Box::pin(async move {
            dns.serve(udp, tcp, shutdown_on(rx))
                .await
                .map_err(|e| dashcdn_config::chain(&e))
        })
    })
}
