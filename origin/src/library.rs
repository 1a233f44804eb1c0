//! The media library on disk, and safe resolution of request paths into it.
//!
//! Layout, as written by [`crate::package`]:
//!
//! ```text
//! {root}/{asset}/manifest.mpd
//! {root}/{asset}/asset.json            AssetSummary, for the listing and Content-Type
//! {root}/{asset}/{rep}/init.mp4
//! {root}/{asset}/{rep}/{n}.m4s
//! {root}/.tmp-xxxx/                    packaging in progress: never an asset
//! ```
//!
//! Request paths are untrusted. Instead of sanitising them, [`MediaPath::parse`] accepts
//! only the three served shapes, and each percent-decoded component must match
//! `[A-Za-z0-9_-][A-Za-z0-9._-]*`: that one rule excludes `..`, dot-files (and so the
//! packager's temp dirs), `/` or `\` smuggled inside a component, NUL, and empty
//! components (`//`, which would make `join` treat the rest as absolute). As a second,
//! independent guard, [`Library::resolve`] refuses any path that, once symlinks below the
//! root are followed, is no longer under the canonical root, which is what a symlink
//! pointing outside the library looks like.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::warn;

use crate::metrics::Route;

/// File name of an asset's MPD.
pub(crate) const MANIFEST_FILE: &str = "manifest.mpd";
/// A subtitle track's WebVTT file, in a representation folder named `text-{lang}`.
pub(crate) const SUBTITLE_FILE: &str = "subtitles.vtt";
const TEXT_PREFIX: &str = "text-";
/// File name of a representation's CMAF header.
pub(crate) const INIT_FILE: &str = "init.mp4";
/// File name of an asset's [`AssetSummary`].
pub(crate) const SUMMARY_FILE: &str = "asset.json";
/// [`RepresentationSummary::kind`] of a video representation.
#[cfg(test)]
pub(crate) const KIND_VIDEO: &str = "video";
/// [`RepresentationSummary::kind`] of an audio representation.
pub(crate) const KIND_AUDIO: &str = "audio";

/// `text` quoted for a log line, cut at 120 bytes: a 60 KB hostile path must not make
/// 60 KB of log per request.
pub(crate) fn shown(text: &str) -> String {
    const LIMIT: usize = 120;
    if text.len() <= LIMIT {
        return format!("{text:?}");
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..end], text.len())
}

/// Longest accepted path component, the usual file-system limit.
const MAX_NAME_LEN: usize = 255;
/// Longest accepted segment number: 20 digits hold any u64.
const MAX_SEGMENT_DIGITS: usize = 20;

/// What the packager knows about an asset, stored as `{asset}/asset.json` so the server
/// can list assets and pick Content-Types without parsing MPDs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetSummary {
    pub name: String,
    pub duration_secs: f64,
    pub representations: Vec<RepresentationSummary>,
}

/// One representation of an [`AssetSummary`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepresentationSummary {
    /// Directory name under the asset, and the MPD's `Representation@id`.
    pub id: String,
    /// `"video"` or [`KIND_AUDIO`].
    pub kind: String,
    /// RFC 6381 codecs string, as in the MPD.
    pub codecs: String,
    /// Bits per second, as in the MPD's `@bandwidth`.
    pub bandwidth: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
}

impl RepresentationSummary {
    pub fn is_audio(&self) -> bool {
        self.kind == KIND_AUDIO
    }
}

impl AssetSummary {
    /// Writes `{asset_dir}/asset.json`. The packager calls this inside its temp dir, so
    /// the rename that publishes the asset publishes this file with it.
    pub fn write_to(&self, asset_dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        fs::write(asset_dir.join(SUMMARY_FILE), json)
    }

    /// Reads `{asset_dir}/asset.json`; errors name the file.
    pub fn read_from(asset_dir: &Path) -> io::Result<AssetSummary> {
        let path = asset_dir.join(SUMMARY_FILE);
        let named = |e: &dyn std::fmt::Display, kind| {
            io::Error::new(kind, format!("{}: {e}", path.display()))
        };
        let bytes = fs::read(&path).map_err(|e| named(&e, e.kind()))?;
        serde_json::from_slice(&bytes).map_err(|e| named(&e, io::ErrorKind::InvalidData))
    }

