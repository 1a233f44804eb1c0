//! Checks on a query's raw bytes that the parsed form cannot answer: hickory's decoder
//! accepts a question name that points into the header and ignores surplus ECS address
//! octets, and a message it refuses to parse still deserves an OPT in the FORMERR when
//! it carried one (RFC 6891 §7).
//!
//! Only the wire format is read here (RFC 1035 §4.1): no allocation, no names decoded.

/// RR type of the EDNS OPT pseudo-record (RFC 6891 §6.1.1).
const OPT: u16 = 41;
/// EDNS option code of Client Subnet (RFC 7871 §6).
const ECS: u16 = 8;

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Skips the name at `at`; returns where it ends and whether it used a pointer.
fn skip_name(p: &[u8], mut at: usize) -> Option<(usize, bool)> {
    loop {
        let len = *p.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some((at + 1, false)),
            0x00 => at += 1 + usize::from(len),
            0xC0 => {
                p.get(at + 1)?;
                return Some((at + 2, true));
            }
            // 0x40 and 0x80: extended label types, obsolete (RFC 6891 §5).
            _ => return None,
        }
    }
}

/// The first question's name holds a compression pointer. A pointer may only refer to an
/// earlier occurrence of a name (RFC 1035 §4.1.4); before the first question there is
/// only the header, so such a name points into the header. Echoed back it would point
/// at the response's flags: the reply would be unparsable. Answer FORMERR instead.
pub(crate) fn question_points_back(p: &[u8]) -> bool {
    if u16_at(p, 4).unwrap_or(0) == 0 {
        return false;
    }
    matches!(skip_name(p, 12), Some((_, true)))
}

/// Where the first question ends (header + name + type + class), if it is there.
pub(crate) fn question_end(p: &[u8]) -> Option<usize> {
    if u16_at(p, 4)? == 0 {
        return None;
    }
    let end = skip_name(p, 12)?.0 + 4;
    (end <= p.len()).then_some(end)
}

/// What the OPT record of a query says, read from its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawOpt {
    /// The DO bit (RFC 3225 §3), copied into every response.
    pub(crate) dnssec_ok: bool,
    /// An ECS option whose ADDRESS is not exactly the octets SOURCE PREFIX-LENGTH needs.
    pub(crate) ecs_bad_length: bool,
    /// The SOURCE PREFIX-LENGTH of the ECS option, if there is one (0 if there are two).
    pub(crate) ecs_source: Option<u8>,
    /// Where the whole OPT record lies in the message.
    pub(crate) range: (usize, usize),
}

/// Finds the OPT record in the additional section, if the message is readable that far.
pub(crate) fn find_opt(p: &[u8]) -> Option<RawOpt> {
    let qd = u16_at(p, 4)?;
    let an = u16_at(p, 6)?;
    let ns = u16_at(p, 8)?;
    let ar = u16_at(p, 10)?;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at)?.0 + 4;
    }
    for i in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let start = at;
        at = skip_name(p, at)?.0;
        let rtype = u16_at(p, at)?;
        let rdlen = usize::from(u16_at(p, at + 8)?);
        let rdata = at + 10;
        let end = rdata + rdlen;
        if end > p.len() {
            return None;
        }
        if rtype == OPT && i >= u32::from(an) + u32::from(ns) {
            let mut opt = RawOpt {
                // TTL of OPT: extended RCODE, version, then DO and Z.
                dnssec_ok: u16_at(p, at + 6)? & 0x8000 != 0,
                ecs_bad_length: false,
                ecs_source: None,
                range: (start, end),
            };
            let mut o = rdata;
            while o + 4 <= end {
                let code = u16_at(p, o)?;
                let len = usize::from(u16_at(p, o + 2)?);
                if code == ECS && len >= 4 {
                    let source = usize::from(*p.get(o + 6)?);
                    opt.ecs_bad_length = len != 4 + source.div_ceil(8);
                    // Two ECS options: report 0, so no cache key leaves the source out.
                    opt.ecs_source = match opt.ecs_source {
                        None => u8::try_from(source).ok(),
                        Some(_) => Some(0),
                    };
                }
                o += 4 + len;
            }
            return Some(opt);
        }
        at = end;
    }
    None
}

/// The smallest TTL in the answer and authority sections (RFC 8484 §5.1 bounds a DoH
/// response's freshness by it); `None` when they are empty or cannot be read.
pub(crate) fn min_ttl(p: &[u8]) -> Option<u32> {
    let qd = u16_at(p, 4)?;
    let records = u32::from(u16_at(p, 6)?) + u32::from(u16_at(p, 8)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at)?.0 + 4;
    }
    let mut min: Option<u32> = None;
    for _ in 0..records {
        at = skip_name(p, at)?.0;
        let ttl = u32::from(u16_at(p, at + 4)?) << 16 | u32::from(u16_at(p, at + 6)?);
        let end = at + 10 + usize::from(u16_at(p, at + 8)?);
        if end > p.len() {
            return None;
        }
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
        at = end;
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_question_pointing_into_the_header_is_caught() {
        // The packet found by fuzzing: QDCOUNT 1, name = pointer to offset 2.
        assert!(question_points_back(&hex(
            "000a00000001000000000000c00200060001"
        )));
        // www.a.test A IN: no pointer.
        let ok = hex("00010000000100000000000003777777016104746573740000010001");
        assert!(!question_points_back(&ok));
        assert_eq!(find_opt(&ok), None);
    }

    #[test]
    fn opt_do_bit_and_ecs_length_are_read() {
        // a.test A, OPT payload 1232, DO, ECS family 1 /24 with 4 address octets (one too many).
        let q = "00010000000100000000000101610474657374000001000100\
                 002904d000008000000c\
                 0008000800011800510245a0";
        let opt = find_opt(&hex(q)).unwrap();
        assert!(opt.dnssec_ok);
        assert!(opt.ecs_bad_length);
        assert_eq!(opt.ecs_source, Some(24));
        let exact = "00010000000100000000000101610474657374000001000100\
                     002904d000000000000b\
                     0008000700011800510245";
        let opt = find_opt(&hex(exact)).unwrap();
        assert!(!opt.dnssec_ok);
        assert!(!opt.ecs_bad_length);
    }

    #[test]
    fn min_ttl_reads_answer_and_authority_not_additional() {
        // a.test A: answer a.test 30 A 127.0.0.1 (name by pointer), authority a.test 20 A,
        // additional OPT (its "TTL" is flags, large, and must not count).
        let r = "000181000001000100010001016104746573740000010001\
                 c00c00010001\
                 0000001e00047f000001\
                 c00c00010001000000140004\
                 7f000002\
                 00002904d0ffffffff0000";
        assert_eq!(min_ttl(&hex(r)), Some(20));
        // No records: no TTL; a record cut short: unreadable.
        assert_eq!(
            min_ttl(&hex("00018100000100000000000001610474657374000001000100")[..]),
            None
        );
        assert_eq!(min_ttl(&hex(&r[..r.len() - 30])), None);
    }
}
