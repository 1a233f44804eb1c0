//! The default ABR against sabre's algorithms (both modes) on the HELD-OUT trace set
//! (seed 2, odd-numbered measured 4G traces), which `robust` was never tuned on. sabre's
//! figures come from our ports, whose exactness `sim.rs` tests on sabre's own example.
//!
//! The requirement (issue 18): on every family × movie, the default's mean linear QoE is at
//! least every sabre algorithm's in both modes, with rebuffering no worse than the best of
//! them (the sabre algorithm with the best QoE). Where the default also reaches the issue's
//! +5 %, the test holds it there. No cell has a rebuffering allowance (docs/player-abr.md).

use std::path::Path;

use dashcdn_player::{lab, lab_variants, Content, LabRow, SessionConfig, Split, Variant};

/// (family, movie, least QoE gain over the best sabre algorithm).
const CELLS: &[(&str, &str, f64)] = &[
    ("3g", "bbb.json", 0.05),
    // Every algorithm plays the top rung nearly throughout: +5 % over throughput's 1146.4
    // would be 1203.7, above the 1194 that 199 segments of the 6 Mbit/s rung add up to.
    ("4g", "bbb.json", 0.0),
    // +2.9 % measured; the bound (every segment at the trace's mean bandwidth) is 971.3.
    ("fcc", "bbb.json", 0.0),
    // The lowest rung (1 Mbit/s) is above a 3G fade: throughput, which stays there, stalls
    // 30.33 s; the default, +44 % QoE, stalls 29.83 s (fade scenarios and the guard's
    // re-planned abandonment; before them 30.93 s).
    ("3g", "bbb4k.json", 0.05),
    ("4g", "bbb4k.json", 0.05),
    ("fcc", "bbb4k.json", 0.05),
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

#[test]
fn the_default_beats_sabre_on_held_out_traces() {
    // The whole test set: 40 traces per family.
    let rows = rows(40);
    let mut failures = Vec::new();
    let mut seen = 0;
    for def in rows.iter().filter(|r| r.abr == "robust") {
        let cell: Vec<&LabRow> = rows
            .iter()
            .filter(|r| r.family == def.family && r.movie == def.movie && r.abr != "robust")
            .collect();
        assert_eq!(cell.len(), Variant::sabre().len());
        let best = cell
            .iter()
            .max_by(|a, b| a.qoe_lin.total_cmp(&b.qoe_lin))
            .unwrap();
        let &(_, _, gain) = CELLS
            .iter()
            .find(|s| s.0 == def.family && s.1 == def.movie)
            .expect("every cell is listed");
        seen += 1;
        for r in &cell {
            if def.qoe_lin < r.qoe_lin {
                failures.push(format!(
                    "{} × {}: robust QoE {:.1} < {} {:.1}",
                    def.family, def.movie, def.qoe_lin, r.abr, r.qoe_lin
                ));
            }
        }
        if def.qoe_lin < best.qoe_lin + gain * best.qoe_lin.abs() {
            failures.push(format!(
                "{} × {}: robust QoE {:.1} is not +{:.0}% over {} {:.1}",
                def.family,
                def.movie,
                def.qoe_lin,
                gain * 100.0,
                best.abr,
                best.qoe_lin
            ));
        }
        if def.rebuffer_s > best.rebuffer_s + 1e-9 {
            failures.push(format!(
                "{} × {}: robust rebuffers {:.3} s, more than {} (best QoE of sabre) {:.3} s",
                def.family, def.movie, def.rebuffer_s, best.abr, best.rebuffer_s
            ));
        }
    }
    assert_eq!(seen, CELLS.len());
    assert!(failures.is_empty(), "{failures:#?}");
}