    fn representation(&self, id: &str) -> Option<&RepresentationSummary> {
        self.representations.iter().find(|r| r.id == id)
    }
}

/// True if `name` may be an asset or representation name: `[A-Za-z0-9_-][A-Za-z0-9._-]*`,
/// at most 255 bytes. The packager should refuse asset names this rejects, since the
/// server would never serve them.
pub(crate) fn valid_component(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0] != b'.'
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A request path that passed validation: one of the three served shapes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MediaPath {
    /// `/vod/{asset}/manifest.mpd`
    Manifest { asset: String },
    /// `/vod/{asset}/{rep}/init.mp4`
    Init { asset: String, rep: String },
    /// `/vod/{asset}/{rep}/{n}.m4s`; `file` is the whole validated file name.
    Segment {
        asset: String,
        rep: String,
        file: String,
    },
}

/// Why a request path is not a [`MediaPath`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub(crate) enum PathError {
    #[error("path does not start with /vod/")]
    NotVod,
    #[error("component {} is not valid percent-encoded UTF-8", shown(.0))]
    Encoding(String),
    #[error("component {} is not an allowed name", shown(.0))]
    BadName(String),
    #[error("path is not a manifest, init or segment")]
    UnknownShape,
}

impl PathError {
    /// True for paths no honest client sends (traversal, encoding tricks): answered 400
    /// and logged as a warning. The rest are plain 404s.
    pub(crate) fn is_hostile(&self) -> bool {
        matches!(self, PathError::Encoding(_) | PathError::BadName(_))
    }
}

impl MediaPath {
    /// Parses the path of a request URI (still percent-encoded, without the query).
    pub(crate) fn parse(path: &str) -> Result<MediaPath, PathError> {
        let rest = path.strip_prefix("/vod/").ok_or(PathError::NotVod)?;
        // Every component is decoded and validated before the shape is looked at, so a
        // traversal attempt is reported as such even when the shape is also wrong.
        let mut parts = Vec::with_capacity(3);
        for raw in rest.split('/') {
            let decoded = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| PathError::Encoding(raw.to_owned()))?;
            if !valid_component(&decoded) {
                return Err(PathError::BadName(decoded.into_owned()));
            }
            parts.push(decoded.into_owned());
        }
        let mut parts = parts.into_iter();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(asset), Some(file), None, None) if file == MANIFEST_FILE => {
                Ok(MediaPath::Manifest { asset })
            }
            (Some(asset), Some(rep), Some(file), None) if file == INIT_FILE => {
                Ok(MediaPath::Init { asset, rep })
            }
            (Some(asset), Some(rep), Some(file), None) if is_segment_file(&file) => {
                Ok(MediaPath::Segment { asset, rep, file })
            }
            _ => Err(PathError::UnknownShape),
        }
    }

    pub(crate) fn asset(&self) -> &str {
        match self {
            MediaPath::Manifest { asset }
            | MediaPath::Init { asset, .. }
            | MediaPath::Segment { asset, .. } => asset,
        }
    }

    /// The representation, for init and media segments.
    pub(crate) fn rep(&self) -> Option<&str> {
        match self {
            MediaPath::Manifest { .. } => None,
            MediaPath::Init { rep, .. } | MediaPath::Segment { rep, .. } => Some(rep),
        }
    }

    /// The metrics label of this kind of resource.
    pub(crate) fn route(&self) -> Route {
        match self {
            MediaPath::Manifest { .. } => Route::Manifest,
            MediaPath::Init { .. } => Route::Init,
            MediaPath::Segment { .. } => Route::Segment,
        }
    }

    /// The path's components below the library root, outermost first. All validated, so
    /// none is `.`, `..`, empty, or holds a separator.
    fn components(&self) -> impl Iterator<Item = &str> {
        let (asset, rep, file) = match self {
            MediaPath::Manifest { asset } => (asset, None, MANIFEST_FILE),
            MediaPath::Init { asset, rep } => (asset, Some(rep.as_str()), INIT_FILE),
            MediaPath::Segment { asset, rep, file } => (asset, Some(rep.as_str()), file.as_str()),
        };
        std::iter::once(asset.as_str())
            .chain(rep)
            .chain(std::iter::once(file))
    }
}

