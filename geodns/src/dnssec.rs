//! DNSSEC online signing: keys from files, RRSIGs made per answer and cached, compact
//! denial of existence.
//!
//! **Keys.** `dashcdn geodns keygen --zone Z` writes `K<zone>+<alg>+<tag>.pk8` (PKCS#8)
//! into the key folder and prints the DS record for the parent. Every key of a zone in
//! the folder is published in its DNSKEY RRset (with CDS/CDNSKEY for parents that read
//! them, RFC 7344) and signs: each key is a combined signing key (flags 257). A rollover
//! is the double-signature method: add the new key, wait for the DNSKEY TTL, give the
//! parent the new DS, wait for the DS TTL, remove the old key file, reload (SIGHUP).
//!
//! **Signatures** are made when a query has the DO bit, per RRset of the answer, because
//! geo answers are computed per query. They are cached per (owner, type, RDATA of the
//! set, key): the PoP answers repeat, so each is signed once per validity period, not per
//! query. Validity: inception one hour back (clock skew), expiration [`VALIDITY`] later;
//! a cached signature is used for half its validity at most.
//!
//! **Denial: compact answers** ("black lies", RFC 9824). A name that does not exist is
//! answered NOERROR with one NSEC at the name whose next name is `\000.name` and whose
//! bitmap holds only NSEC, RRSIG and NXNAME; a missing type gets an NSEC at the name
//! listing the types it has. Why this and not NSEC3 white lies: one NSEC and one
//! signature per negative answer (NSEC3 needs two or three, plus hashing), nothing to
//! walk (the NSEC covers only the name asked), and no zone-wide ordering to compute for
//! names that are answered per query anyway. The price: a validator sees NXDOMAIN as
//! NODATA; RFC 9824's NXNAME type in the bitmap tells resolvers that know it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::rdata::{DNSSECRData, CDNSKEY, CDS, DNSKEY, DS, NSEC, RRSIG};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKey, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use rustls_pki_types::PrivatePkcs8KeyDer;
use thiserror::Error;

/// How long a signature is valid.
pub(crate) const VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// Signatures start this far back, for validators whose clocks are behind.
const INCEPTION_OFFSET: Duration = Duration::from_secs(3600);
/// Cached signatures (a full cache is emptied: the hot set refills it at once).
const CACHE_ENTRIES: usize = 16_384;
/// RFC 9824 §2: the NXNAME meta type marks a name that does not exist.
pub(crate) const NXNAME: RecordType = RecordType::Unknown(128);

/// A key folder or file that cannot be used.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("DNSSEC key {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("DNSSEC key folder {path} cannot be read")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The algorithms `keygen` makes (RFC 8624 recommends both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    Ecdsap256sha256,
    Ed25519,
}

impl KeyAlgorithm {
    fn dnssec(self) -> Algorithm {
        match self {
            KeyAlgorithm::Ecdsap256sha256 => Algorithm::ECDSAP256SHA256,
            KeyAlgorithm::Ed25519 => Algorithm::ED25519,
        }
    }
}

struct Key {
    signing: Box<dyn SigningKey>,
    dnskey: DNSKEY,
    tag: u16,
}

/// The keys of one zone.
pub(crate) struct ZoneKeys {
    apex: Name,
    keys: Vec<Key>,
}

impl ZoneKeys {
    pub(crate) fn apex(&self) -> &Name {
        &self.apex
    }

    /// DNSKEY, CDNSKEY and CDS records of the apex, with `ttl`.
    pub(crate) fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let mut out = Vec::new();
        for k in &self.keys {
            let pk = k.dnskey.public_key();
            out.push(Record::from_rdata(
                self.apex.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
            ));
            out.push(Record::from_rdata(
                self.apex.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::CDNSKEY(CDNSKEY::new(
                    true,
                    true,
                    false,
                    Some(pk.algorithm()),
                    pk.public_bytes().to_vec(),
                ))),
            ));
            if let Ok(ds) = ds_of(&k.dnskey, &self.apex) {
                out.push(Record::from_rdata(
                    self.apex.clone(),
                    ttl,
                    RData::DNSSEC(DNSSECRData::CDS(CDS::new(
                        ds.key_tag(),
                        Some(ds.algorithm()),
                        ds.digest_type(),
                        ds.digest().to_vec(),
                    ))),
                ));
            }
        }
        out
    }
}

fn ds_of(dnskey: &DNSKEY, apex: &Name) -> Result<DS, String> {
    let digest = dnskey
        .to_digest(apex, DigestType::SHA256)
        .map_err(|e| e.to_string())?;
    let tag = dnskey.calculate_key_tag().map_err(|e| e.to_string())?;
    Ok(DS::new(
        tag,
        dnskey.public_key().algorithm(),
        DigestType::SHA256,
        digest.as_ref().to_vec(),
    ))
}

