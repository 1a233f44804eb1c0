//! DNS-01 for dashcdn's edges (docs/tls.md): an edge publishes `_acme-challenge.<name>`
//! TXT values on the metrics listener's `/_geodns/acme/{name}` with a bearer token
//! (`--acme-token`, the protocol of `dashcdn_http::acme::TxtBoard`). Each change re-applies
//! the operator's config with the board's values as extra TXT records of the zone that
//! holds the name — the same snapshot swap as a reload, so queries in flight are not
//! dropped and DNSSEC signs the records like any other. A reload from the file keeps them.

use dashcdn_http::acme::TxtBoard;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordType};

use crate::config::{GeodnsConfig, RecordConfig};

/// `config` with the board's values added (names outside every zone are left out).
pub(crate) fn overlay(config: &GeodnsConfig, board: &TxtBoard) -> GeodnsConfig {
    let mut out = config.clone();
    for (name, values) in board.entries() {
        let Ok(name) = Name::from_ascii(format!("{name}.")) else {
            continue;
        };
        // The most specific zone that holds the name.
        let Some(zone) = out
            .zones
            .iter_mut()
            .filter(|z| z.origin.zone_of(&name))
            .max_by_key(|z| z.origin.num_labels())
        else {
            tracing::warn!(%name, "acme: TXT for a name outside every zone, not served");
            continue;
        };
        zone.records
            .retain(|r| !(r.name == name && r.rtype == RecordType::TXT));
        zone.records.push(RecordConfig {
            name,
            rtype: RecordType::TXT,
            values: values
                .into_iter()
                .map(|v| RData::TXT(TXT::new(vec![v])))
                .collect(),
            // RFC 8555 §8.4: the CA looks up the record right after the client says it
            // is ready; resolvers must not keep an old value.
            ttl: 0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";

    #[test]
    fn published_values_become_txt_records_of_their_zone_only() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/example.toml")).unwrap();
        let config = GeodnsConfig::from_toml(&text).unwrap();
        let board = TxtBoard::new("0123456789abcdef");
        let auth = Some("Bearer 0123456789abcdef");
        let put = |name: &str| {
            board
                .handle(&axum::http::Method::PUT, name, auth, V.as_bytes())
                .0
        };
        assert!(put("_acme-challenge.a1105.kingcdn.test").is_success());
        assert!(put("_acme-challenge.elsewhere.example").is_success());
        let out = overlay(&config, &board);
        let zone = out
            .zones
            .iter()
            .find(|z| z.origin.to_string() == "kingcdn.test.")
            .unwrap();
        let txt: Vec<_> = zone
            .records
            .iter()
            .filter(|r| r.rtype == RecordType::TXT)
            .collect();
        assert_eq!(txt.len(), 1);
        assert_eq!(
            txt[0].name.to_string(),
            "_acme-challenge.a1105.kingcdn.test."
        );
        assert_eq!(txt[0].ttl, 0);
        let added: usize = out.zones.iter().map(|z| z.records.len()).sum::<usize>()
            - config.zones.iter().map(|z| z.records.len()).sum::<usize>();
        assert_eq!(added, 1, "the name outside every zone is left out");
    }
}
