//! Request coalescing with streaming fill: one upstream fetch per object, however many
//! viewers ask at once, and every one of them gets bytes as they arrive.
//!
//! Why not moka's `get_with`: it coalesces, but hands the value over only once the fill
//! is complete, so 100 viewers of a cold 2 MB segment would all wait for the last byte.
//! Instead each in-flight object has a [`Fill`]: the response head, a growing body
//! buffer, and a `tokio::sync::watch` that ticks on every change. Readers (one small task
//! per viewer, [`pump`]) copy what has arrived into their viewer's body channel and sleep
//! on the watch; once the fill is complete they send zero-copy slices of the final
//! buffer. Varnish and Pingora's memory cache stream the same way; nginx's
//! `proxy_cache_lock` makes waiters poll every 500 ms (nginx/nginx#237).
//!
//! The fetch itself runs in its own spawned task ([`join_or_start`]), owned by no viewer:
//! the first viewer hanging up neither cancels the fill nor strands the others (the bug
//! of cloudflare/pingora PR #800 / #931), and the object still lands in the cache.
//!
//! Memory: each upstream chunk is copied into one buffer allocated at the final size
//! (`Content-Length`) and then dropped, so hyper's read buffer is reused for the next
//! chunk; the completed buffer is frozen and becomes the cache entry's body as is. Keeping
//! hyper's chunks instead would pin their parent read buffers (a `Bytes` slice keeps its
//! whole allocation alive), and copying them at the end would hold every object twice
//! while it fills. Measured: an edge filled far past a 64 MiB `cache_size` went from
//! ~160 MiB RSS with chunk lists to the figure in the README with this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tracing::{debug, warn};

use crate::body::BodyError;
use crate::cache::{Entry, Store};
use crate::freshness::{storable, Defaults, Storable};
use crate::headers::stored_headers;
use crate::metrics::Metrics;
use crate::pass::Passes;
use crate::upstream::Upstreams;

/// What a fill needs of the edge, and no more: the cache it stores into, the registry of
/// fills, the upstreams, the metrics and the freshness defaults.
pub(crate) struct Filler {
    pub(crate) store: Store,
    pub(crate) fills: Fills,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) defaults: Defaults,
    /// `1.1 <pop>`, appended to `Via` upstream and downstream.
    pub(crate) via: HeaderValue,
    /// Longest gap between two body chunks from an upstream.
    pub(crate) read_timeout: Duration,
    /// Larger objects are passed through, never stored.
    pub(crate) max_object_size: u64,
    /// The purge epoch, bumped by every purge; a fill started before a purge does not
    /// store its object (it may hold the purged version). A lock, not an atomic: a fill
    /// compares and stores under the read side, a purge bumps and removes under the
    /// write side, so no store can land between a purge's removal and its bump (purge is
    /// linearizable: once it answers, no request is served the purged object).
    pub(crate) purge: RwLock<u64>,
    pub(crate) passes: Passes,
    /// Bytes the fills in flight hold (`max_fill_bytes`) and all fill buffers alive.
    pub(crate) budget: Arc<FillBudget>,
}

impl Filler {
    fn epoch(&self) -> u64 {
        *self.purge.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn store_unless_purged(&self, epoch: u64, key: &Arc<str>, entry: Arc<Entry>) {
        let now = self.purge.read().unwrap_or_else(PoisonError::into_inner);
        if *now == epoch {
            self.store.insert(key.clone(), entry);
        }
    }

    /// Runs `remove` (the purge's removals) as one step with the epoch bump; fills of
    /// matching keys still in flight are detached, so requests after the purge start a
    /// fresh fill instead of joining one that may carry the old object.
    pub(crate) fn purge<T>(&self, matches: impl Fn(&str) -> bool, remove: impl FnOnce() -> T) -> T {
        let mut epoch = self.purge.write().unwrap_or_else(PoisonError::into_inner);
        *epoch += 1;
        self.fills
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| !matches(k));
        remove()
    }
}

/// The byte budgets of fill buffers: `max_fill_bytes` for the fills in flight, and a
/// ceiling of `cache_size + max_fill_bytes` on every body buffer a fill allocated that is
/// still alive anywhere (in the cache, in flight, or evicted but still being sent to a
/// slow viewer). Bodies are only ever allocated by fills, so the ceiling bounds all body
/// memory: a miss that would go past either is passed through (streamed, never buffered).
pub(crate) struct FillBudget {
    max: u64,
    ceiling: u64,
    /// Bytes reserved by the fills in flight.
    held: AtomicU64,
    /// Bytes of fill buffers alive (charged on reservation, given back when the last
    /// `Bytes` of the buffer is dropped).
    resident: AtomicU64,
}

