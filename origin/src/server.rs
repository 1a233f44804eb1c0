//! The HTTP origin: MPDs, CMAF segments, the asset listing, health and metrics.
//!
//! Routes (GET and HEAD; OPTIONS answers CORS preflights on any path):
//!
//! | path | response |
//! | --- | --- |
//! | `/vod/{asset}/manifest.mpd` | `application/dash+xml`, `Cache-Control: public, max-age=<mpd_max_age_secs>` |
//! | `/vod/{asset}/{rep}/init.mp4`, `/vod/{asset}/{rep}/{n}.m4s` | `video/mp4` or `audio/mp4`, `public, max-age=<segment_max_age_secs>, immutable` |
//! | `/vod/` | JSON `{"assets": [...], "live": [...]}`: each asset's `asset.json` and its audio/text tracks (from its MPD), and the live channels |
//! | `/healthz` | `ok` |
//! | `/metrics` | OpenMetrics text, see [`crate::metrics`] |
//! | `/`, `/web/…`, `/time` | the dash.js watch page and its timing source, see [`crate::web`] |
//! | `/live/…` | live channels, see [`crate::live`] |
//!
//! Files get a strong `ETag` and `Last-Modified`, conditional requests (RFC 9110 §13,
//! `dashcdn_http::conditional`) and single byte ranges (RFC 9110 §14, `dashcdn_http::range`). Every
//! response carries CORS headers so dash.js on another origin can fetch and time segments.
//!
//! This module is the routing and the handlers that are not files; state and errors are in
//! [`crate::app`], a media file's response is built in [`crate::file`], CORS comes from
//! `dashcdn_http::cors`, connection limits and timeouts from `dashcdn_http::serve`.
//!
//! Performance (this is benchmarked against nginx with wrk):
//! - a media request makes at most one trip to the blocking pool, which resolves the
//!   path, opens the file, evaluates the preconditions and reads the bytes the response
//!   needs: `tokio::fs` would make one trip per step;
//! - small files (MPDs, init segments) are kept in memory for a second, so the hottest
//!   requests skip the pool and the disk entirely;
//! - response bodies up to 8 MB are read in one go (a media segment is a few MB, and a
//!   range reads only its slice); larger ones are streamed.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use dashcdn_http::conditional::Conditions;
use dashcdn_http::{cors, serve};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::util::Either;
use tower::Layer;
use tracing::info;

use crate::app::{AppError, AppState, Observe};
use crate::config::ServeConfig;
use crate::file::Files;
use crate::library::{ListingEntry, MediaPath};
use crate::metrics::{self, Route};
use crate::web;

/// The whole HTTP surface, without a socket: tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/vod", get(listing))
        .route("/vod/", get(listing))
        .route("/", get(web::index))
        .route("/web/{name}", get(web::web_file))
        .route("/time", get(web::time))
        .merge(crate::live::router(state.live().clone()))
        // Media paths are matched by hand, not by route patterns: axum would
        // percent-decode `{asset}` (turning `..%2f` into `../`) before we could refuse it.
        .fallback(media)
        .layer(middleware::from_fn_with_state(state.clone(), around))
        .with_state(state)
}

/// Serves the origin on `listener` until `shutdown` completes, then lets in-flight
/// requests finish. The listener is bound by the caller so tests can use port 0.
///
/// Raises the soft open-file limit to the hard one first; an unset `max_connections`
/// is derived from it (see docs/origin-serving.md).
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let state = AppState::new(&config)?;
    let live = crate::live::Channels::start_in(&config.live, Some(state.library().root()))
        .await
        .map_err(io::Error::other)?
        .with_admin_token(config.admin_token.clone());
    let mut state = state.with_live(live.clone());
    let logging = config.access_log_file.is_some();
    if let Some(path) = &config.access_log_file {
        let log = crate::access::AccessLog::open(path)
            .map_err(|e| io::Error::other(dashcdn_config::chain(&e)))?;
        state = state.with_access_log(log);
    }
    let addr = listener.local_addr()?;
    let (nofile, derived) = serve::fd_limits();
    let max_connections = config.limits.max_connections.unwrap_or(derived);
    let limits = serve::Limits {
        max_connections,
        max_connections_per_client: config
            .limits
            .max_connections_per_client
            .unwrap_or((max_connections / 4).max(1)),
        header_timeout: config.limits.header_timeout,
        idle_timeout: config.limits.idle_timeout,
        send_timeout: config.limits.send_timeout,
        busy_text: "origin at capacity",
        ..serve::Limits::default()
    };
    info!(
        %addr,
        library = %state.library().root().display(),
        max_connections,
        per_client = limits.max_connections_per_client,
        open_files = nofile,
        "listening on {addr}"
    );
    state.web().log_startup();
    let metrics = Arc::clone(state.metrics());
    metrics.set_connections_max(max_connections);
    // HTTPS beside plain HTTP (docs/tls.md): the same router, HTTP/2 by ALPN (or h2c).
    let https = config
        .tls
        .build()
        .map_err(|e| io::Error::other(dashcdn_config::chain(&e)))?;
    let mut router = router(state);
    if let Some(answers) = https
        .as_ref()
        .filter(|h| h.acme.is_some())
        .map(|h| h.http01())
    {
        router = router.route(
            "/.well-known/acme-challenge/{token}",
            get(move |uri: axum::http::Uri| async move {
                match answers.respond(uri.path()) {
                    Some(answer) => answer.into_response(),
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }),
        );
    }
    // One accept loop for plain HTTP and HTTPS: the same caps, timeouts and metrics.
    // Health and metrics stay on plain HTTP under --redirect-https (probes speak it).
    let exempt = &["/healthz", "/metrics"];
    let (listeners, _upkeep) = config.tls.listeners(listener, https, exempt).await?;
    serve::serve_listeners(
        listeners,
        limits,
        metrics,
        move |peer| {
            // The access log names the client: its address rides in the request.
            let service = if logging {
                Either::Right(Extension(ConnectInfo(peer)).layer(router.clone()))
            } else {
                Either::Left(router.clone())
            };
            hyper_util::service::TowerToHyperService::new(service)
        },
        shutdown,
    )
    .await;
    // The live events end with the server: recordings become VOD assets.
    for asset in live.stop().await {
        info!(asset = %asset.display(), "live recording saved");
    }
    Ok(())
}

