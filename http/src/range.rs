//! `Range` requests (RFC 9110 §14): a `Range` header read against a representation's
//! length, and the `Content-Range` values of the answer.
//!
//! What is served:
//! - one satisfiable byte range → 206 with `Content-Range: bytes first-last/len`;
//! - several ranges whose satisfiable parts coalesce into one → 206 for that one range;
//! - several disjoint satisfiable ranges → the whole representation (200). §14.2 lets a
//!   server ignore Range; `multipart/byteranges` would cost a part header per range that
//!   no DASH player ever asks for, and both origin and edge answer the same way;
//! - no satisfiable range at all → 416 with `Content-Range: bytes */len` (§15.5.17);
//! - another unit, a syntax error anywhere, or more than [`MAX_RANGES`] elements → the
//!   whole representation, as §14.2 allows ("A server MAY ignore the Range header field").
//!
//! Why not `headers::Range`: it matches the unit case-sensitively (`bytes=` only, while
//! §14.1 says "range units are compared case-insensitively"), rejects the empty list
//! elements that the `#rule` syntax of §5.6.1 tells recipients to tolerate
//! (`bytes=0-99,`), and folds "unsatisfiable" into "invalid", so it cannot tell a 416
//! from a header to ignore.

use http::HeaderValue;

/// Beyond this many range elements the header is ignored: a request for many small
/// ranges is a classic amplification trick (§14.2 lets a server ignore or refuse it).
pub const MAX_RANGES: usize = 64;

/// An inclusive byte range within a representation, like `Content-Range`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// How many bytes it covers.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range covers at least one byte. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `Content-Range: bytes first-last/complete` of a 206 (§14.4).
    pub fn content_range(&self, complete: u64) -> HeaderValue {
        HeaderValue::try_from(format!("bytes {}-{}/{complete}", self.first, self.last))
            .expect("digits are a valid header value")
    }

    /// As a half-open `start..end` pair, for slicing.
    pub fn as_span(&self) -> std::ops::Range<u64> {
        self.first..self.last + 1
    }
}

/// `Content-Range: bytes */complete` of a 416 (§14.4, §15.5.17).
pub fn unsatisfied_content_range(complete: u64) -> HeaderValue {
    HeaderValue::try_from(format!("bytes */{complete}")).expect("digits are a valid header value")
}

/// What a `Range` header asks of a representation of a known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// Serve the whole representation: not a byte range we serve (see the module doc).
    Ignore,
    /// 416: none of the ranges overlaps the representation.
    Unsatisfiable,
    /// 206 with this one range.
    Single(ByteRange),
}

/// One `range-spec` of §14.1.1, before it meets a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    Int { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl Spec {
    fn parse(s: &str) -> Option<Spec> {
        let (first, last) = s.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            return Some(Spec::Suffix(digits(last)?));
        }
        let first = digits(first)?;
        let last = if last.is_empty() {
            None
        } else {
            // §14.1.1: "A client MUST NOT generate … a last-pos value less than its
            // first-pos": such a set is invalid, hence ignored.
            Some(digits(last).filter(|&l| l >= first)?)
        };
        Some(Spec::Int { first, last })
    }

    /// §14.1.1's satisfiability against `len`, clamped to the representation.
    fn against(self, len: u64) -> Option<ByteRange> {
        match self {
            // "a suffix-range is satisfiable if the suffix-length is non-zero" (and
            // there is something to take it from).
            Spec::Suffix(0) => None,
            Spec::Suffix(_) if len == 0 => None,
            Spec::Suffix(n) => Some(ByteRange {
                first: len - n.min(len),
                last: len - 1,
            }),
            // "an int-range is satisfiable if the first-pos is less than the current
            // length of the selected representation".
            Spec::Int { first, .. } if first >= len => None,
            Spec::Int { first, last } => Some(ByteRange {
                first,
                last: last.map_or(len - 1, |l| l.min(len - 1)),
            }),
        }
    }
}