/// `kingcdn.test.` → `Kkingcdn.test.+013+12345.pk8`
fn file_name(apex: &Name, alg: Algorithm, tag: u16) -> String {
    format!("K{}+{:03}+{tag:05}.pk8", apex.to_ascii(), u8::from(alg))
}

fn load_key(path: &Path, der: Vec<u8>, alg: u8) -> Result<Key, KeyError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(der);
    let signing: Box<dyn SigningKey> = match Algorithm::from_u8(alg) {
        Algorithm::ECDSAP256SHA256 => Box::new(
            EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256)
                .map_err(|e| file_error(path, e))?,
        ),
        Algorithm::ED25519 => {
            Box::new(Ed25519SigningKey::from_pkcs8(&pkcs8).map_err(|e| file_error(path, e))?)
        }
        other => {
            return Err(file_error(
                path,
                format!("algorithm {other} is not one keygen makes"),
            ))
        }
    };
    let public = signing.to_public_key().map_err(|e| file_error(path, e))?;
    let dnskey = DNSKEY::with_flags(257, public);
    let tag = dnskey
        .calculate_key_tag()
        .map_err(|e| file_error(path, e))?;
    Ok(Key {
        signing,
        dnskey,
        tag,
    })
}

/// Reads the keys of `apexes` from `dir` (blocking file I/O). A zone without key files
/// is served unsigned.
pub(crate) fn load(dir: &Path, apexes: &[Name]) -> Result<Vec<ZoneKeys>, KeyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KeyError::Folder {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let mut zones: Vec<ZoneKeys> = apexes
        .iter()
        .map(|a| ZoneKeys {
            apex: a.clone(),
            keys: Vec::new(),
        })
        .collect();
    for path in files {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_prefix('K').and_then(|n| n.strip_suffix(".pk8")) else {
            continue;
        };
        let mut parts = stem.rsplitn(3, '+');
        let (Some(_tag), Some(alg), Some(zone)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(file_error(&path, "name is not K<zone>+<alg>+<tag>.pk8"));
        };
        let alg: u8 = alg
            .parse()
            .map_err(|_| file_error(&path, "name is not K<zone>+<alg>+<tag>.pk8"))?;
        let Some(z) = zones
            .iter_mut()
            .find(|z| z.apex.to_ascii().eq_ignore_ascii_case(zone))
        else {
            continue; // a key for a zone this config does not serve
        };
        let der = std::fs::read(&path).map_err(|e| file_error(&path, e))?;
        z.keys.push(load_key(&path, der, alg)?);
    }
    Ok(zones.into_iter().filter(|z| !z.keys.is_empty()).collect())
}

/// `keygen`: writes a new key for `zone` into `dir`; returns the file and the DS and
/// DNSKEY records (presentation format) to give the parent / a trust anchor.
pub fn keygen(
    zone: &str,
    algorithm: KeyAlgorithm,
    dir: &Path,
) -> Result<(PathBuf, String, String), KeyError> {
    let apex = Name::from_ascii(format!("{}.", zone.trim_end_matches('.')))
        .map_err(|e| file_error(dir, format!("zone {zone:?} is not a name ({e})")))?
        .to_lowercase();
    let alg = algorithm.dnssec();
    let der = match algorithm {
        KeyAlgorithm::Ecdsap256sha256 => EcdsaSigningKey::generate_pkcs8(alg),
        KeyAlgorithm::Ed25519 => Ed25519SigningKey::generate_pkcs8(),
    }
    .map_err(|e| file_error(dir, e))?;
    let der = der.secret_pkcs8_der().to_vec();
    let key = load_key(dir, der.clone(), u8::from(alg))?;
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let path = dir.join(file_name(&apex, alg, key.tag));
    write_private(&path, &der).map_err(|e| file_error(&path, e))?;
    let ds = ds_of(&key.dnskey, &apex).map_err(|e| file_error(&path, e))?;
    let ds_line = format!(
        "{} 3600 IN DS {} {} 2 {}",
        apex,
        ds.key_tag(),
        u8::from(ds.algorithm()),
        data_encoding::HEXUPPER.encode(ds.digest())
    );
    let dnskey_line = format!(
        "{} 3600 IN DNSKEY 257 3 {} {}",
        apex,
        u8::from(alg),
        data_encoding::BASE64.encode(key.dnskey.public_key().public_bytes())
    );
    Ok((path, ds_line, dnskey_line))
}

#[cfg(unix)]
fn write_private(path: &Path, der: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(der)
}

#[cfg(not(unix))]
fn write_private(path: &Path, der: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, der)
}

struct Cached {
    made: SystemTime,
    sigs: Arc<[Record]>,
}

/// Signs answers of the zones that have keys; one per config generation.
pub(crate) struct Signer {
    zones: Vec<(LowerName, ZoneKeys)>,
    hasher: std::hash::RandomState,
    cache: Mutex<HashMap<u64, Cached>>,
}

