//! dashcdn test kit: what every test of the workspace needs, once.
//!
//! In the manner of linkerd2-proxy's integration kit: each server starts in-process on
//! `127.0.0.1:0` and comes back as a [`Server`] handle that knows its address; dropping the
//! handle stops the server, and [`Server::join`] stops it and re-raises whatever it failed
//! or panicked with.
//!
//! ```no_run
//! # async fn t(library: &std::path::Path) {
//! use dashcdn_testkit::{spawn_edge, spawn_origin};
//! let origin = spawn_origin(library).await;
//! let edge = spawn_edge().upstream(origin.addr).pop("eu-west").await;
//! let body = edge.get("/vod/clip/manifest.mpd").await.text().await.unwrap();
//! # let _ = body;
//! edge.join().await;
//! origin.join().await;
//! # }
//! ```
//!
//! - [`spawn_origin`] / [`origin`], [`spawn_edge`], [`spawn_geodns`]: servers with typed
//!   config builders (no string replacement in example files).
//! - [`Clip`]: source media from ffmpeg's `testsrc2` + `sine`.
//! - [`packaged`]: a packaged library built once and shared by every test binary (cached
//!   under the target folder, keyed by what it was made from, the packager's source included).
//! - [`eventually`]: wait for a condition instead of sleeping a fixed time.
//! - [`client`]: an HTTP client that never uses a proxy from the environment.
#![warn(unreachable_pub)]

mod fixture;
mod server;

pub use dashcdn_origin::Clip;
pub use fixture::{packaged, Packaged, Spec};
pub use server::{
    origin, spawn_edge, spawn_geodns, spawn_origin, EdgeBuilder, OriginBuilder, Server,
};

use std::future::Future;
use std::time::Duration;

/// reqwest without any proxy from the environment: tests talk to loopback only.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("a reqwest client")
}

/// Polls `check` every 20 ms until it returns `true`; panics naming `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: still not true after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `url` answers 200 (a live channel's MPD once its encoder has produced a
/// segment, a server behind a proxy once it is up); panics naming `url` after `within`.
pub async fn answers_ok(url: &str, within: Duration) {
    let client = client();
    eventually(&format!("GET {url} answering 200"), within, || async {
        client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}
