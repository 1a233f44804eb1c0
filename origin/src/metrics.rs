//! Prometheus metrics for the origin's HTTP server.
//!
//! One [`Metrics`] per server, shared through [`crate::AppState`] and exposed at
//! `GET /metrics` in the OpenMetrics text format (which Prometheus scrapes natively).
//!
//! Labels are kept to a fixed, small set — the [`Route`] a request hit and its status
//! code — so a scanner probing random paths cannot blow up the number of series.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type Prometheus expects for what [`Metrics::encode`] produces.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which kind of resource a request was for: the `route` label.
///
/// Anything that did not resolve to one of the served shapes (unknown paths, rejected
/// hostile paths, CORS preflights) is [`Route::Other`], so path text never becomes a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Manifest,
    Init,
    Segment,
    Listing,
    Health,
    Metrics,
    Other,
}

impl Route {
    /// Number of variants: [`Route::Other`] is the last one.
    const COUNT: usize = Route::Other as usize + 1;

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Manifest => "manifest",
            Route::Init => "init",
            Route::Segment => "segment",
            Route::Listing => "listing",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

// Written by hand because the derive would print the variant name (`Manifest`), and
// label values conventionally are lowercase.
impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

/// What happened to a connection: the `event` label of
/// `dashcdn_origin_connections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the variant names are the label values
pub(crate) enum ConnEvent {
    /// Accepted and served.
    accepted,
    /// Answered 503 and closed: `max_connections` reached.
    refused_capacity,
    /// Answered 503 and closed: the client address holds `max_connections_per_client`.
    refused_per_client,
    /// Closed: no whole request head within `header_timeout`.
    header_timeout,
    /// Closed: a kept-alive connection idle for `idle_timeout`.
    idle_timeout,
    /// Closed: the client accepted no byte of a response for `send_timeout`.
    send_timeout,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnLabels {
    event: ConnEvent,
}

/// The origin's metric families and the registry that exposes them.
pub struct Metrics {
    /// Owns the descriptors (names, help text) used when encoding.
    registry: Registry,
    /// `dashcdn_origin_http_requests_total{route,status}`: request rate and error ratio.
    requests: Family<RequestLabels, Counter>,
    /// `dashcdn_origin_http_response_bytes_total{route}`: body bytes handed to the
    /// connection (the Content-Length of each response), i.e. origin egress.
    response_bytes: Family<RouteLabels, Counter>,
    /// `dashcdn_origin_http_request_duration_seconds{route}`: time from the request
    /// reaching the router until the response head is ready. Body transmission is not
    /// included: that measures the viewer's network, not the origin.
    duration: Family<RouteLabels, Histogram>,
    /// Handles into the families above, filled on first use. A `Family` lookup takes a
    /// lock shared by every series and hashes the labels; under wrk that cost more than
    /// serving a small file, while reading a filled `OnceLock` is one plain load.
    /// Series still appear only once used, so the exposition has no zero-valued noise.
    hot: [HotRoute; Route::COUNT],
    /// `dashcdn_origin_connections_open`: connections being served now.
    connections_open: Gauge,
    /// `dashcdn_origin_connections_max`: the connection cap in force (configured, or
    /// derived from the open-file limit).
    connections_max: Gauge,
    /// `dashcdn_origin_connections_total{event}`: accepted, refused and timed-out
    /// connections.
    connections: Family<ConnLabels, Counter>,
    /// `dashcdn_origin_access_log_dropped_lines_total`: lines the access log's writer
    /// could not keep up with (the disk).
    access_log_dropped: Counter,
}

#[derive(Default)]
struct HotRoute {
    requests: [OnceLock<Counter>; COMMON_STATUSES.len()],
    response_bytes: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
}

/// Statuses the origin answers with; others are counted through the family directly.
const COMMON_STATUSES: [u16; 9] = [200, 206, 304, 400, 404, 405, 412, 416, 500];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dashcdn_origin");
        let requests = Family::<RequestLabels, Counter>::default();
        let response_bytes = Family::<RouteLabels, Counter>::default();
        // 50 µs .. ~13 s: a cached MPD answers in tens of µs, a cold 2 MB segment
        // from a slow disk can take a good fraction of a second.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_05, 2.0, 19))) as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent, by route",
            response_bytes.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce the response head, by route",
            duration.clone(),
        );
        let connections_open = Gauge::default();
        let connections_max = Gauge::default();
        let connections = Family::<ConnLabels, Counter>::default();
        registry.register(
            "connections_open",
            "Connections being served now",
            connections_open.clone(),
        );
        registry.register(
            "connections_max",
            "The connection cap in force",
            connections_max.clone(),
        );
        registry.register(
            "connections",
            "Connections accepted, refused (503) and closed by a timeout",
            connections.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped_lines",
            "Access-log lines dropped because the writer could not keep up with the disk",
            access_log_dropped.clone(),
        );
        Metrics {
            access_log_dropped,
            registry,
            requests,
            response_bytes,
            duration,
            hot: Default::default(),
            connections_open,
            connections_max,
            connections,
        }
    }

    /// Records one answered request.
    pub fn observe(&self, route: Route, status: StatusCode, body_bytes: u64, elapsed: Duration) {
        let hot = &self.hot[route as usize];
        let status = status.as_u16();
        let labels = RequestLabels { route, status };
        match COMMON_STATUSES.iter().position(|&s| s == status) {
            Some(i) => hot.requests[i]
                .get_or_init(|| self.requests.get_or_create(&labels).clone())
                .inc(),
            None => self.requests.get_or_create(&labels).inc(),
        };
        let labels = RouteLabels { route };
        if body_bytes > 0 {
            hot.response_bytes
                .get_or_init(|| self.response_bytes.get_or_create(&labels).clone())
                .inc_by(body_bytes);
        }
        hot.duration
            .get_or_init(|| self.duration.get_or_create(&labels).clone())
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a connection event.
    fn connection(&self, event: ConnEvent) {
        self.connections.get_or_create(&ConnLabels { event }).inc();
    }

    /// Access-log lines dropped since the last scrape
    /// ([`dashcdn_http::access_log::AccessLog::new_drops`]).
    pub(crate) fn access_log_dropped(&self, new_drops: u64) {
        self.access_log_dropped.inc_by(new_drops);
    }

    /// The connection cap in force.
    pub(crate) fn set_connections_max(&self, max: usize) {
        self.connections_max.set(max as i64);
    }

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an Err here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            let _ = writeln!(out, "# encoding error: {e}");
        }
        out
    }
}