impl Signer {
    pub(crate) fn new(zones: Vec<ZoneKeys>) -> Signer {
        Signer {
            zones: zones
                .into_iter()
                .map(|z| (LowerName::new(&z.apex), z))
                .collect(),
            hasher: std::hash::RandomState::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether answers about `owner` are signed.
    pub(crate) fn signs(&self, owner: &Name) -> bool {
        self.keys_for(owner).is_some()
    }

    fn keys_for(&self, owner: &Name) -> Option<&ZoneKeys> {
        let owner = LowerName::new(owner);
        self.zones
            .iter()
            .filter(|(a, _)| a.zone_of(&owner))
            .max_by_key(|(a, _)| a.num_labels())
            .map(|(_, z)| z)
    }

    /// RRSIGs over `rrset` (records of one owner and type), one per key of its zone;
    /// empty when the zone is unsigned.
    pub(crate) fn sign(&self, rrset: &[&Record]) -> Arc<[Record]> {
        let Some(first) = rrset.first() else {
            return Arc::from([]);
        };
        let Some(zone) = self.keys_for(&first.name) else {
            return Arc::from([]);
        };
        let now = SystemTime::now();
        let key = self.cache_key(rrset);
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(&key) {
                if now.duration_since(c.made).unwrap_or_default() < VALIDITY / 2 {
                    return c.sigs.clone();
                }
            }
        }
        let sigs: Arc<[Record]> = zone
            .keys
            .iter()
            .filter_map(|k| sign_with(zone, k, rrset, now))
            .collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            key,
            Cached {
                made: now,
                sigs: sigs.clone(),
            },
        );
        sigs
    }

    fn cache_key(&self, rrset: &[&Record]) -> u64 {
        let mut h = self.hasher.build_hasher();
        let mut buf = Vec::with_capacity(64);
        for r in rrset {
            buf.clear();
            let mut enc = BinEncoder::new(&mut buf);
            let _ = r.emit(&mut enc);
            LowerName::new(&r.name).hash(&mut h);
            buf.hash(&mut h);
        }
        h.finish()
    }
}

fn sign_with(zone: &ZoneKeys, key: &Key, rrset: &[&Record], now: SystemTime) -> Option<Record> {
    let first = rrset[0];
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as u32;
    let input = SigInput {
        type_covered: first.record_type(),
        algorithm: key.signing.algorithm(),
        num_labels: first.name.num_labels(),
        original_ttl: first.ttl,
        sig_expiration: SerialNumber::new(secs(now + VALIDITY)),
        sig_inception: SerialNumber::new(secs(now - INCEPTION_OFFSET)),
        key_tag: key.tag,
        signer_name: zone.apex.clone(),
    };
    let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, rrset.iter().copied()).ok()?;
    let sig = match key.signing.sign(&tbs) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, owner = %first.name, "cannot sign");
            return None;
        }
    };
    Some(Record::from_rdata(
        first.name.clone(),
        first.ttl,
        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
    ))
}

/// The compact-denial NSEC for `name` (RFC 9824): `types` it has, or NXNAME when it does
/// not exist at all.
pub(crate) fn nsec(name: &Name, ttl: u32, types: &[RecordType], exists: bool) -> Option<Record> {
    let next = name.prepend_label(&b"\x00"[..]).ok()?;
    let mut set: Vec<RecordType> = vec![RecordType::NSEC, RecordType::RRSIG];
    if exists {
        set.extend_from_slice(types);
    } else {
        set.push(NXNAME);
    }
    Some(Record::from_rdata(
        name.clone(),
        ttl,
        RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, set))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_key_that_loads_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [KeyAlgorithm::Ecdsap256sha256, KeyAlgorithm::Ed25519] {
            let (path, ds, dnskey) = keygen("Kingcdn.test", alg, dir.path()).unwrap();
            assert!(path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Kkingcdn.test.+"));
            assert!(ds.starts_with("kingcdn.test. 3600 IN DS "), "{ds}");
            assert!(dnskey.contains(" DNSKEY 257 3 "), "{dnskey}");
        }
        let apex = Name::from_ascii("kingcdn.test.").unwrap();
        let zones = load(dir.path(), std::slice::from_ref(&apex)).unwrap();
        assert_eq!(zones[0].keys.len(), 2);
        let signer = Signer::new(zones);
        let a = Record::from_rdata(
            Name::from_ascii("a1105.kingcdn.test.").unwrap(),
            30,
            RData::A("192.0.2.1".parse().unwrap()),
        );
        let sigs = signer.sign(&[&a]);
        assert_eq!(sigs.len(), 2, "one per key");
        // The second time comes from the cache: the same signatures.
        assert!(Arc::ptr_eq(&sigs, &signer.sign(&[&a])));
        let other = Record::from_rdata(
            Name::from_ascii("www.other.test.").unwrap(),
            30,
            RData::A("192.0.2.1".parse().unwrap()),
        );
        assert!(signer.sign(&[&other]).is_empty(), "unsigned zone");
    }
}
