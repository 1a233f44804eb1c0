//! Tuning `robust` on the TRAINING traces only (seed 1): prints, per family × movie, the
//! mean linear QoE and rebuffering of a candidate configuration against the best of
//! sabre's algorithms in both modes.
//!   cargo run --release -p dashcdn-player --example abr_tune -- [seed] [count] [k=v ...]
//! With a directory instead of a seed, the trace files in it (sabre JSON or `time Mbps`
//! text) are one family, `dir` (a sanity check on traces of a family nobody tuned on).
//! Keys: horizon, window, stall_weight, reserve_ms, reserve_penalty, abandon, memory,
//! guard_ms, guard_quantile, fade_weight, guard_abandon (0/1).

use std::path::Path;

use dashcdn_player::{
    generate, run_all, AbrKind, Content, Family, RobustConfig, SessionConfig, Split, Trace, Variant,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_dir());
    let seed: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(40);
    let mut rc = RobustConfig::default();
    for kv in args.iter().skip(2) {
        let (k, v) = kv.split_once('=').expect("k=v");
        let v: f64 = v.parse().expect("a number");
        match k {
            "horizon" => rc.horizon = v as usize,
            "window" => rc.window = v as usize,
            "stall_weight" => rc.stall_weight = v,
            "reserve_ms" => rc.reserve_ms = v,
            "reserve_penalty" => rc.reserve_penalty = v,
            "abandon" => rc.abandon_reserve_segments = v,
            "memory" => rc.memory = v as usize,
            "guard_ms" => rc.guard_ms = v,
            "guard_quantile" => rc.guard_quantile = v,
            "fade_weight" => rc.fade_weight = v,
            "guard_abandon" => rc.guard_abandon = v != 0.0,
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
        let families: Vec<Option<Family>> = match dir {
            Some(_) => vec![None],
            None => Family::ALL.into_iter().map(Some).collect(),
        };
        for fam in families {
            let traces = match (fam, &dir) {
                (Some(fam), _) => {
                    generate(fam, split, seed, count, &data.join("traces-4g")).unwrap()
                }
                (None, Some(d)) => {
                    let mut files: Vec<_> = std::fs::read_dir(d)
                        .unwrap()
                        .flatten()
                        .map(|e| e.path())
                        .collect();
                    files.sort();
                    files.iter().map(|p| Trace::load(p).unwrap()).collect()
                }
                (None, None) => unreachable!(),
            };
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
            // A bound: every segment at min(top rung, the trace's mean bandwidth).
            let bound = traces
                .iter()
                .map(|t| {
                    let m = t
                        .periods
                        .iter()
                        .map(|p| p.bandwidth_kbps * p.duration_ms)
                        .sum::<f64>()
                        / t.periods.iter().map(|p| p.duration_ms).sum::<f64>();
                    content.segments() as f64 * m.min(*content.bitrates_kbps.last().unwrap())
                        / 1000.0
                })
                .sum::<f64>()
                / traces.len() as f64;
            let gain = (mean(ours, |s| s.qoe_lin) - mean(best, |s| s.qoe_lin))
                / mean(best, |s| s.qoe_lin).abs();
            worst = worst.min(gain);
            println!(
                "{movie:<11} {:<4} bound {bound:>7.1} ours {:>8.1} rebuf {:>6.2} br {:>6.0} sw {:>5.1}  best {:<12} {:>8.1} rebuf {:>6.2} (min rebuf {:>6.2})  gain {:+.1}%  {:.2}s",
                fam.map_or("dir", |f| f.name()),
                mean(ours, |s| s.qoe_lin),
                mean(ours, |s| s.rebuffer_s),
                mean(ours, |s| s.avg_bitrate_kbps),
                mean(ours, |s| s.switches as f64),
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
