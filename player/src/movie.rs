//! An MPD as a movie for the ABR lab: the ladder and every segment's size, so a real
//! presentation can be simulated over any trace.
//!
//! Sizes come from byte ranges when the MPD (or its `sidx`) gives them, from the files
//! themselves for a local MPD, and from `HEAD` requests (`Content-Length`) for a remote one.

use std::path::Path;

use url::Url;

use crate::content::Content;
use crate::mpd::{self, Addressing, Presentation, Resource};
use crate::net::{Net, NetConfig};
use crate::stream::PlayerError;

#[derive(Debug, thiserror::Error)]
pub enum MovieError {
    #[error(transparent)]
    Player(#[from] PlayerError),
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: HEAD gave no Content-Length ({detail})")]
    NoLength { url: String, detail: String },
    #[error(transparent)]
    Mpd(#[from] mpd::MpdError),
}

fn local_path(u: &Url) -> Result<std::path::PathBuf, MovieError> {
    u.to_file_path().map_err(|_| MovieError::Io {
        path: u.to_string(),
        source: std::io::Error::other("not a local file URL"),
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MovieError + '_ {
    move |source| MovieError::Io {
        path: path.display().to_string(),
        source,
    }
}

async fn size_of(res: &Resource, client: &reqwest::Client) -> Result<u64, MovieError> {
    if let Some(n) = res.range_len() {
        return Ok(n);
    }
    if res.url.scheme() == "file" {
        let p = local_path(&res.url)?;
        return Ok(std::fs::metadata(&p).map_err(io(&p))?.len());
    }
    let r = client
        .head(res.url.clone())
        .send()
        .await
        .map_err(|e| MovieError::NoLength {
            url: res.url.to_string(),
            detail: e.to_string(),
        })?;
    if !r.status().is_success() {
        return Err(MovieError::NoLength {
            url: res.url.to_string(),
            detail: format!("HTTP {}", r.status()),
        });
    }
    r.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MovieError::NoLength {
            url: res.url.to_string(),
            detail: "no Content-Length header".into(),
        })
}

/// Reads a local or remote MPD into a [`Content`] with real segment sizes.
pub async fn content_from_mpd(movie: &str) -> Result<Content, MovieError> {
    let mut pres: Presentation = if movie.to_ascii_lowercase().starts_with("http://") {
        let mut net = Net::new(NetConfig::default(), None, Vec::new(), None);
        crate::stream::load_presentation(&mut net, movie).await?
    } else {
        let path = std::path::absolute(movie).map_err(io(Path::new(movie)))?;
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let url = Url::from_file_path(&path).map_err(|_| MovieError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other("cannot make a file URL"),
        })?;
        let mut p = mpd::parse(&text, &url)?;
        for (pi, vi) in p.needs_index() {
            let rep = p.rep_mut(pi, vi);
            if let Addressing::Sidx { media, index } = rep.addressing.clone() {
                let fp = local_path(&media)?;
                let data = std::fs::read(&fp).map_err(io(&fp))?;
                let (a, b) = (index.0 as usize, (index.1 as usize + 1).min(data.len()));
                let slice = data.get(a..b).unwrap_or(&[]);
                rep.addressing = Addressing::Segments(mpd::parse_sidx(slice, &media, index)?);
            }
        }
        p.validate()?;
        p
    };
    let client = reqwest::Client::new();
    let mut sizes = Vec::new();
    for (pi, si) in pres.video_segments() {
        let mut row = Vec::new();
        for r in &pres.periods[pi].video {
            row.push(size_of(&r.segments()[si].resource, &client).await? as f64 * 8.0);
        }
        sizes.push(row);
    }
    let mut c = pres.content();
    c.sizes_bits = Some(sizes);
    pres.periods.clear();
    Ok(c)
}