impl FillBudget {
    pub(crate) fn new(max: u64, cache_size: u64) -> FillBudget {
        FillBudget {
            max,
            ceiling: cache_size.saturating_add(max),
            held: AtomicU64::new(0),
            resident: AtomicU64::new(0),
        }
    }

    /// Body bytes of fill buffers alive (cached, in flight, or still being sent).
    pub(crate) fn resident(&self) -> u64 {
        self.resident.load(Ordering::Relaxed)
    }

    fn take(counter: &AtomicU64, bytes: u64, limit: u64) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&n| n <= limit)
            })
            .is_ok()
    }

    /// Takes `bytes` more for `reservation` (in flight) and its `charge` (resident), or
    /// `false` (and nothing) if either would go past its budget.
    fn grow(&self, reservation: &mut Reservation<'_>, charge: &mut Charge, bytes: u64) -> bool {
        if !Self::take(&self.held, bytes, self.max) {
            return false;
        }
        if !Self::take(&self.resident, bytes, self.ceiling) {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        reservation.bytes += bytes;
        charge.bytes += bytes;
        true
    }
}

/// Bytes of the in-flight budget one fill holds, given back when the fill ends.
struct Reservation<'a> {
    budget: &'a FillBudget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Bytes of the resident ceiling one fill buffer holds: moved into the finished body
/// ([`tracked`]), so it is given back when the last viewer or cache entry lets go.
struct Charge {
    budget: Arc<FillBudget>,
    bytes: u64,
}