/// Wraps every request: answers CORS preflights, adds CORS headers, records metrics and
/// the access log's line.
async fn around(State(observe): State<Arc<Observe>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let logged = observe
        .access
        .as_ref()
        .map(|_| crate::access::Started::of(&request, started.into_std()));
    let is_head = request.method() == Method::HEAD;
    let mut response = if request.method() == Method::OPTIONS {
        cors::preflight()
    } else {
        next.run(request).await
    };
    cors::decorate(response.headers_mut());
    let route = response
        .extensions()
        .get::<Route>()
        .copied()
        .unwrap_or(Route::Other);
    let body_bytes = if is_head {
        0
    } else {
        response.body().size_hint().exact().unwrap_or(0)
    };
    observe
        .metrics
        .observe(route, response.status(), body_bytes, started.elapsed());
    match (logged, &observe.access) {
        (Some(started), Some(log)) => started.log(log, response),
        _ => response,
    }
}

fn with_route(mut response: Response, route: Route) -> Response {
    response.extensions_mut().insert(route);
    response
}

async fn healthz() -> Response {
    let response = (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        "ok",
    )
        .into_response();
    with_route(response, Route::Health)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    if let Some(log) = state.access_log() {
        metrics.access_log_dropped(log.new_drops());
    }
    let response = (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        metrics.encode(),
    )
        .into_response();
    with_route(response, Route::Metrics)
}

/// Body of `GET /vod/`.
#[derive(Debug, Serialize)]
struct Listing {
    assets: Vec<ListingEntry>,
    /// The live channels this origin serves (`/live/NAME/manifest.mpd`).
    live: Vec<LiveEntry>,
}

#[derive(Debug, Serialize)]
struct LiveEntry {
    name: String,
    manifest: String,
}

