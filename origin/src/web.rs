//! The watch page: dash.js in a browser, served by the origin itself.
//!
//! | path | response |
//! | --- | --- |
//! | `/` | `index.html` of the watch page (`?mpd=URL` plays that MPD at once) |
//! | `/web/app.js`, `/web/style.css` | the page's own script and style |
//! | `/web/dash.all.min.js` (+ `.map`) | dash.js 5 from `{web_root}/node_modules/dashjs/dist/modern/umd/` |
//! | `/web/shaka-player.compiled.js` | Shaka Player from `{web_root}/node_modules/shaka-player/dist/` (the second player the live tests run) |
//! | `/time` | the current UTC time as ISO 8601 with milliseconds, e.g. `2026-11-23T23:20:01.123Z` |
//!
//! Why the origin serves it: a person opens one URL (`dashcdn demo` prints it), the page and
//! the MPDs share one origin (no CORS needed in the common case), and edges pass it through
//! like any other path. dash.js always comes from our own server, never a public CDN.
//!
//! `/time` is dash.js's default timing source (`urn:mpeg:dash:utc:http-iso:2014`, ISO/IEC
//! 23009-1 Annex H.7: "the response body is an xs:dateTime ... in ISO 8601"): the page sets
//! it so that dash.js never falls back to its built-in `time.akamai.com`. Live MPDs should
//! carry a `UTCTiming` element pointing at the same path.
//!
//! Where the files come from. The request path never reaches the file system: only the
//! fixed names of [`Asset`] are served, each mapped to a file under the web root.
//! - The web root is `web_root` from the config or, when unset, the first `player/web`
//!   that holds an `index.html`: under the working directory, in the checkout this binary
//!   was built from, or above the executable ([`WebRoot::discover`]).
//! - The page's own three files are read from the web root on each request (editing them
//!   needs no rebuild) and fall back to a copy compiled into the binary, so the page exists
//!   even where the repository does not.
//! - dash.js is never compiled in (800 KB, and its version is the lock file's business):
//!   without `node_modules` it answers 503 naming `scripts/setup.sh`, and the page shows
//!   the same advice instead of a blank player.
//!
//! These requests count under `route="other"` in `/metrics`: the page is not media.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, error, info, warn};

/// Where dash.js's browser build sits under the web root after `npm ci`. The "modern"
/// UMD build targets current browsers and defines `window.dashjs`.
pub(crate) const DASHJS_DIST: &str = "node_modules/dashjs/dist/modern/umd";

/// Where Shaka Player's compiled build sits under the web root after `npm ci`.
pub(crate) const SHAKA_DIST: &str = "node_modules/shaka-player/dist";

/// What to tell a person (or a test log) when Shaka Player is not installed.
pub(crate) const SHAKA_MISSING: &str = "Shaka Player is not installed on this server: \
     run scripts/setup.sh (it runs `npm ci` in player/web)";

/// What to tell a person (or a test log) when dash.js is not installed.
pub(crate) const DASHJS_MISSING: &str = "dash.js is not installed on this server: \
     run scripts/setup.sh (it runs `npm ci` in player/web), or point `web_root` / \
     --web-root at a player/web folder that has node_modules/dashjs";

/// The page as it was when this binary was built: served when the web root lacks a file.
const EMBEDDED_INDEX: &str = include_str!("../../player/web/index.html");
const EMBEDDED_APP: &str = include_str!("../../player/web/app.js");
const EMBEDDED_STYLE: &str = include_str!("../../player/web/style.css");

/// The page may load scripts, styles and fonts only from this origin (no CDN can sneak
/// in), media only through Media Source Extensions (`blob:`), and may fetch MPDs and
/// segments from any http(s) origin, because people paste edge and origin URLs.
const PAGE_CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self' blob:; connect-src 'self' http: https:; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'self'",
);
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
/// dash.js changes only with the lock file; a day keeps the page fast through an edge.
const DASHJS_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=86400");
const NOSNIFF: (HeaderName, HeaderValue) = (
    HeaderName::from_static("x-content-type-options"),
    HeaderValue::from_static("nosniff"),
);

/// The located web root, resolved once when the server starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebRoot {
    /// `None` when nothing was configured and no `player/web` was found: the embedded page
    /// is served and dash.js is reported missing.
    dir: Option<PathBuf>,
}