/// `{n}.m4s` with `n` ASCII digits, or a subtitle track's whole WebVTT file.
fn is_segment_file(file: &str) -> bool {
    file == SUBTITLE_FILE
        || file.strip_suffix(".m4s").is_some_and(|n| {
            !n.is_empty() && n.len() <= MAX_SEGMENT_DIGITS && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Why a valid [`MediaPath`] could not be opened.
#[derive(Debug, Error)]
pub(crate) enum ResolveError {
    #[error("no such file")]
    NotFound,
    #[error("{requested} resolves to {target}, outside the library")]
    Escapes { requested: PathBuf, target: PathBuf },
    #[error("cannot open {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One entry of the `GET /vod/` listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ListingEntry {
    pub name: String,
    /// Absolute URL path of the MPD on this origin.
    pub manifest: String,
    /// From asset.json; absent for assets packaged without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representations: Option<Vec<RepresentationSummary>>,
    /// Audio and subtitle tracks (one per AdaptationSet of the first Period), read from
    /// the MPD, so the listing can offer languages before a player loads anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<TrackEntry>,
}

/// An audio or text AdaptationSet of an asset, as listed by `GET /vod/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct TrackEntry {
    /// `"audio"` or `"text"`.
    pub kind: String,
    /// ISO 639 language (`und` when the MPD names none).
    pub lang: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `Role` values (main, alternate, commentary, subtitle, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Channel counts of the audio Representations (e.g. `[6, 2]` for 5.1 + stereo).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<u32>,
}

/// The audio and text tracks of the MPD at `path`; none if it does not parse (the asset
/// is still listed: players report what is wrong with it).
fn tracks_of(path: &Path) -> Vec<TrackEntry> {
    let Ok(xml) = fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(mpd) = dash_mpd_core::parse(&xml) else {
        return Vec::new();
    };
    let Some(period) = mpd.periods.first() else {
        return Vec::new();
    };
    period
        .adaptations
        .iter()
        .filter_map(|set| {
            let kind = set.contentType.clone().or_else(|| {
                let mime = set.mimeType.as_deref()?;
                Some(mime.split('/').next()?.to_owned())
            })?;
            if kind != "audio" && kind != "text" {
                return None;
            }
            let channels_of = |c: &[dash_mpd_core::AudioChannelConfiguration]| {
                c.iter()
                    .filter_map(|c| c.value.as_deref()?.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            };
            let mut channels = channels_of(&set.AudioChannelConfiguration);
            for r in &set.representations {
                channels.extend(channels_of(&r.AudioChannelConfiguration));
            }
            channels.dedup();
            Some(TrackEntry {
                kind,
                lang: set.lang.clone().unwrap_or_else(|| "und".into()),
                label: set.Label.first().map(|l| l.content.clone()),
                roles: set.Role.iter().filter_map(|r| r.value.clone()).collect(),
                channels,
            })
        })
        .collect()
}

/// The media library: its canonical root and a cache of parsed asset.json files.
///
/// All methods do blocking file-system work; the server calls them from
/// `spawn_blocking`.
#[derive(Debug)]
pub(crate) struct Library {
    /// Canonical (absolute, symlink-free), so validated components joined to it make a
    /// canonical path unless one is a symlink, and a canonicalised file path can be
    /// checked for containment with a plain prefix test.
    root: PathBuf,
    /// asset name → its parsed asset.json, so a segment request costs one `stat` of the
    /// summary instead of a read and a JSON parse.
    summaries: RwLock<HashMap<String, CachedSummary>>,
}

#[derive(Debug)]
struct CachedSummary {
    /// The file's identity when it was parsed; a re-packaged asset changes it.
    stamp: Stamp,
    /// `None` if the file did not parse, so a broken file is not re-read per request.
    summary: Option<Arc<AssetSummary>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: inode(meta),
        }
    }
}

/// The inode number, part of file identity (and of ETags) where the platform has one.
#[cfg(unix)]
pub(crate) fn inode(meta: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
pub(crate) fn inode(_meta: &Metadata) -> u64 {
    0
}

impl Library {
    /// Opens the library at `root`, which must be an existing directory.
    pub(crate) fn open(root: impl AsRef<Path>) -> io::Result<Library> {
        let given = root.as_ref();
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("library {}: {e}", given.display()));
        let root = fs::canonicalize(given).map_err(named)?;
        if !fs::metadata(&root).map_err(named)?.is_dir() {
            return Err(named(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        Ok(Library {
            root,
            summaries: RwLock::new(HashMap::new()),
        })
    }

    /// The canonical root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `media` to a canonical path inside the library, or refuses.
    ///
    /// The root is canonical and every component is validated, so the joined path is
    /// already canonical unless something below the root is a symlink: one `lstat` per
    /// component finds out. Only then is the whole path canonicalised and checked, since
    /// `fs::canonicalize` costs a `readlink` per component of the absolute path, the
    /// root's own included, on every request. The root is not re-checked per request:
    /// swapping one of its ancestors for a symlink needs write access outside the library.
    pub(crate) fn resolve(&self, media: &MediaPath) -> Result<PathBuf, ResolveError> {
        let mut path = self.root.clone();
        let mut components = media.components();
        while let Some(component) = components.next() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    path.extend(components);
                    return self.resolve_symlinked(path);
                }
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Err(ResolveError::NotFound),
                Err(source) => return Err(ResolveError::Io { path, source }),
            }
        }
        Ok(path)
    }

    /// [`Library::resolve`] for a path with a symlink in it: canonicalised whole, and
    /// refused if that leaves the library.
    fn resolve_symlinked(&self, requested: PathBuf) -> Result<PathBuf, ResolveError> {
        let target = match fs::canonicalize(&requested) {
            Ok(target) => target,
            Err(e) if is_not_found(&e) => return Err(ResolveError::NotFound),
            Err(source) => {
                return Err(ResolveError::Io {
                    path: requested,
                    source,
                })
            }
        };
        if !target.starts_with(&self.root) {
            return Err(ResolveError::Escapes { requested, target });
        }
        Ok(target)
    }

    /// Resolves and opens `media`, which must be a regular file.
    ///
    /// The canonical path is what gets opened, so a symlink swapped in between the check
    /// and the open would need write access to the library, which is game over anyway.
    pub(crate) fn open_media(&self, media: &MediaPath) -> Result<(File, Metadata), ResolveError> {
        let path = self.resolve(media)?;
        let io_err = |source| ResolveError::Io {
            path: path.clone(),
            source,
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if is_not_found(&e) => return Err(ResolveError::NotFound),
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(ResolveError::NotFound);
        }
        Ok((file, meta))
    }

    /// The parsed asset.json of `asset`, if it has a readable one. Cached; revalidated
    /// with one `stat` per call, whether the file is there or not.
    pub(crate) fn summary(&self, asset: &str) -> Option<Arc<AssetSummary>> {
        let asset_dir = self.root.join(asset);
        let path = asset_dir.join(SUMMARY_FILE);
        // symlink_metadata: asset.json is always a regular file written by the packager;
        // following a symlink here could parse a file outside the library.
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            _ => {
                self.forget_summary(asset);
                return None;
            }
        };
        let stamp = Stamp::of(&meta);
        if let Some(cached) = self
            .summaries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(asset)
        {
            if cached.stamp == stamp {
                return cached.summary.clone();
            }
        }
        let summary = match AssetSummary::read_from(&asset_dir) {
            Ok(summary) => Some(Arc::new(summary)),
            Err(error) => {
                warn!(%error, asset, "ignoring unreadable asset summary");
                None
            }
        };
        self.summaries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                asset.to_owned(),
                CachedSummary {
                    stamp,
                    summary: summary.clone(),
                },
            );
        summary
    }

    /// Drops the cached summary of an asset whose asset.json is gone. Assets packaged
    /// without one land here on every segment request, so the common case (nothing to
    /// drop) takes only the read lock and never blocks other requests.
    fn forget_summary(&self, asset: &str) {
        let cached = self
            .summaries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(asset);
        if cached {
            self.summaries
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(asset);
        }
    }

    /// The Content-Type of `rep`'s init and media segments: what asset.json says its
    /// kind is, else guessed from the id (`audio…` is audio, as the packager names them).
    pub(crate) fn segment_content_type(&self, asset: &str, rep: &str) -> &'static str {
        // Subtitle tracks (`text-{lang}`) hold one WebVTT file; see the packager.
        if rep.starts_with(TEXT_PREFIX) {
            return "text/vtt; charset=utf-8";
        }
        let is_audio = match self.summary(asset) {
            Some(summary) => match summary.representation(rep) {
                Some(r) => r.is_audio(),
                None => rep.starts_with(KIND_AUDIO),
            },
            None => rep.starts_with(KIND_AUDIO),
        };
        if is_audio {
            "audio/mp4"
        } else {
            "video/mp4"
        }
    }

    /// Every servable asset, sorted by name: directories with a valid name and a
    /// manifest.mpd that resolve inside the library.
    pub(crate) fn list(&self) -> io::Result<Vec<ListingEntry>> {
        let mut entries = Vec::new();
        for dirent in fs::read_dir(&self.root)? {
            let dirent = dirent?;
            let Ok(name) = dirent.file_name().into_string() else {
                continue;
            };
            if !valid_component(&name) {
                continue;
            }
            let manifest = MediaPath::Manifest {
                asset: name.clone(),
            };
            let manifest_path = match self.resolve(&manifest) {
                Ok(path) if path.is_file() => path,
                Ok(_) | Err(ResolveError::NotFound) => continue,
                Err(error @ ResolveError::Escapes { .. }) => {
                    warn!(%error, "not listing asset outside the library");
                    continue;
                }
                Err(error) => return Err(io::Error::other(error.to_string())),
            };
            let summary = self.summary(&name);
            entries.push(ListingEntry {
                manifest: format!("/vod/{name}/{MANIFEST_FILE}"),
                duration_secs: summary.as_ref().map(|s| s.duration_secs),
                representations: summary.as_ref().map(|s| s.representations.clone()),
                tracks: tracks_of(&manifest_path),
                name,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}

/// Missing, or a path component that is a file (`ENOTDIR`): either way, not there.
fn is_not_found(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str) -> AssetSummary {
        AssetSummary {
            name: name.into(),
            duration_secs: 10.0,
            representations: vec![
                RepresentationSummary {
                    id: "v0".into(),
                    kind: KIND_VIDEO.into(),
                    codecs: "avc1.64001f".into(),
                    bandwidth: 3_000_000,
                    width: Some(1280),
                    height: Some(720),
                    sample_rate: None,
                },
                RepresentationSummary {
                    id: "snd".into(),
                    kind: KIND_AUDIO.into(),
                    codecs: "mp4a.40.2".into(),
                    bandwidth: 128_000,
                    width: None,
                    height: None,
                    sample_rate: Some(48_000),
                },
            ],
        }
    }

    #[test]
    fn tracks_are_read_from_the_mpd() {
        let dir = tempfile::tempdir().unwrap();
        let mpd = dir.path().join("manifest.mpd");
        fs::write(
            &mpd,
            r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period>
<AdaptationSet contentType="video" mimeType="video/mp4"/>
<AdaptationSet contentType="audio" lang="eng"><Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>
 <Representation id="a6" bandwidth="1"><AudioChannelConfiguration schemeIdUri="urn:mpeg:mpegB:cicp:ChannelConfiguration" value="6"/></Representation>
 <Representation id="a2" bandwidth="1"><AudioChannelConfiguration schemeIdUri="urn:mpeg:mpegB:cicp:ChannelConfiguration" value="2"/></Representation>
</AdaptationSet>
<AdaptationSet mimeType="text/vtt" lang="fra"><Label>Français</Label></AdaptationSet>
</Period></MPD>"#,
        )
        .unwrap();
        let tracks = tracks_of(&mpd);
        assert_eq!(tracks.len(), 2, "{tracks:?}");
        assert_eq!(
            (tracks[0].kind.as_str(), tracks[0].lang.as_str()),
            ("audio", "eng")
        );
        assert_eq!(tracks[0].channels, [6, 2]);
        assert_eq!(tracks[0].roles, ["main"]);
        assert_eq!(
            (tracks[1].kind.as_str(), tracks[1].label.as_deref()),
            ("text", Some("Français"))
        );
        assert!(tracks_of(&dir.path().join("missing.mpd")).is_empty());
    }

    #[test]
    fn parses_the_three_shapes() {
        assert_eq!(
            MediaPath::parse("/vod/big_buck-bunny/manifest.mpd"),
            Ok(MediaPath::Manifest {
                asset: "big_buck-bunny".into()
            })
        );
        assert_eq!(
            MediaPath::parse("/vod/a/v720/init.mp4"),
            Ok(MediaPath::Init {
                asset: "a".into(),
                rep: "v720".into()
            })
        );
        assert_eq!(
            MediaPath::parse("/vod/a/v720/0042.m4s"),
            Ok(MediaPath::Segment {
                asset: "a".into(),
                rep: "v720".into(),
                file: "0042.m4s".into()
            })
        );
        // Harmless percent-encoding of allowed characters is decoded, not rejected.
        assert_eq!(
            MediaPath::parse("/vod/%61/manifest.mpd"),
            Ok(MediaPath::Manifest { asset: "a".into() })
        );
    }

    #[test]
    fn other_shapes_are_not_found() {
        for path in [
            "/vod/a",
            "/vod/a/asset.json",
            "/vod/a/v/x.m4s",
            "/vod/a/v/1.mp4",
            "/vod/a/v/123456789012345678901.m4s",
            "/vod/a/v/1.m4s/extra",
            "/vod/a/manifest.mpd/x/y",
        ] {
            assert_eq!(
                MediaPath::parse(path),
                Err(PathError::UnknownShape),
                "{path}"
            );
        }
        assert_eq!(MediaPath::parse("/etc/passwd"), Err(PathError::NotVod));
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for path in [
            "/vod/../../etc/passwd",
            "/vod/a/../../etc/passwd/manifest.mpd",
            "/vod/%2e%2e/%2e%2e/etc/passwd",
            "/vod/%2E%2E/manifest.mpd",
            "/vod/a/..%2f..%2fsecret",
            "/vod/a%2fb/manifest.mpd",
            "/vod/a%5c..%5c/manifest.mpd",
            "/vod/a\\..\\b/manifest.mpd",
            "/vod/a%00/manifest.mpd",
            "/vod//etc/passwd/manifest.mpd",
            "/vod/.tmp-x/manifest.mpd",
            "/vod/.hidden/v/init.mp4",
            "/vod/a/.v/1.m4s",
            "/vod/a/v/.m4s",
            "/vod/a%20b/manifest.mpd",
            "/vod/%ff/manifest.mpd",
            "/vod/a/",
        ] {
            let err = MediaPath::parse(path).unwrap_err();
            assert!(err.is_hostile(), "{path}: {err:?}");
        }
    }

    #[test]
    fn name_charset() {
        for ok in ["a", "A9", "_x", "-x", "a.b", "v1080p60", "x.."] {
            assert!(valid_component(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".a",
            "a/b",
            "a\\b",
            "a b",
            "a\0",
            "é",
            &"a".repeat(256),
        ] {
            assert!(!valid_component(bad), "{bad:?}");
        }
    }

    #[test]
    fn summary_round_trips_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = summary("demo");
        s.write_to(dir.path()).unwrap();
        assert_eq!(AssetSummary::read_from(dir.path()).unwrap(), s);

        fs::write(dir.path().join(SUMMARY_FILE), "{").unwrap();
        let err = AssetSummary::read_from(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(SUMMARY_FILE), "{err}");
    }

    #[test]
    fn content_type_from_summary_then_name() {
        let dir = tempfile::tempdir().unwrap();
        let asset = dir.path().join("demo");
        fs::create_dir(&asset).unwrap();
        summary("demo").write_to(&asset).unwrap();
        let library = Library::open(dir.path()).unwrap();
        assert_eq!(library.segment_content_type("demo", "v0"), "video/mp4");
        assert_eq!(library.segment_content_type("demo", "snd"), "audio/mp4");
        // Not in asset.json, or no asset.json at all: the id decides.
        assert_eq!(library.segment_content_type("demo", "audio_1"), "audio/mp4");
        assert_eq!(library.segment_content_type("other", "audio"), "audio/mp4");
        assert_eq!(library.segment_content_type("other", "v1"), "video/mp4");

        // A re-packaged asset is noticed without restarting.
        let mut changed = summary("demo");
        changed.representations[0].kind = KIND_AUDIO.into();
        changed.name = "demo-renamed".into();
        changed.write_to(&asset).unwrap();
        assert_eq!(library.segment_content_type("demo", "v0"), "audio/mp4");
        // And so is a removed one.
        fs::remove_file(asset.join(SUMMARY_FILE)).unwrap();
        assert_eq!(library.segment_content_type("demo", "v0"), "video/mp4");
        assert!(library.summaries.read().unwrap().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_library_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("library");
        fs::create_dir_all(root.join("demo/v")).unwrap();
        fs::write(root.join("demo/manifest.mpd"), "<MPD/>").unwrap();
        fs::write(base.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(base.path().join("secret"), root.join("demo/v/1.m4s")).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        fs::write(base.path().join("outside/manifest.mpd"), "secret").unwrap();
        std::os::unix::fs::symlink(base.path().join("outside"), root.join("leak")).unwrap();
        // A representation directory leading out, below a real asset directory.
        fs::write(base.path().join("outside/1.m4s"), "secret").unwrap();
        std::os::unix::fs::symlink(base.path().join("outside"), root.join("demo/out")).unwrap();
        // Symlinks that stay inside are fine, at any depth.
        std::os::unix::fs::symlink(root.join("demo"), root.join("alias")).unwrap();
        std::os::unix::fs::symlink(root.join("demo/v"), root.join("demo/v2")).unwrap();
        fs::write(root.join("demo/v/3.m4s"), "media").unwrap();

        let library = Library::open(&root).unwrap();
        let seg = MediaPath::parse("/vod/demo/v/1.m4s").unwrap();
        assert!(matches!(
            library.open_media(&seg),
            Err(ResolveError::Escapes { .. })
        ));
        let leak = MediaPath::parse("/vod/leak/manifest.mpd").unwrap();
        assert!(matches!(
            library.open_media(&leak),
            Err(ResolveError::Escapes { .. })
        ));
        let out = MediaPath::parse("/vod/demo/out/1.m4s").unwrap();
        assert!(matches!(
            library.open_media(&out),
            Err(ResolveError::Escapes { .. })
        ));
        let alias = MediaPath::parse("/vod/alias/manifest.mpd").unwrap();
        assert!(library.open_media(&alias).is_ok());
        let deep_alias = MediaPath::parse("/vod/demo/v2/3.m4s").unwrap();
        assert_eq!(
            library.resolve(&deep_alias).unwrap(),
            library.root().join("demo/v/3.m4s")
        );
        // Without symlinks, the resolved path is the joined one.
        let plain = MediaPath::parse("/vod/demo/v/3.m4s").unwrap();
        assert_eq!(
            library.resolve(&plain).unwrap(),
            library.root().join("demo/v/3.m4s")
        );
        let missing = MediaPath::parse("/vod/demo/v/2.m4s").unwrap();
        assert!(matches!(
            library.open_media(&missing),
            Err(ResolveError::NotFound)
        ));
        // A directory where a file is expected is not found, not an error.
        let dir = MediaPath::parse("/vod/demo/v/init.mp4").unwrap();
        fs::create_dir(root.join("demo/v/init.mp4")).unwrap();
        assert!(matches!(
            library.open_media(&dir),
            Err(ResolveError::NotFound)
        ));

        let names: Vec<_> = library
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["alias", "demo"]);
    }

    #[test]
    fn listing_skips_temp_dirs_and_non_assets() {
        let dir = tempfile::tempdir().unwrap();
        for asset in ["b", "a", ".tmp-123"] {
            fs::create_dir(dir.path().join(asset)).unwrap();
            fs::write(dir.path().join(asset).join(MANIFEST_FILE), "<MPD/>").unwrap();
        }
        summary("a").write_to(&dir.path().join("a")).unwrap();
        fs::create_dir(dir.path().join("no-manifest")).unwrap();
        fs::write(dir.path().join("stray.txt"), "x").unwrap();

        let library = Library::open(dir.path()).unwrap();
        let list = library.list().unwrap();
        let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(list[0].duration_secs, Some(10.0));
        assert_eq!(list[0].manifest, "/vod/a/manifest.mpd");
        assert_eq!(list[1].representations, None);
    }

    #[test]
    fn open_names_a_missing_root() {
        let err = Library::open("/definitely/not/here").unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }
}
