//! Tuning `robust` on the TRAINING traces only (seed 1): prints, per family × movie, the
//! mean linear QoE and rebuffering of a candidate configuration against the best of
//! sabre's algorithms in both modes.
//!   cargo run --release -p dashcdn-player --example abr_tune -- [seed] [count] [k=v ...]
//! Keys: horizon, err_weight, reserve_ms, reserve_penalty, abandon.

use std::path::Path;

use dashcdn_player::{
    generate, run_all, AbrKind, Content, Family, RobustConfig, SessionConfig, Split, Variant,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(40);
    let mut rc = RobustConfig::default();
    for kv in args.iter().skip(2) {
        let (k, v) = kv.split_once('=').expect("k=v");
        let v: f64 = v.parse().expect("a number");
        match k {
            "horizon" => rc.horizon = v as usize,
            "err_weight" => rc.err_weight = v,
            "reserve_ms" => rc.reserve_ms = v,
            "reserve_penalty" => rc.reserve_penalty = v,
            "abandon" => rc.abandon_reserve_segments = v,
            _ => panic!("unknown key {k}"),
        }
    }
    let split = if seed == 1 { Split::Train } else { Split::Test };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abr");
    let cfg = SessionConfig {
        robust: rc,
        ..SessionConfig::default()
    };
    let mut worst = f64::INFINITY;
    for movie in ["bbb.json", "bbb4k.json"] {
        let content = Content::load_sabre(&data.join(movie)).unwrap();
        for fam in Family::ALL {
            let traces = generate(fam, split, seed, count, &data.join("traces-4g")).unwrap();
            let mut variants = Variant::sabre();
            variants.push(Variant {
                abr: AbrKind::Robust,
                ao: false,
            });
            let t = std::time::Instant::now();
            let res = run_all(&content, &traces, &variants, &cfg);
            let mean = |v: &Vec<dashcdn_player::Summary>,
                        f: fn(&dashcdn_player::Summary) -> f64| {
                v.iter().map(f).sum::<f64>() / v.len() as f64
            };
            let ours = res.last().unwrap();
            let (bi, best) = res[..res.len() - 1]
                .iter()
                .enumerate()
                .max_by(|a, b| mean(a.1, |s| s.qoe_lin).total_cmp(&mean(b.1, |s| s.qoe_lin)))
                .unwrap();
            let min_rebuf = res[..res.len() - 1]
                .iter()
                .map(|r| mean(r, |s| s.rebuffer_s))
                .fold(f64::INFINITY, f64::min);
            let gain = (mean(ours, |s| s.qoe_lin) - mean(best, |s| s.qoe_lin))
                / mean(best, |s| s.qoe_lin).abs();
            worst = worst.min(gain);
            println!(
                "{movie:<11} {:<4} ours {:>8.1} rebuf {:>6.2}  best {:<12} {:>8.1} rebuf {:>6.2} (min rebuf {:>6.2})  gain {:+.1}%  {:.2}s",
                fam.name(),
                mean(ours, |s| s.qoe_lin),
                mean(ours, |s| s.rebuffer_s),
                variants[bi].name(),
                mean(best, |s| s.qoe_lin),
                mean(best, |s| s.rebuffer_s),
                min_rebuf,
                gain * 100.0,
                t.elapsed().as_secs_f64()
            );
        }
    }
    println!("worst gain {:+.1}% with {rc:?}", worst * 100.0);
}
