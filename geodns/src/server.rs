//! A geo DNS instance: lifecycle (serve, shut down), reload, health probers, `/metrics`.
//!
//! Serving is split by transport: [`crate::udp`] (blocking threads, answer cache) and
//! [`crate::tcp`] (hickory's `Server`); both answer through [`crate::answer`] from the
//! [`Snapshot`] current when the query arrived.
//!
//! Reload: the answer tables, the MaxMind reader and the health table of one config
//! generation form a [`Snapshot`]; a reload builds the new one beside the old one (on a
//! blocking thread: it reads the MaxMind file) and swaps the pointer. A config or
//! database that fails to build is refused and the old snapshot keeps serving.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dashcdn_http::serve::{serve_listeners, Listener, Slots};
use dashcdn_http::tls::{Limits, TlsServer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::info;

use crate::config::GeodnsConfig;
use crate::error::GeodnsError;
use crate::explain::Explanation;
use crate::health::spawn_probers;
use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::state::{Snapshot, State};
use crate::tcp;
use crate::udp;
use crate::{doh, dot};

struct Shared {
    /// What the UDP threads and the TCP handler answer from.
    state: Arc<State>,
    /// The probe tasks of the current snapshot, while serving.
    probers: Mutex<Option<JoinSet<()>>>,
    /// Set while `serve` runs: reloads restart probers only then.
    serving: AtomicBool,
    /// DNS-01 TXT values edges published (`--acme-token`), and the config as the operator
    /// wrote it, which they are laid over (see [`crate::acme`]).
    acme: Option<dashcdn_http::acme::TxtBoard>,
    base: Mutex<Option<GeodnsConfig>>,
}

/// A geo DNS instance: cheap to clone, every clone is the same server.
#[derive(Clone)]
pub struct GeoDns {
    shared: Arc<Shared>,
}

impl GeoDns {
    /// Builds the answer tables and opens the MaxMind database; nothing runs yet.
    pub fn new(config: GeodnsConfig) -> Result<GeoDns, GeodnsError> {
        Self::with_acme(config, None)
    }

    /// Like [`GeoDns::new`], also serving `_acme-challenge` TXT values edges publish on
    /// the metrics listener with `board`'s token (docs/tls.md).
    pub fn with_acme(
        config: GeodnsConfig,
        board: Option<dashcdn_http::acme::TxtBoard>,
    ) -> Result<GeoDns, GeodnsError> {
        let base = board.as_ref().map(|_| config.clone());
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(config, &metrics, None)?;
        Ok(GeoDns {
            shared: Arc::new(Shared {
                state: Arc::new(State {
                    current: ArcSwap::from_pointee(snapshot),
                    metrics,
                }),
                probers: Mutex::new(None),
                serving: AtomicBool::new(false),
                acme: board,
                base: Mutex::new(base),
            }),
        })
    }

    /// Re-apply the operator's config with the current TXT board (after a change to it).
    async fn republish(&self) -> Result<(), GeodnsError> {
        let base = self
            .shared
            .base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match base {
            Some(config) => self.reload(config).await,
            None => Ok(()),
        }
    }

    /// Replaces config and database (the SIGHUP path). On error the old snapshot keeps
    /// serving and the error says why. The database is read on a blocking thread; health
    /// probes are restarted for the new PoPs while serving.
    pub async fn reload(&self, config: GeodnsConfig) -> Result<(), GeodnsError> {
        let config = match &self.shared.acme {
            Some(board) => {
                *self.shared.base.lock().unwrap_or_else(|e| e.into_inner()) = Some(config.clone());
                crate::acme::overlay(&config, board)
            }
            None => config,
        };
        let state = self.shared.state.clone();
        let built = tokio::task::spawn_blocking(move || {
            let old = state.current.load_full();
            Snapshot::build(config, &state.metrics, Some(&old))
        })
        .await
        .map_err(|e| GeodnsError::Server(format!("reload task failed ({e})")))?;
        match built {
            Ok(new) => {
                let new = Arc::new(new);
                self.shared.state.current.store(new.clone());
                if self.shared.serving.load(Ordering::SeqCst) {
                    self.start_probers(&new);
                }
                self.shared.state.metrics.reload(true);
                info!(
                    zones = new.config.zones.len(),
                    pops = new.config.pops.len(),
                    maxmind = ?new.config.maxmind,
                    "reloaded config"
                );
                Ok(())
            }
            Err(e) => {
                self.shared.state.metrics.reload(false);
                Err(e)
            }
        }
    }

    /// The snapshot answering right now.
    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.state.current.load_full()
    }

    /// Where `ip` would be sent right now (live health), and why.
    pub fn explain(&self, ip: IpAddr) -> Explanation {
        let snap = self.snapshot();
        Explanation::new(&snap.locator, &snap.health, ip)
    }

    /// The `/metrics` text, with the `pop_up` gauges refreshed from the health table.
    pub fn metrics_text(&self) -> String {
        let snap = self.shared.state.current.load();
        for (i, p) in snap.config.pops.iter().enumerate() {
            self.shared
                .state
                .metrics
                .pop_up_gauge(&p.name)
                .set(i64::from(snap.health.is_up(i)));
        }
        self.shared.state.metrics.encode()
    }

    /// `GET /metrics` as an axum router.
    pub fn metrics_router(&self) -> axum::Router {
        let me = self.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let me = me.clone();
                async move { ([(http_content_type(), CONTENT_TYPE)], me.metrics_text()) }
            }),
        );
        if self.shared.acme.is_none() {
            return router;
        }
        let me = self.clone();
        router.route(
            "/_geodns/acme/{*name}",
            axum::routing::any(
                move |method: axum::http::Method,
                      axum::extract::Path(name): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| {
                    let me = me.clone();
                    async move { me.acme_change(method, name, headers, body).await }
                },
            ),
        )
    }

    /// `PUT`/`DELETE /_geodns/acme/{name}` (see [`crate::acme`]).
    async fn acme_change(
        &self,
        method: axum::http::Method,
        name: String,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, &'static str) {
        let Some(board) = &self.shared.acme else {
            return (axum::http::StatusCode::NOT_FOUND, "");
        };
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let (status, text) = board.handle(&method, &name, auth, &body);
        if status.is_success() {
            if let Err(e) = self.republish().await {
                tracing::error!(error = %e, "acme: TXT change not applied");
                return (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "not applied\n",
                );
            }
            info!(%name, %method, "acme: TXT record changed");
        }
        (status, text)
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
    /// `udp::bind_reuseport` for one socket per thread.
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
            (1, 0) => udp::default_threads(),
            (1, n) => n,
            (n, _) => n,
        };
        self.shared.serving.store(true, Ordering::SeqCst);
        self.start_probers(&self.snapshot());
        let stop = Arc::new(AtomicBool::new(false));
        let handles = udp::spawn(&self.shared.state, udps, threads, &stop)
            .map_err(GeodnsError::io("udp threads"))?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let tcp_task = tokio::spawn(tcp::serve(
            self.shared.state.clone(),
            tcp,
            stop_rx,
            |s| async move { Some(s) },
        ));

        shutdown.await;
        info!("geodns shutting down");
        stop.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        self.shared.serving.store(false, Ordering::SeqCst);
        self.stop_probers();
        let tcp_result = tcp_task.await;
        // The UDP threads notice `stop` within their poll interval.
        tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await
        .ok();
        tcp_result.map_err(|e| GeodnsError::Server(format!("tcp task failed ({e})")))
    }

    /// Answers DNS over TLS (RFC 7858) on `listener` until `shutdown`.
    pub async fn serve_dot(
        &self,
        listener: TcpListener,
        tls: Arc<TlsServer>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GeodnsError> {
        let addr = listener
            .local_addr()
            .map_err(GeodnsError::io("dot listener"))?;
        info!(%addr, "listening on {addr} (dot)");
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        dot::serve(self.shared.state.clone(), listener, &tls, rx).await;
        Ok(())
    }

    /// Answers DNS over HTTPS (RFC 8484, `/dns-query`, HTTP/2 and HTTP/1.1) on `listener`
    /// until `shutdown`.
    ///
    /// Served by [`doh::threads`] threads of their own, each a single-threaded runtime
    /// accepting on the same listening socket: a connection's HTTP/2 task and the
    /// per-request tasks hyper spawns for it then stay on one thread (no cross-thread
    /// wake-ups), and the requests that arrive together are answered before the
    /// connection writes, so one TLS write carries many answers (see [`crate::doh`]).
    /// The connection caps of `Limits` hold for the socket: the threads count connections
    /// in one shared [`Slots`].
    pub async fn serve_doh(
        &self,
        listener: TcpListener,
        tls: Arc<TlsServer>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GeodnsError> {
        let addr = listener
            .local_addr()
            .map_err(GeodnsError::io("doh listener"))?;
        let threads = doh::threads();
        info!(%addr, threads, "listening on {addr} (doh)");
        let listener = listener
            .into_std()
            .map_err(GeodnsError::io("doh listener"))?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        // One count of connections for the socket, whichever thread accepts them.
        let limits = Limits::default();
        let slots = Arc::new(Slots::default());
        let mut handles = Vec::new();
        for n in 0..threads {
            let listener = listener
                .try_clone()
                .map_err(GeodnsError::io("doh listener"))?;
            let (state, tls, mut rx, limits, slots) = (
                self.shared.state.clone(),
                tls.clone(),
                rx.clone(),
                limits.clone(),
                slots.clone(),
            );
            let serve = move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let listener = Listener::tls(listener, tls.server_config()).share_slots(slots);
                    serve_listeners(
                        vec![listener],
                        limits,
                        Arc::new(()),
                        move |peer| doh::service(state.clone(), peer),
                        async move {
                            let _ = rx.wait_for(|s| *s).await;
                        },
                    )
                    .await;
                    Ok(())
                })
            };
            let h = std::thread::Builder::new()
                .name(format!("geodns-doh-{n}"))
                .spawn(serve)
                .map_err(GeodnsError::io("doh threads"))?;
            handles.push(h);
        }
        tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for h in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(_) => result = Err(std::io::Error::other("a DoH thread panicked")),
                }
            }
            result
        })
        .await
        .map_err(|e| GeodnsError::Server(format!("doh threads failed ({e})")))?
        .map_err(GeodnsError::io("doh server"))
    }
}

fn http_content_type() -> axum::http::HeaderName {
    axum::http::header::CONTENT_TYPE
}
