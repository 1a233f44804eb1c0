//! `dashcdn player lab`: every algorithm on every trace family × movie, against sabre's
//! algorithms in both of sabre's modes, on a trace set named by its seed.
//!
//! The protocol (`docs/player-abr.md`): `robust` is tuned on the training set (seed 1,
//! even-numbered measured 4G traces) and reported on the test set (seed 2, odd-numbered
//! ones), never tuned on.

use std::path::Path;

use serde::Serialize;

use crate::abr::AbrKind;
use crate::content::Content;
use crate::qoe::Summary;
use crate::session::SessionConfig;
use crate::sim::{run_all, sabre_verdict, Variant};
use crate::trace::TraceError;
use crate::tracegen::{generate, Family, Split};

/// One algorithm on one family × movie.
#[derive(Debug, Clone, Serialize)]
pub struct LabRow {
    pub family: &'static str,
    pub movie: String,
    pub abr: String,
    pub traces: usize,
    pub qoe_lin: f64,
    pub avg_bitrate_kbps: f64,
    pub rebuffer_s: f64,
    pub switches: f64,
    /// Traces where the default's QoE is at least this algorithm's.
    pub default_wins: usize,
    /// CPU (wall time of the simulation on one core) per minute of media played, ms.
    pub cpu_ms_per_media_min: f64,
}

/// The variants a lab run compares: the default first, then sabre's in both modes, then
/// the rest of ours.
pub fn lab_variants() -> Vec<Variant> {
    let mut v = vec![Variant {
        abr: AbrKind::DEFAULT,
        ao: false,
    }];
    v.extend(Variant::sabre());
    v.extend(
        [AbrKind::Bba, AbrKind::Mpc, AbrKind::MpcPaper]
            .into_iter()
            .map(|abr| Variant { abr, ao: false }),
    );
    v
}

/// Runs `variants` (the first is the one whose wins are counted) on `count` traces of
/// every family from `seed`, for each movie.
pub fn lab(
    movies: &[(String, Content)],
    split: Split,
    seed: u64,
    count: usize,
    lte_dir: &Path,
    variants: &[Variant],
    cfg: &SessionConfig,
) -> Result<Vec<LabRow>, TraceError> {
    let mut rows = Vec::new();
    for family in Family::ALL {
        let traces = generate(family, split, seed, count, lte_dir)?;
        for (name, content) in movies {
            let mut res = Vec::with_capacity(variants.len());
            let mut cpu = Vec::with_capacity(variants.len());
            for v in variants {
                let t = std::time::Instant::now();
                res.extend(run_all(content, &traces, std::slice::from_ref(v), cfg));
                cpu.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let media_min = content.total_ms() / 60_000.0 * traces.len() as f64;
            for ((v, sums), cpu_ms) in variants.iter().zip(&res).zip(cpu) {
                let n = sums.len().max(1) as f64;
                let mean = |f: fn(&Summary) -> f64| sums.iter().map(f).sum::<f64>() / n;
                rows.push(LabRow {
                    family: family.name(),
                    movie: name.clone(),
                    abr: v.name(),
                    traces: sums.len(),
                    qoe_lin: mean(|s| s.qoe_lin),
                    avg_bitrate_kbps: mean(|s| s.avg_bitrate_kbps),
                    rebuffer_s: mean(|s| s.rebuffer_s),
                    switches: mean(|s| s.switches as f64),
                    default_wins: res[0]
                        .iter()
                        .zip(sums)
                        .filter(|(d, s)| d.qoe_lin >= s.qoe_lin)
                        .count(),
                    cpu_ms_per_media_min: cpu_ms / media_min.max(1e-9),
                });
            }
        }
    }
    Ok(rows)
}

/// The lab's rows as a table, one block per family × movie, with the default's gain over
/// the best of sabre's algorithms.
pub fn lab_table(rows: &[LabRow]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < rows.len() {
        let (fam, movie) = (rows[i].family, rows[i].movie.clone());
        let block: Vec<&LabRow> = rows[i..]
            .iter()
            .take_while(|r| r.family == fam && r.movie == movie)
            .collect();
        i += block.len();
        out.push_str(&format!(
            "\n{fam} × {movie} ({} traces)\n{:<14} {:>9} {:>12} {:>9} {:>9} {:>10} {:>12}\n",
            block[0].traces,
            "abr",
            "QoE lin",
            "bitrate kb/s",
            "rebuf s",
            "switches",
            "def. wins",
            "cpu ms/min"
        ));
        for r in &block {
            out.push_str(&format!(
                "{:<14} {:>9.1} {:>12.1} {:>9.2} {:>9.1} {:>10} {:>12.3}\n",
                r.abr,
                r.qoe_lin,
                r.avg_bitrate_kbps,
                r.rebuffer_s,
                r.switches,
                r.default_wins,
                r.cpu_ms_per_media_min
            ));
        }
        let triples: Vec<(&str, f64, f64)> = block
            .iter()
            .map(|r| (r.abr.as_str(), r.qoe_lin, r.rebuffer_s))
            .collect();
        if let Some(v) = sabre_verdict(triples[0], &triples) {
            out.push_str(&v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_table_shows_every_variant_and_the_gain() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abr");
        let movie = Content::load_sabre(&data.join("bbb4k.json")).unwrap();
        let rows = lab(
            &[("bbb4k.json".into(), movie)],
            Split::Test,
            2,
            2,
            &data.join("traces-4g"),
            &lab_variants(),
            &SessionConfig::default(),
        )
        .unwrap();
        assert_eq!(rows.len(), 3 * lab_variants().len());
        let t = lab_table(&rows);
        for v in lab_variants() {
            assert!(t.contains(&v.name()), "{t}");
        }
        assert!(t.contains("robust vs best of sabre"), "{t}");
    }
}