impl WebRoot {
    /// `configured` wins even if it does not exist (the operator asked for it; a warning
    /// says so). Otherwise the first `player/web` with an `index.html`: under the working
    /// directory, in the checkout this crate was compiled from, then above the executable
    /// (`target/debug/dashcdn` → the repository).
    pub(crate) fn discover(configured: Option<&Path>) -> WebRoot {
        if let Some(dir) = configured {
            if !dir.join("index.html").is_file() {
                warn!(web_root = %dir.display(), "web_root has no index.html; serving the built-in page");
            }
            return WebRoot {
                dir: Some(dir.to_owned()),
            };
        }
        let mut candidates = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            candidates.push(cwd.join("player/web"));
        }
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../player/web"));
        if let Ok(exe) = std::env::current_exe() {
            candidates.extend(exe.ancestors().skip(1).map(|a| a.join("player/web")));
        }
        // Canonical, so the startup log names the folder plainly (no `origin/..`).
        let dir = candidates
            .into_iter()
            .find(|c| c.join("index.html").is_file())
            .map(|c| c.canonicalize().unwrap_or(c));
        WebRoot { dir }
    }

    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The dash.js build, if `npm ci` has installed it.
    pub(crate) fn dashjs(&self) -> Option<PathBuf> {
        let path = self.dir()?.join(DASHJS_DIST).join("dash.all.min.js");
        path.is_file().then_some(path)
    }

    /// One startup line saying where the page comes from and whether dash.js is there.
    pub(crate) fn log_startup(&self) {
        match (self.dir(), self.dashjs()) {
            (Some(dir), Some(_)) => info!(web_root = %dir.display(), "watch page at /"),
            (Some(dir), None) => {
                warn!(web_root = %dir.display(), "watch page at / without dash.js: {DASHJS_MISSING}")
            }
            (None, _) => warn!("no player/web found; built-in watch page at /: {DASHJS_MISSING}"),
        }
    }
}

/// The files the page is made of: the only names `/web/…` answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asset {
    Index,
    App,
    Style,
    DashJs,
    DashJsMap,
    Shaka,
}

impl Asset {
    /// The name under `/web/`; `index.html` is served at `/` only.
    pub(crate) fn from_web_name(name: &str) -> Option<Asset> {
        Some(match name {
            "app.js" => Asset::App,
            "style.css" => Asset::Style,
            "dash.all.min.js" => Asset::DashJs,
            "dash.all.min.js.map" => Asset::DashJsMap,
            "shaka-player.compiled.js" => Asset::Shaka,
            _ => return None,
        })
    }

    fn file(self) -> &'static str {
        match self {
            Asset::Index => "index.html",
            Asset::App => "app.js",
            Asset::Style => "style.css",
            Asset::DashJs => "dash.all.min.js",
            Asset::DashJsMap => "dash.all.min.js.map",
            Asset::Shaka => "shaka-player.compiled.js",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Asset::Index => "text/html; charset=utf-8",
            Asset::App | Asset::DashJs | Asset::Shaka => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
            Asset::DashJsMap => "application/json",
        }
    }

    fn embedded(self) -> Option<&'static str> {
        match self {
            Asset::Index => Some(EMBEDDED_INDEX),
            Asset::App => Some(EMBEDDED_APP),
            Asset::Style => Some(EMBEDDED_STYLE),
            Asset::DashJs | Asset::DashJsMap | Asset::Shaka => None,
        }
    }

    /// A player installed by `npm ci`, versioned by the lock file: never compiled in.
    fn is_vendor(self) -> bool {
        matches!(self, Asset::DashJs | Asset::DashJsMap | Asset::Shaka)
    }

    fn missing(self) -> &'static str {
        match self {
            Asset::Shaka => SHAKA_MISSING,
            _ => DASHJS_MISSING,
        }
    }

    fn path_in(self, root: &Path) -> PathBuf {
        match self {
            Asset::DashJs | Asset::DashJsMap => root.join(DASHJS_DIST).join(self.file()),
            Asset::Shaka => root.join(SHAKA_DIST).join(self.file()),
            _ => root.join(self.file()),
        }
    }
}

/// `GET /`.
pub(crate) async fn index(State(web): State<WebRoot>) -> Response {
    serve_asset(&web, Asset::Index).await
}

/// `GET /web/{name}`: only the names of [`Asset`]; anything else is 404.
pub(crate) async fn web_file(
    State(web): State<WebRoot>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    match Asset::from_web_name(&name) {
        Some(asset) => serve_asset(&web, asset).await,
        None => {
            debug!(name, "no such web file");
            (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
    }
}

async fn serve_asset(web: &WebRoot, asset: Asset) -> Response {
    let from_disk = match web.dir() {
        Some(root) => {
            let path = asset.path_in(root);
            match tokio::fs::read(&path).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    error!(path = %path.display(), error = %e, "cannot read web file");
                    return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
                }
            }
        }
        None => None,
    };
    let body = match (from_disk, asset.embedded()) {
        (Some(bytes), _) => bytes,
        (None, Some(text)) => text.as_bytes().to_vec(),
        (None, None) => {
            let missing = asset.missing();
            warn!(file = asset.file(), "{missing}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                format!("{missing}\n"),
            )
                .into_response();
        }
    };
    let cache = if asset.is_vendor() {
        DASHJS_CACHE
    } else {
        NO_CACHE
    };
    let mut response = (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type())),
            (CACHE_CONTROL, cache),
            NOSNIFF,
        ],
        body,
    )
        .into_response();
    if asset == Asset::Index {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, PAGE_CSP);
    }
    response
}

