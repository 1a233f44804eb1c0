//! `Range` requests (RFC 9110 §14): a `bytes=` header read against a file's length.
//!
//! Only single byte ranges are served as 206; anything else is answered with the whole
//! file, which §14.2 allows. Whether a Range applies at all (HEAD, `If-Range`) is decided
//! with the other preconditions in [`crate::conditional`].

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Not a single byte range we understand: serve the whole representation, which
    /// §14.2 allows ("A server MAY ignore the Range header field"). Multi-range requests
    /// land here too; players never send them.
    Ignore,
    Unsatisfiable,
    Single {
        first: u64,
        last: u64,
    },
}

/// Parses `Range: bytes=first-last | first- | -suffix` against a representation of `len`.
pub(crate) fn parse_range(header: &str, len: u64) -> RangeSpec {
    let header = header.trim();
    // §14.1: range units are case-insensitive.
    let Some(unit) = header.get(..6) else {
        return RangeSpec::Ignore;
    };
    if !unit.eq_ignore_ascii_case("bytes=") {
        return RangeSpec::Ignore;
    }
    let mut specs = header[6..]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeSpec::Ignore;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // suffix-range: the last N bytes.
        let Some(suffix) = parse_digits(last) else {
            return RangeSpec::Ignore;
        };
        if suffix == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Single {
            first: len - suffix.min(len),
            last: len - 1,
        };
    }
    let Some(first) = parse_digits(first) else {
        return RangeSpec::Ignore;
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match parse_digits(last) {
            Some(last) if last >= first => last,
            _ => return RangeSpec::Ignore,
        }
    };
    // §14.1.1: satisfiable iff first-pos < length.
    if first >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Single {
        first,
        last: last.min(len - 1),
    }
}

/// 1*DIGIT, saturating: a position beyond u64 is as unsatisfiable as any past the end.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{body, fixture, get, header, segment_bytes, SEGMENT_LEN};
    use axum::http::StatusCode;

    #[tokio::test]
    async fn ranges() {
        let (_dir, state) = fixture();
        let all = segment_bytes();
        let uri = "/vod/demo/v0/1.m4s";
        for (range, first, last) in [
            ("bytes=10-19", 10, 19),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=-5000", 0, 999),
            ("bytes=500-99999", 500, 999),
            ("BYTES=0-0", 0, 0),
        ] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                header(&response, "content-range"),
                format!("bytes {first}-{last}/1000"),
                "{range}"
            );
            assert_eq!(
                header(&response, "content-length"),
                (last - first + 1).to_string()
            );
            assert_eq!(body(response).await, &all[first..=last], "{range}");
        }
        for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(
                response.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{range}"
            );
            assert_eq!(header(&response, "content-range"), "bytes */1000");
        }
        // Ignored: multiple ranges, other units, nonsense.
        for range in ["bytes=0-1,5-6", "items=0-1", "bytes=9-1", "bytes=x-"] {
            let response = get(&state, uri, &[("range", range)]).await;
            assert_eq!(response.status(), StatusCode::OK, "{range}");
            assert_eq!(body(response).await.len(), SEGMENT_LEN);
        }
    }

    #[test]
    fn range_edge_cases() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes= 1-2 ", 10), Single { first: 1, last: 2 });
        assert_eq!(parse_range("bytes=1-2,", 10), Single { first: 1, last: 2 });
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            Single { first: 0, last: 9 }
        );
        assert_eq!(parse_range("bytes=", 10), Ignore);
        assert_eq!(parse_range("bytes=-", 10), Ignore);
        assert_eq!(parse_range("byte", 10), Ignore);
    }
}
