//! DNS over TLS (RFC 7858): the TCP loop of [`crate::tcp`] inside a rustls session, with
//! the certificates of dashcdn-http's [`TlsServer`] (reloaded on SIGHUP and file change).

use std::sync::Arc;

use dashcdn_http::tls::TlsServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::state::State;
use crate::tcp;

/// Serves DoT on `listener` until `stop` turns true.
pub(crate) async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    tls: &TlsServer,
    stop: watch::Receiver<bool>,
) {
    // The same certificates (the resolver is shared, so reloads apply), but ALPN "dot"
    // (RFC 7858 §3.2 via RFC 7301): a client offering only "dot" must not be refused.
    let mut config = (*tls.server_config()).clone();
    config.alpn_protocols = vec![b"dot".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tcp::serve(state, listener, stop, move |sock| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(sock).await.ok() }
    })
    .await;
}