/// `GET /time`: dash.js's timing source (`urn:mpeg:dash:utc:http-iso:2014`).
pub(crate) async fn time() -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        iso8601(SystemTime::now()),
    )
        .into_response()
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). Times before 1970 print as the epoch: a
/// clock that far off is not worth a dependency.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day), after Howard Hinnant's
/// `civil_from_days` (eras of 400 years, March-based years so leap days come last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;
    use crate::testing::{body, get, header};
    use crate::AppState;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn iso8601_known_instants() {
        assert_eq!(iso8601(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(iso8601(at(1_700_000_000, 999)), "2023-11-14T22:13:20.999Z");
        assert_eq!(iso8601(at(4_107_542_399, 0)), "2100-02-28T23:59:59.000Z");
    }

    #[test]
    fn iso8601_agrees_with_http_date_every_day_for_centuries() {
        // httpdate is an independent implementation of the same calendar.
        for day in (0..60_000u64).step_by(7) {
            let t = at(day * 86_400 + 45_296, 0);
            let ours = iso8601(t);
            let theirs = httpdate::fmt_http_date(t); // "Sun, 06 Nov 1994 08:49:37 GMT"
            let parts: Vec<&str> = theirs.split(' ').collect();
            let month = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ]
            .iter()
            .position(|m| *m == parts[2])
            .unwrap()
                + 1;
            let expected = format!("{}-{month:02}-{}T{}.000Z", parts[3], parts[1], parts[4]);
            assert_eq!(ours, expected, "day {day}");
        }
    }

    /// A state whose web root is a temp dir holding `files`.
    fn state_with_web(files: &[(&str, &str)]) -> (tempfile::TempDir, tempfile::TempDir, AppState) {
        let library = tempfile::tempdir().unwrap();
        let web = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = web.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut config = ServeConfig::new(library.path());
        config.web_root = Some(web.path().to_owned());
        let state = AppState::new(&config).unwrap();
        (library, web, state)
    }

    #[tokio::test]
    async fn page_and_dashjs_come_from_the_web_root() {
        let dashjs = format!("{DASHJS_DIST}/dash.all.min.js");
        let (_l, _w, state) = state_with_web(&[
            ("index.html", "<!doctype html><title>on disk</title>"),
            ("app.js", "console.log('disk')"),
            (&dashjs, "window.dashjs = {};"),
        ]);
        let response = get(&state, "/", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8"
        );
        assert!(header(&response, "content-security-policy").contains("script-src 'self'"));
        assert_eq!(header(&response, "cache-control"), "no-cache");
        assert_eq!(
            body(response).await,
            b"<!doctype html><title>on disk</title>"
        );

        let response = get(&state, "/web/app.js", &[]).await;
        assert_eq!(
            header(&response, "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(body(response).await, b"console.log('disk')");

        let response = get(&state, "/web/dash.all.min.js", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "cache-control"), "public, max-age=86400");
        assert_eq!(body(response).await, b"window.dashjs = {};");

        // style.css is not in this web root: the built-in copy answers.
        let response = get(&state, "/web/style.css", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, EMBEDDED_STYLE.as_bytes());
    }

    #[tokio::test]
    async fn missing_dashjs_is_a_503_that_names_setup() {
        let (_l, _w, state) = state_with_web(&[]);
        let response = get(&state, "/", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, EMBEDDED_INDEX.as_bytes());
        let response = get(&state, "/web/dash.all.min.js", &[]).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = String::from_utf8(body(response).await).unwrap();
        assert!(text.contains("scripts/setup.sh"), "{text}");
    }

    #[tokio::test]
    async fn only_known_names_are_served() {
        let (_l, web, state) = state_with_web(&[("secret.txt", "no")]);
        std::fs::write(web.path().join("package.json"), "{}").unwrap();
        for uri in [
            "/web/secret.txt",
            "/web/package.json",
            "/web/index.html",
            "/web/..%2f..%2fetc%2fpasswd",
            "/web/%2e%2e/secret.txt",
            "/web/",
            "/index.html",
        ] {
            let response = get(&state, uri, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }

    #[tokio::test]
    async fn time_is_now_in_iso8601() {
        let (_l, _w, state) = state_with_web(&[]);
        let before = SystemTime::now() - Duration::from_secs(1);
        let response = get(&state, "/time", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        let text = String::from_utf8(body(response).await).unwrap();
        assert_eq!(text.len(), "2026-01-01T00:00:00.000Z".len(), "{text}");
        // Lexical order of this fixed-width format is time order.
        assert!(text >= iso8601(before), "{text}");
        assert!(
            text <= iso8601(SystemTime::now() + Duration::from_secs(1)),
            "{text}"
        );
    }

    #[test]
    fn discovery_finds_this_repository() {
        let root = WebRoot::discover(None);
        let dir = root.dir().expect("player/web of this checkout");
        assert!(dir.join("index.html").is_file());
        let configured = WebRoot::discover(Some(Path::new("/nonexistent/web")));
        assert_eq!(configured.dir(), Some(Path::new("/nonexistent/web")));
        assert!(configured.dashjs().is_none());
    }
}