async fn listing(State(state): State<AppState>) -> Response {
    let files = Files::from_ref(&state);
    let listed = tokio::task::spawn_blocking(move || files.library().list())
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
    let live = state
        .live()
        .names()
        .into_iter()
        .map(|name| LiveEntry {
            manifest: format!("/live/{name}/manifest.mpd"),
            name,
        })
        .collect();
    let response = match listed {
        Ok(assets) => (
            // Assets appear as they are packaged, so caches must revalidate.
            [(CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
            Json(Listing { assets, live }),
        )
            .into_response(),
        Err(source) => AppError::Io {
            path: "/vod/".into(),
            source,
        }
        .into_response(),
    };
    with_route(response, Route::Listing)
}

/// Fallback for every path no route matched: media under `/vod/`, else 404.
async fn media(State(files): State<Files>, request: Request) -> Response {
    // Taking the whole request borrows the headers instead of cloning them into a
    // `HeaderMap` extractor.
    let (parts, _body) = request.into_parts();
    let (method, headers) = (parts.method, parts.headers);
    let path = parts.uri.path();
    let media = match MediaPath::parse(path) {
        Ok(media) => media,
        Err(reason) if reason.is_hostile() => {
            let path = path.to_owned();
            return AppError::BadPath { path, reason }.into_response();
        }
        Err(_) => {
            let path = path.to_owned();
            return AppError::NotFound { path }.into_response();
        }
    };
    let route = media.route();
    let response = if method == Method::GET || method == Method::HEAD {
        let conditions = Conditions::from_request(&method, &headers);
        files
            .serve(media, conditions, method == Method::HEAD)
            .await
            .unwrap_or_else(|e| AppError::from_file(path, e).into_response())
    } else {
        let path = path.to_owned();
        AppError::MethodNotAllowed { method, path }.into_response()
    };
    with_route(response, route)
}

#[cfg(test)]
mod tests {
    use crate::testing::{body, fixture, get, header, segment_bytes, send};
    use axum::http::{Method, StatusCode};

    #[tokio::test]
    async fn manifest_has_dash_type_and_short_max_age() {
        let (_dir, state) = fixture();
        let response = get(&state, "/vod/demo/manifest.mpd", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/dash+xml");
        assert_eq!(header(&response, "cache-control"), "public, max-age=5");
        assert_eq!(header(&response, "content-length"), "6");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        assert_eq!(header(&response, "timing-allow-origin"), "*");
        let expose = header(&response, "access-control-expose-headers");
        for name in ["Content-Length", "Content-Range", "Date"] {
            assert!(expose.contains(name), "{expose}");
        }
        let etag = header(&response, "etag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        httpdate::parse_http_date(header(&response, "last-modified")).unwrap();
        assert_eq!(body(response).await, b"<MPD/>");
    }

    #[tokio::test]
    async fn segments_are_immutable_and_typed_by_kind() {
        let (_dir, state) = fixture();
        for (uri, content_type) in [
            ("/vod/demo/v0/init.mp4", "video/mp4"),
            ("/vod/demo/v0/1.m4s", "video/mp4"),
            ("/vod/demo/snd/init.mp4", "audio/mp4"),
            ("/vod/demo/snd/1.m4s", "audio/mp4"),
            // No asset.json: the rep id decides.
            ("/vod/bare/audio/1.m4s", "audio/mp4"),
            ("/vod/bare/v0/1.m4s", "video/mp4"),
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            assert_eq!(header(&response, "content-type"), content_type, "{uri}");
            assert_eq!(
                header(&response, "cache-control"),
                "public, max-age=31536000, immutable"
            );
            assert_eq!(header(&response, "accept-ranges"), "bytes");
        }
        let response = get(&state, "/vod/demo/v0/1.m4s", &[]).await;
        assert_eq!(body(response).await, segment_bytes());
    }

    #[tokio::test]
    async fn hostile_and_unknown_paths() {
        let (_dir, state) = fixture();
        for uri in [
            "/vod/%2e%2e/%2e%2e/etc/passwd",
            "/vod/demo/..%2f..%2fsecret",
            "/vod/demo%00/manifest.mpd",
            "/vod/.tmp-x/manifest.mpd",
            "/vod/demo/v0/..%5c1.m4s",
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(body(response).await, b"bad request\n");
        }
        for uri in [
            "/etc/passwd",
            "/vod/missing/manifest.mpd",
            "/vod/demo/v0/2.m4s",
            "/vod/demo/asset.json",
            "/vod/demo/v0/init.mp4.bak",
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }

    #[tokio::test]
    async fn wrong_methods_are_405() {
        let (_dir, state) = fixture();
        for uri in ["/vod/demo/manifest.mpd", "/healthz"] {
            let response = send(&state, Method::POST, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{uri}");
            assert!(header(&response, "allow").contains("GET"));
        }
        let response = send(&state, Method::DELETE, "/vod/demo/v0/1.m4s", &[]).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn cors_preflight() {
        let (_dir, state) = fixture();
        let response = send(
            &state,
            Method::OPTIONS,
            "/vod/demo/v0/1.m4s",
            &[
                ("origin", "http://player.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        let methods = header(&response, "access-control-allow-methods");
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert!(methods.contains(m), "{methods}");
        }
        assert!(header(&response, "access-control-allow-headers").contains("Range"));
    }

    #[tokio::test]
    async fn listing_health_and_metrics() {
        let (_dir, state) = fixture();
        let response = get(&state, "/vod/", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body(response).await).unwrap();
        let assets = json["assets"].as_array().unwrap();
        assert_eq!(assets.len(), 2);
        assert_eq!(assets[0]["name"], "bare");
        assert!(assets[0].get("representations").is_none());
        assert_eq!(assets[1]["name"], "demo");
        assert_eq!(assets[1]["manifest"], "/vod/demo/manifest.mpd");
        assert_eq!(assets[1]["duration_secs"], 4.0);
        assert_eq!(assets[1]["representations"][1]["kind"], "audio");
        // No live channels in this state, and `<MPD/>` has no audio or text sets.
        assert_eq!(json["live"], serde_json::json!([]));
        assert!(assets[1].get("tracks").is_none());

        let response = get(&state, "/healthz", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, b"ok");

        get(&state, "/vod/demo/v0/1.m4s", &[("range", "bytes=0-99")]).await;
        get(&state, "/vod/%2e%2e/x", &[]).await;
        let response = get(&state, "/metrics", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = String::from_utf8(body(response).await).unwrap();
        for line in [
            r#"dashcdn_origin_http_requests_total{route="listing",status="200"} 1"#,
            r#"dashcdn_origin_http_requests_total{route="health",status="200"} 1"#,
            r#"dashcdn_origin_http_requests_total{route="segment",status="206"} 1"#,
            r#"dashcdn_origin_http_requests_total{route="other",status="400"} 1"#,
            r#"dashcdn_origin_http_response_bytes_total{route="segment"} 100"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