impl Charge {
    /// Gives back what is charged beyond `len` (a chunked body's doubling headroom).
    fn shrink_to(&mut self, len: u64) {
        let extra = self.bytes.saturating_sub(len);
        self.budget.resident.fetch_sub(extra, Ordering::AcqRel);
        self.bytes -= extra;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.resident.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A finished body that gives its charge back when its last `Bytes` is dropped.
struct Tracked {
    body: Bytes,
    _charge: Charge,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

fn tracked(body: Bytes, mut charge: Charge) -> Bytes {
    charge.shrink_to(body.len() as u64);
    Bytes::from_owner(Tracked {
        body,
        _charge: charge,
    })
}

/// The response head of an in-flight object, in stored form (see [`stored_headers`]).
#[derive(Debug)]
pub(crate) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// From `Content-Length`; `None` for a chunked upstream response.
    pub len: Option<u64>,
    /// `Age` to send (the upstream's, if any).
    pub age_secs: u64,
}

/// How a fill ended.
#[derive(Clone, Debug)]
pub(crate) enum End {
    /// Every byte arrived.
    Complete,
    /// No usable response (connect error, timeout, 5xx) or the body broke off: readers
    /// fall back to a stale copy or answer with `status`.
    Failed { status: StatusCode },
    /// A revalidation came back 304: this is the refreshed entry.
    Refreshed(Arc<Entry>),
    /// The response must not be shared (private, Set-Cookie, too large): each waiting
    /// viewer fetches on its own.
    Pass,
}

#[derive(Default)]
struct State {
    head: Option<Arc<Head>>,
    end: Option<End>,
    upstream: Option<String>,
}

/// The body as it arrives: one buffer of the final size (when `Content-Length` is
/// known), then, once complete, the frozen buffer that is also the cache entry's body.
#[derive(Default)]
struct Buffer {
    growing: BytesMut,
    done: Option<Bytes>,
}

impl Buffer {
    fn len(&self) -> usize {
        self.done.as_ref().map_or(self.growing.len(), Bytes::len)
    }

    /// Up to `max` bytes from `pos`: a zero-copy slice once complete, a copy before
    /// (the growing buffer cannot be shared while it is written).
    fn read(&self, pos: usize, max: usize) -> Option<Bytes> {
        let end = self.len().min(pos.saturating_add(max));
        if pos >= end {
            return None;
        }
        Some(match &self.done {
            Some(d) => d.slice(pos..end),
            None => Bytes::copy_from_slice(&self.growing[pos..end]),
        })
    }
}

/// Largest piece a reader copies at once.
const READ_CHUNK: usize = 64 << 10;

/// One object being fetched.
pub(crate) struct Fill {
    pub key: Arc<str>,
    state: Mutex<State>,
    body: RwLock<Buffer>,
    /// Ticks on every change of `state`; readers wait on it.
    tick: watch::Sender<u64>,
    /// The edge's count of fills alive, decremented on drop.
    alive: Arc<AtomicI64>,
    /// A response the fill will not share (private, too large, over the fill budget),
    /// left for the viewer who started the fill, so that viewer's request costs one
    /// upstream fetch, not two (Varnish's hit-for-pass does the same).
    handoff: Mutex<Option<Response<Incoming>>>,
}

/// What a viewer waiting for the head learns first.
pub(crate) enum Outcome {
    Head(Arc<Head>),
    Ended(End),
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Fill {
    fn new(key: Arc<str>, alive: &Arc<AtomicI64>) -> Fill {
        alive.fetch_add(1, Ordering::Relaxed);
        Fill {
            handoff: Mutex::new(None),
            alive: alive.clone(),
            key,
            state: Mutex::new(State::default()),
            body: RwLock::new(Buffer::default()),
            tick: watch::channel(0).0,
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.tick.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The unshared response left for the viewer who started the fill (once).
    pub(crate) fn take_handoff(&self) -> Option<Response<Incoming>> {
        self.handoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn hand_off(&self, parts: http::response::Parts, body: Incoming) -> End {
        *self.handoff.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Response::from_parts(parts, body));
        End::Pass
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    pub(crate) fn upstream(&self) -> Option<String> {
        self.lock().upstream.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the response head or the end of the fill. Never hangs: the fill task
    /// has its own timeouts and always ends.
    pub(crate) async fn wait_head(&self, rx: &mut watch::Receiver<u64>) -> Outcome {
        loop {
            rx.borrow_and_update();
            {
                let st = self.lock();
                match (&st.end, &st.head) {
                    (Some(End::Complete), Some(h)) | (None, Some(h)) => {
                        return Outcome::Head(h.clone())
                    }
                    (Some(end), _) => return Outcome::Ended(end.clone()),
                    (None, None) => {}
                }
            }
            if rx.changed().await.is_err() {
                return Outcome::Ended(End::Failed {
                    status: StatusCode::BAD_GATEWAY,
                });
            }
        }
    }
}

/// Follows `fill` for one viewer: sends the bytes of `range` (start, end exclusive) as
/// they arrive. Ends when the viewer hangs up (send fails) without touching the fill.
pub(crate) async fn pump(
    fill: Arc<Fill>,
    mut rx: watch::Receiver<u64>,
    tx: mpsc::Sender<Result<Bytes, BodyError>>,
    range: (u64, u64),
) {
    let want_end = usize::try_from(range.1).unwrap_or(usize::MAX);
    let mut pos = range.0 as usize;
    loop {
        rx.borrow_and_update();
        // Read `end` before draining: everything appended before it was set is drained.
        let end = fill.lock().end.clone();
        loop {
            let chunk = {
                let body = fill.body.read().unwrap_or_else(PoisonError::into_inner);
                body.read(pos, READ_CHUNK.min(want_end - pos))
            };
            let Some(chunk) = chunk else { break };
            pos += chunk.len();
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
            if pos >= want_end {
                return;
            }
        }
        match end {
            Some(End::Complete) => return,
            Some(_) => {
                let _ = tx.send(Err("upstream body broke off".into())).await;
                return;
            }
            None => {}
        }
        if rx.changed().await.is_err() {
            let _ = tx.send(Err("fill vanished".into())).await;
            return;
        }
    }
}

/// The registry of in-flight fills, by cache key.
#[derive(Default)]
pub(crate) struct Fills {
    map: Mutex<HashMap<Arc<str>, Arc<Fill>>>,
    /// Fills alive (in flight, or finished but still read by a viewer): diagnostics for
    /// `/_edge/stats`. Per edge, no static.
    pub(crate) alive: Arc<AtomicI64>,
}

impl Fills {
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Fill>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn remove(&self, fill: &Arc<Fill>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&fill.key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(&fill.key);
        }
    }
}

/// Joins the fill of `key`, or starts one (returns `true` then). `stale` is the expired
/// entry to revalidate, if any; `permit` is held by the fill task (prefetch bound).
pub(crate) fn join_or_start(
    sh: &Arc<Filler>,
    key: &Arc<str>,
    stale: Option<Arc<Entry>>,
    permit: Option<OwnedSemaphorePermit>,
) -> (Arc<Fill>, bool) {
    let fill = {
        let mut map = sh.fills.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = map.get(key) {
            return (f.clone(), false);
        }
        let fill = Arc::new(Fill::new(key.clone(), &sh.fills.alive));
        map.insert(key.clone(), fill.clone());
        fill
    };
    tokio::spawn(run(sh.clone(), fill.clone(), stale, permit));
    (fill, true)
}

struct FillGauge(Arc<Filler>);

impl Drop for FillGauge {
    fn drop(&mut self) {
        self.0.metrics.fills.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The fill task: fetch, publish the head, stream the body, store, end.
async fn run(
    sh: Arc<Filler>,
    fill: Arc<Fill>,
    stale: Option<Arc<Entry>>,
    _permit: Option<OwnedSemaphorePermit>,
) {
    sh.metrics.fills.fetch_add(1, Ordering::Relaxed);
    let _gauge = FillGauge(sh.clone());
    let end = fetch_and_fill(&sh, &fill, stale).await;
    if let End::Failed { status } = &end {
        debug!(key = %fill.key, status = status.as_u16(), "fill failed");
    }
    fill.update(|st| st.end = Some(end));
    sh.fills.remove(&fill);
}

async fn fetch_and_fill(sh: &Arc<Filler>, fill: &Arc<Fill>, stale: Option<Arc<Entry>>) -> End {
    let key = &fill.key;
    let epoch = sh.epoch();
    let mut validators = HeaderMap::new();
    if let Some(e) = &stale {
        if let Some(v) = &e.etag {
            validators.insert(IF_NONE_MATCH, v.clone());
        }
        if let Some(v) = &e.last_modified {
            validators.insert(IF_MODIFIED_SINCE, v.clone());
        }
    }
    let request_time = SystemTime::now();
    let fetched = match sh.upstreams.fetch(key, key, &validators).await {
        Ok(f) => f,
        Err(e) => {
            warn!(key = %key, error = %e, "upstream fetch failed");
            let status = if e.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return End::Failed { status };
        }
    };
    let response_time = SystemTime::now();
    let upstream = fetched.upstream.clone();
    fill.update(|st| st.upstream = Some(upstream.name.clone()));
    let (parts, body) = fetched.response.into_parts();
    let status = parts.status;

    if status == StatusCode::NOT_MODIFIED {
        let Some(old) = stale else {
            warn!(key = %key, upstream = %upstream.name, "unsolicited 304 from upstream");
            return End::Failed {
                status: StatusCode::BAD_GATEWAY,
            };
        };
        let merged = old.refreshed_headers(&parts.headers);
        return match storable(
            old.status,
            &merged,
            request_time,
            response_time,
            &sh.defaults,
        ) {
            Storable::Yes(policy) => {
                let entry = Arc::new(old.refreshed(merged, policy));
                sh.store_unless_purged(epoch, key, entry.clone());
                End::Refreshed(entry)
            }
            _ => {
                sh.store.remove(key);
                sh.passes.remember(key);
                End::Pass
            }
        };
    }
    // An upstream error: with a stale copy that may stand in, the viewers get that copy
    // (RFC 5861 stale-if-error); otherwise the error itself, status, headers and body as
    // the upstream sent them, never stored.
    if status.is_server_error() && stale.as_ref().is_some_and(|e| e.may_serve_on_error()) {
        let status = match status.as_u16() {
            503 | 504 => status,
            _ => StatusCode::BAD_GATEWAY,
        };
        return End::Failed { status };
    }
    let decision = if status.is_server_error() {
        Storable::No("upstream error")
    } else {
        storable(
            status,
            &parts.headers,
            request_time,
            response_time,
            &sh.defaults,
        )
    };
    let len = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let max = sh.max_object_size;
    match &decision {
        Storable::Private(why) => {
            debug!(key = %key, why, "not shareable: pass");
            sh.passes.remember(key);
            return fill.hand_off(parts, body);
        }
        _ if len.is_some_and(|l| l > max) => {
            debug!(key = %key, len, "larger than max_object_size: pass");
            sh.passes.remember(key);
            return fill.hand_off(parts, body);
        }
        _ => {}
    }
    // Memory bound: the whole declared length is reserved before any byte is buffered;
    // beyond the budget the object is passed (each viewer streams its own fetch).
    let mut reservation = Reservation {
        budget: &sh.budget,
        bytes: 0,
    };
    let mut charge = Charge {
        budget: sh.budget.clone(),
        bytes: 0,
    };
    if let Some(len) = len {
        if !sh.budget.grow(&mut reservation, &mut charge, len) {
            debug!(key = %key, len, "fill budget (max_fill_bytes) exhausted: pass");
            drop(reservation);
            drop(charge);
            return fill.hand_off(parts, body);
        }
    }
    let age_secs = parts
        .headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let head = Arc::new(Head {
        status,
        headers: stored_headers(&parts.headers, &sh.via),
        len,
        age_secs,
    });
    if let Some(len) = len {
        // The final buffer, allocated once (see the module doc).
        fill.body
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .growing = BytesMut::with_capacity(len as usize);
    }
    fill.update(|st| st.head = Some(head.clone()));

    let mut body = body;
    let mut received = 0u64;
    let mut last: Option<Bytes> = None;
    let read_timeout = sh.read_timeout;
    loop {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => {
                warn!(key = %key, upstream = %upstream.name, received, "upstream body stalled");
                sh.upstreams.failed(&upstream);
                return End::Failed {
                    status: StatusCode::GATEWAY_TIMEOUT,
                };
            }
            Ok(Some(Err(e))) => {
                warn!(key = %key, upstream = %upstream.name, received, error = %e, "upstream body failed");
                return End::Failed {
                    status: StatusCode::BAD_GATEWAY,
                };
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                received += data.len() as u64;
                sh.metrics.received_from_upstream(data.len() as u64);
                if len.is_none() {
                    // A chunked body's buffer doubles as it grows: count what it may hold.
                    let want = (received * 2).saturating_sub(reservation.bytes);
                    if want > 0 && !sh.budget.grow(&mut reservation, &mut charge, want) {
                        warn!(key = %key, received, "fill budget (max_fill_bytes) exhausted mid-body");
                        return End::Failed {
                            status: StatusCode::BAD_GATEWAY,
                        };
                    }
                }
                if received > max {
                    warn!(key = %key, received, "chunked body beyond max_object_size: pass");
                    sh.passes.remember(key);
                    return End::Failed {
                        status: StatusCode::BAD_GATEWAY,
                    };
                }
                if len == Some(received) {
                    // The last bytes of a sized body become visible only after the entry
                    // is stored (below): a viewer who has the whole object then finds it
                    // cached (HIT), never a fill still finishing (COALESCED).
                    last = Some(data);
                    continue;
                }
                fill.body
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .growing
                    .extend_from_slice(&data);
                drop(data); // hyper's read buffer is free for the next chunk
                fill.tick.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
    if len.is_some_and(|l| l != received) {
        warn!(key = %key, received, expected = len, "upstream body length mismatch");
        return End::Failed {
            status: StatusCode::BAD_GATEWAY,
        };
    }
    let body = {
        let mut b = fill.body.write().unwrap_or_else(PoisonError::into_inner);
        let mut growing = std::mem::take(&mut b.growing);
        if let Some(last) = last.take() {
            growing.extend_from_slice(&last);
        }
        // Exactly the object's size: a chunked body grew by doubling, so copy it once.
        let body = if growing.capacity() == growing.len() {
            growing.freeze()
        } else {
            Bytes::copy_from_slice(&growing)
        };
        tracked(body, charge)
    };
    // A segment whose boxes do not add up (an upstream that cut it short and rewrote
    // Content-Length to match) is served as received but never stored.
    let whole = !is_media_segment(key)
        || status != StatusCode::OK
        || !looks_like_bmff(&body)
        || match dashcdn_http::cmaf::check(&body) {
            Ok(_) => true,
            Err(error) => {
                warn!(key = %key, upstream = %upstream.name, %error, "segment does not add up: not stored");
                false
            }
        };
    if let (Storable::Yes(policy), true) = (decision, whole) {
        let entry = Entry::new(
            head.status,
            head.headers.clone(),
            body.clone(),
            policy,
            &sh.store.live,
        );
        sh.store_unless_purged(epoch, key, Arc::new(entry));
    }
    fill.body
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .done = Some(body);
    End::Complete
}

/// Whether `key` names a CMAF/fMP4 segment (`.m4s`, `.mp4`, `.cmfv`, `.cmfa`), checked
/// by `dashcdn_http::cmaf` before it is stored.
fn is_media_segment(key: &str) -> bool {
    let path = key.split_once('?').map_or(key, |(p, _)| p);
    [".m4s", ".mp4", ".cmfv", ".cmfa", ".m4v", ".m4a"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Whether `body` opens with a box an ISO BMFF segment starts with: a body that is not
/// MP4 at all (a test pattern, an error page) is not judged as a segment.
fn looks_like_bmff(body: &[u8]) -> bool {
    const FIRST: [&[u8; 4]; 10] = [
        b"styp", b"ftyp", b"moof", b"sidx", b"emsg", b"prft", b"mdat", b"moov", b"free", b"skip",
    ];
    body.get(4..8)
        .is_some_and(|kind| FIRST.iter().any(|f| &f[..] == kind))
}
