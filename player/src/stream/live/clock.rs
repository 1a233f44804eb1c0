//! The server's wall clock, from the MPD's `UTCTiming` (ISO/IEC 23009-1 §5.8.4.11,
//! DASH-IF IOP §4.7): live latency and segment availability are reckoned on the
//! packager's clock, and a viewer's clock can be seconds off.
//!
//! Schemes read: `http-iso` / `http-xsdate` (GET, the body is an ISO 8601 time; the
//! origin's `/time`), `http-head` (the `Date` header, 1 s resolution) and `direct` (the
//! time is the attribute). The offset is the server time minus the midpoint of the
//! request's local send and receive times (NTP's estimate, half the round trip either
//! way). No usable source: the local clock, with a warning.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};
use url::Url;

use super::manifest::LiveManifest;
use crate::mpd::Resource;
use crate::net::Net;

/// Local Unix time, s.
pub(super) fn local_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(s))
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Clock {
    /// Server − local, s.
    pub(super) offset_s: f64,
}

impl Clock {
    /// Server time now, Unix s.
    pub(super) fn now(&self) -> f64 {
        local_unix() + self.offset_s
    }

    /// Synchronises with the first UTCTiming source that answers.
    pub(super) async fn sync(net: &mut Net, man: &LiveManifest, mpd_url: &Url) -> Clock {
        for (scheme, value) in &man.utc_timing {
            let kind = scheme.rsplit(':').nth(1).unwrap_or_default();
            let server = match kind {
                "direct" => parse_time(value).map(|t| (t, local_unix())),
                "http-iso" | "http-xsdate" | "http-head" => {
                    let Ok(url) = mpd_url.join(value) else {
                        continue;
                    };
                    let res = Resource { url, range: None };
                    let sent = local_unix();
                    let Ok(f) = net.fetch(&res, true, |_, _, _, _| false).await else {
                        warn!(%scheme, %value, "UTCTiming source did not answer");
                        continue;
                    };
                    let mid = (sent + local_unix()) / 2.0;
                    let text = if kind == "http-head" {
                        f.date.unwrap_or_default()
                    } else {
                        String::from_utf8_lossy(&f.body.unwrap_or_default()).into_owned()
                    };
                    parse_time(&text).map(|t| (t, mid))
                }
                _ => None,
            };
            if let Some((t, local)) = server {
                let offset_s = t - local;
                debug!(%scheme, offset_s, "clock synchronised");
                return Clock { offset_s };
            }
        }
        if !man.utc_timing.is_empty() {
            warn!("no UTCTiming source could be read; live latency uses the local clock");
        }
        Clock::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_http_dates_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:01.500Z"), Some(1.5));
        assert_eq!(parse_time("Thu, 01 Jan 1970 00:00:10 GMT"), Some(10.0));
        assert_eq!(parse_time("soon"), None);
    }
}