/// The shared accept loop reports connections here.
impl dashcdn_http::serve::Observer for Metrics {
    fn event(&self, event: dashcdn_http::serve::ConnEvent) {
        use dashcdn_http::serve::ConnEvent as E;
        let label = match event {
            E::Accepted => {
                self.connections_open.inc();
                ConnEvent::accepted
            }
            E::Closed => {
                self.connections_open.dec();
                return;
            }
            E::RefusedCapacity => ConnEvent::refused_capacity,
            E::RefusedPerClient => ConnEvent::refused_per_client,
            E::HeaderTimeout => ConnEvent::header_timeout,
            E::IdleTimeout => ConnEvent::idle_timeout,
            E::SendTimeout => ConnEvent::send_timeout,
        };
        self.connection(label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_bytes_and_latency_by_route() {
        let metrics = Metrics::new();
        metrics.observe(
            Route::Segment,
            StatusCode::OK,
            2_000_000,
            Duration::from_millis(3),
        );
        metrics.observe(
            Route::Segment,
            StatusCode::OK,
            1_000,
            Duration::from_millis(1),
        );
        metrics.observe(
            Route::Other,
            StatusCode::NOT_FOUND,
            0,
            Duration::from_micros(20),
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"dashcdn_origin_http_requests_total{route="segment",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dashcdn_origin_http_requests_total{route="other",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dashcdn_origin_http_response_bytes_total{route="segment"} 2001000"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dashcdn_origin_http_request_duration_seconds_count{route="segment"} 2"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