/// Reads a `Range` field value against a representation of `len` bytes.
pub fn parse(value: &str, len: u64) -> RangeAsk {
    let value = value.trim();
    let Some((unit, set)) = value.split_once('=') else {
        return RangeAsk::Ignore;
    };
    // §14.1: "range units are compared case-insensitively".
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAsk::Ignore;
    }
    // §5.6.1: "a recipient MUST accept lists that contain empty elements" (`bytes=0-1,`).
    let mut specs = Vec::new();
    for element in set.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if specs.len() == MAX_RANGES {
            return RangeAsk::Ignore;
        }
        match Spec::parse(element) {
            Some(spec) => specs.push(spec),
            None => return RangeAsk::Ignore,
        }
    }
    if specs.is_empty() {
        return RangeAsk::Ignore;
    }
    let mut ranges: Vec<ByteRange> = specs.into_iter().filter_map(|s| s.against(len)).collect();
    if ranges.is_empty() {
        return RangeAsk::Unsatisfiable;
    }
    // Coalesce overlapping and adjacent ranges (§14.2 lets a server do so).
    ranges.sort_by_key(|r| r.first);
    let mut merged = ranges[0];
    for r in &ranges[1..] {
        if r.first > merged.last.saturating_add(1) {
            return RangeAsk::Ignore;
        }
        merged.last = merged.last.max(r.last);
    }
    RangeAsk::Single(merged)
}

/// `1*DIGIT`, saturating: a position beyond u64 is as unsatisfiable as any past the end.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::RangeAsk::{Ignore, Single, Unsatisfiable};
    use super::*;

    fn r(first: u64, last: u64) -> RangeAsk {
        Single(ByteRange { first, last })
    }

    #[test]
    fn table() {
        let huge = "99999999999999999999999";
        let cases: &[(&str, u64, RangeAsk)] = &[
            ("bytes=0-99", 1000, r(0, 99)),
            ("bytes=10-19", 1000, r(10, 19)),
            ("bytes=990-", 1000, r(990, 999)),
            ("bytes=-5", 1000, r(995, 999)),
            ("bytes=-5000", 1000, r(0, 999)),
            ("bytes=500-99999", 1000, r(500, 999)),
            ("bytes=0-999", 1000, r(0, 999)),
            // §14.1: the unit is case-insensitive.
            ("Bytes=0-99", 1000, r(0, 99)),
            ("BYTES=0-0", 1000, r(0, 0)),
            // §5.6.1: empty list elements and optional whitespace.
            ("bytes=0-99,", 1000, r(0, 99)),
            ("bytes=,0-99", 1000, r(0, 99)),
            ("bytes= 1-2 ", 10, r(1, 2)),
            ("bytes=1 - 2", 10, r(1, 2)),
            // Several ranges: coalesced when they touch or overlap, else the whole file.
            ("bytes=0-9,10-19", 1000, r(0, 19)),
            ("bytes=5-9,0-6", 1000, r(0, 9)),
            ("bytes=0-1,5-6", 1000, Ignore),
            // Only the satisfiable ones count.
            ("bytes=0-1,5000-6000", 1000, r(0, 1)),
            ("bytes=1000-,2000-", 1000, Unsatisfiable),
            // Unsatisfiable: §14.1.1.
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=5000-6000", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            (&format!("bytes={huge}-"), 10, Unsatisfiable),
            (&format!("bytes=0-{huge}"), 10, r(0, 9)),
            // Ignored: other units, syntax errors, last < first.
            ("items=0-1", 1000, Ignore),
            ("bytes=9-1", 1000, Ignore),
            ("bytes=x-", 1000, Ignore),
            ("bytes=0-1,x", 1000, Ignore),
            ("bytes=", 1000, Ignore),
            ("bytes=-", 1000, Ignore),
            ("bytes=,", 1000, Ignore),
            ("byte", 1000, Ignore),
            ("bytes 0-1", 1000, Ignore),
            ("bytes=+1-2", 1000, Ignore),
        ];
        for (value, len, want) in cases {
            assert_eq!(parse(value, *len), *want, "{value} against {len}");
        }
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let many: Vec<String> = (0..=MAX_RANGES).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(parse(&format!("bytes={}", many.join(",")), 1000), Ignore);
        let few = &many[..MAX_RANGES];
        assert_eq!(parse(&format!("bytes={}", few.join(",")), 1000), r(0, 63));
    }

    #[test]
    fn content_range_values() {
        let range = ByteRange { first: 0, last: 99 };
        assert_eq!(range.len(), 100);
        assert_eq!(range.as_span(), 0..100);
        assert_eq!(range.content_range(1000), "bytes 0-99/1000");
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
    }
}
