//! The small-file cache: MPDs and init segments kept in memory for a second, so the
//! requests every player makes most often skip the blocking pool and the disk entirely.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use tokio::time::Instant;

use super::FileMeta;
use crate::library::MediaPath;

/// Files up to this size are read whole and kept in [`SmallFiles`]: MPDs (even long
/// SegmentTimeline ones) and init segments, never media segments.
pub(super) const SMALL_FILE_LIMIT: u64 = 256 * 1024;
/// Memory the [`SmallFiles`] cache may hold.
const SMALL_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// How long a cached small file is served without looking at the disk again.
const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

/// A whole small file (an MPD, an init segment) kept in memory.
pub(super) struct SmallFile {
    pub(super) meta: FileMeta,
    pub(super) bytes: Bytes,
    /// When it was read; [`REVALIDATE_AFTER`] later the next request reads it again.
    loaded: Instant,
}

impl SmallFile {
    /// A file read just now.
    pub(super) fn new(meta: FileMeta, bytes: Bytes) -> SmallFile {
        SmallFile {
            meta,
            bytes,
            loaded: Instant::now(),
        }
    }
}

/// Recently read small files, so the requests every player makes most often (the MPD,
/// init segments) are answered without a trip to the blocking pool and four syscalls.
///
/// Entries are trusted for [`REVALIDATE_AFTER`], like nginx's `open_file_cache_valid`:
/// a re-packaged or deleted asset is noticed within that, well inside the MPD's own
/// max-age. Only paths that resolved inside the library are ever inserted, and at most
/// [`SMALL_CACHE_BYTES`] are held: when full, it starts over.
#[derive(Default)]
pub(super) struct SmallFiles {
    inner: RwLock<SmallFilesInner>,
}

#[derive(Default)]
struct SmallFilesInner {
    files: HashMap<MediaPath, Arc<SmallFile>>,
    bytes: usize,
}

impl SmallFiles {
    pub(super) fn fresh(&self, media: &MediaPath) -> Option<Arc<SmallFile>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let small = inner.files.get(media)?;
        (small.loaded.elapsed() < REVALIDATE_AFTER).then(|| Arc::clone(small))
    }

    pub(super) fn remember(&self, media: MediaPath, small: Arc<SmallFile>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let len = small.bytes.len();
        if inner.bytes + len > SMALL_CACHE_BYTES {
            inner.files.clear();
            inner.bytes = 0;
        }
        inner.bytes += len;
        if let Some(old) = inner.files.insert(media, small) {
            inner.bytes -= old.bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{body, fixture, get};
    use axum::http::StatusCode;
    use std::fs;

    #[tokio::test(start_paused = true)]
    async fn small_files_are_cached_for_a_second() {
        let (dir, state) = fixture();
        let uri = "/vod/demo/manifest.mpd";
        assert_eq!(body(get(&state, uri, &[]).await).await, b"<MPD/>");
        fs::write(dir.path().join("demo/manifest.mpd"), "<MPD v2/>").unwrap();
        assert_eq!(body(get(&state, uri, &[]).await).await, b"<MPD/>");
        // Ranges and conditionals are answered from the cached copy too.
        let response = get(&state, uri, &[("range", "bytes=1-3")]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body(response).await, b"MPD");

        tokio::time::advance(REVALIDATE_AFTER).await;
        assert_eq!(body(get(&state, uri, &[]).await).await, b"<MPD v2/>");
        fs::remove_file(dir.path().join("demo/manifest.mpd")).unwrap();
        tokio::time::advance(REVALIDATE_AFTER).await;
        assert_eq!(get(&state, uri, &[]).await.status(), StatusCode::NOT_FOUND);
    }
}
