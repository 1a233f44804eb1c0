//! The default ABR against sabre's algorithms (both modes) on the HELD-OUT trace set
//! (seed 2, odd-numbered measured 4G traces), which `robust` was never tuned on. sabre's
//! figures come from our ports, whose exactness `sim.rs` tests on sabre's own example.
//!
//! The requirement (issue 18): on every family × movie, the default's mean linear QoE is at
//! least every sabre algorithm's, with rebuffering no worse than the best of them. Where the
//! default falls short today, the cell is listed in `SHORTFALLS` with the gap measured on
//! 40 traces (docs/player-abr.md); the test holds the gap there so it cannot grow, and
//! fails if a cell not listed falls short.

use std::path::Path;

use dashcdn_player::{lab, lab_variants, Content, LabRow, SessionConfig, Split, Variant};

/// (family, movie, QoE gap allowed as a share of the best sabre QoE, rebuffer s allowed
/// over the best-QoE sabre algorithm's).
const SHORTFALLS: &[(&str, &str, f64, f64)] = &[
    // 4G × 10 rungs: every algorithm sits at the top rung; throughput/bolae lead by 1 %.
    ("4g", "bbb.json", 0.02, 0.0),
    // 3G × 4K ladder: the lowest rung (1 Mbit/s) is above a fade; +74 % QoE but 3 s more
    // stalling than the throughput rule, which stays at the lowest rung.
    ("3g", "bbb4k.json", 0.0, 4.0),
    ("4g", "bbb4k.json", 0.0, 0.5),
];

fn rows(count: usize) -> Vec<LabRow> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abr");
    let movies: Vec<(String, Content)> = ["bbb.json", "bbb4k.json"]
        .iter()
        .map(|m| (m.to_string(), Content::load_sabre(&data.join(m)).unwrap()))
        .collect();
    let variants: Vec<Variant> = lab_variants()
        .into_iter()
        .filter(|v| v.abr == dashcdn_player::AbrKind::Robust || Variant::sabre().contains(v))
        .collect();
    lab(
        &movies,
        Split::Test,
        2,
        count,
        &data.join("traces-4g"),
        &variants,
        &SessionConfig::default(),
    )
    .unwrap()
}

fn check(count: usize) {
    let rows = rows(count);
    let mut failures = Vec::new();
    for def in rows.iter().filter(|r| r.abr == "robust") {
        let cell: Vec<&LabRow> = rows
            .iter()
            .filter(|r| r.family == def.family && r.movie == def.movie && r.abr != "robust")
            .collect();
        let best = cell
            .iter()
            .max_by(|a, b| a.qoe_lin.total_cmp(&b.qoe_lin))
            .unwrap();
        let (qoe_gap, rebuf_gap) = SHORTFALLS
            .iter()
            .find(|s| s.0 == def.family && s.1 == def.movie)
            .map_or((0.0, 0.0), |s| (s.2, s.3));
        for r in &cell {
            if def.qoe_lin < r.qoe_lin - qoe_gap * r.qoe_lin.abs() {
                failures.push(format!(
                    "{} × {}: robust QoE {:.1} < {} {:.1}",
                    def.family, def.movie, def.qoe_lin, r.abr, r.qoe_lin
                ));
            }
        }
        if def.rebuffer_s > best.rebuffer_s + rebuf_gap + 1e-9 {
            failures.push(format!(
                "{} × {}: robust rebuffers {:.2} s, more than {} (best QoE of sabre) {:.2} s",
                def.family, def.movie, def.rebuffer_s, best.abr, best.rebuffer_s
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_default_beats_sabre_on_held_out_traces() {
    // The whole test set: 40 traces per family, about 5 s in a debug build.
    check(40);
}
