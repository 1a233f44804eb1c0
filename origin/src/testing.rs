//! Drives [`router`] over a small library: shared by the unit tests of the modules that
//! build responses, which test what they decide through real requests.

use std::fs;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::app::AppState;
use crate::config::ServeConfig;
use crate::library::{AssetSummary, RepresentationSummary, KIND_AUDIO, KIND_VIDEO};
use crate::server::router;

pub(crate) const SEGMENT_LEN: usize = 1000;

pub(crate) fn segment_bytes() -> Vec<u8> {
    (0..SEGMENT_LEN).map(|i| (i % 251) as u8).collect()
}

/// A library with asset `demo` (video `v0`, audio `snd`, asset.json) and asset
/// `bare` (no asset.json, reps `v0` and `audio`).
pub(crate) fn fixture() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (asset, reps) in [("demo", ["v0", "snd"]), ("bare", ["v0", "audio"])] {
        fs::create_dir(root.join(asset)).unwrap();
        fs::write(root.join(asset).join("manifest.mpd"), "<MPD/>").unwrap();
        for rep in reps {
            let rep_dir = root.join(asset).join(rep);
            fs::create_dir(&rep_dir).unwrap();
            fs::write(rep_dir.join("init.mp4"), b"init").unwrap();
            fs::write(rep_dir.join("1.m4s"), segment_bytes()).unwrap();
        }
    }
    let rep = |id: &str, kind: &str| RepresentationSummary {
        id: id.into(),
        kind: kind.into(),
        codecs: "x".into(),
        bandwidth: 1,
        width: None,
        height: None,
        sample_rate: None,
    };
    AssetSummary {
        name: "demo".into(),
        duration_secs: 4.0,
        representations: vec![rep("v0", KIND_VIDEO), rep("snd", KIND_AUDIO)],
    }
    .write_to(&root.join("demo"))
    .unwrap();
    let mut config = ServeConfig::new(root);
    config.mpd_max_age_secs = 5;
    let state = AppState::new(&config).unwrap();
    (dir, state)
}

pub(crate) async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    router(state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

pub(crate) async fn get(state: &AppState, uri: &str, headers: &[(&str, &str)]) -> Response {
    send(state, Method::GET, uri, headers).await
}

pub(crate) async fn body(response: Response) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

pub(crate) fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}
