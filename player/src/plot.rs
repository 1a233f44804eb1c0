//! `--plot FILE.svg`: bitrate, measured throughput and buffer over the session, because a
//! chart is read faster than a log. plotters with only its SVG backend: no font or image
//! libraries (SVG text is left to the viewer's fonts).

use std::path::Path;

use plotters::prelude::*;

use crate::session::SegmentRecord;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {detail}")]
pub(crate) struct PlotError {
    pub path: String,
    pub detail: String,
}

/// Draws the session in `records` (video downloads in order) to `path`.
pub(crate) fn plot(path: &Path, title: &str, records: &[SegmentRecord]) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let kept: Vec<&SegmentRecord> = records.iter().filter(|r| !r.abandoned).collect();
    let Axes {
        t_max,
        kbps_max,
        buf_max,
    } = axes(records);

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(360);

    let mut c = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..kbps_max)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("session time (s)")
        .y_desc("kbit/s")
        .draw()
        .map_err(|e| err(&e))?;
    // Bitrate as steps: each segment's rate from the end of the previous download.
    let mut steps = Vec::new();
    let mut prev_t = 0.0;
    for r in &kept {
        steps.push((prev_t, r.bitrate_kbps));
        steps.push((r.at_s, r.bitrate_kbps));
        prev_t = r.at_s;
    }
    c.draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("bitrate")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(
        records
            .iter()
            .map(|r| (r.at_s, r.throughput_kbps.min(kbps_max))),
        RED,
    ))
    .map_err(|e| err(&e))?
    .label("measured throughput")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.draw_series(LineSeries::new(
        records
            .iter()
            .map(|r| (r.at_s, r.estimate_kbps.min(kbps_max))),
        GREEN,
    ))
    .map_err(|e| err(&e))?
    .label("estimate")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let mut b = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..buf_max)
        .map_err(|e| err(&e))?;
    b.configure_mesh()
        .x_desc("session time (s)")
        .y_desc("buffer (s)")
        .draw()
        .map_err(|e| err(&e))?;
    b.draw_series(LineSeries::new(buffer_path(records), BLACK.stroke_width(2)))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The ranges of the three axes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axes {
    t_max: f64,
    kbps_max: f64,
    buf_max: f64,
}

/// Axes scaled to the data: time to the end of the session (the last download plus the
/// buffer it leaves to play), rates to the ladder and the estimate with the measured
/// throughput's 90th percentile, so one outlier measurement does not flatten the chart.
fn axes(records: &[SegmentRecord]) -> Axes {
    let end = records.last().map_or(1.0, |r| r.at_s + r.buffer_s);
    let mut tputs: Vec<f64> = records.iter().map(|r| r.throughput_kbps).collect();
    tputs.sort_by(f64::total_cmp);
    let p90 = tputs
        .get(tputs.len().saturating_sub(1) * 9 / 10)
        .copied()
        .unwrap_or(0.0);
    let rates = records
        .iter()
        .map(|r| r.bitrate_kbps.max(r.estimate_kbps))
        .fold(p90, f64::max);
    Axes {
        t_max: end.max(1e-3),
        kbps_max: rates.max(1.0) * 1.1,
        buf_max: records.iter().map(|r| r.buffer_s).fold(1.0, f64::max) * 1.1,
    }
}

/// The buffer over time: it drains while a download runs (at playback speed, never below
/// zero) and jumps when a segment lands; after the last download it plays out to zero.
fn buffer_path(records: &[SegmentRecord]) -> Vec<(f64, f64)> {
    let mut pts = vec![(0.0, 0.0)];
    let (mut t, mut b) = (0.0, 0.0);
    for r in records {
        let drained = (b - (r.at_s - t)).max(0.0);
        pts.push((r.at_s, drained));
        pts.push((r.at_s, r.buffer_s));
        (t, b) = (r.at_s, r.buffer_s);
    }
    pts.push((t + b, 0.0));
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_s: f64, buffer_s: f64, throughput_kbps: f64) -> SegmentRecord {
        SegmentRecord {
            segment: 0,
            quality: 0,
            bitrate_kbps: 1000.0,
            bytes: 0,
            at_s,
            ttfb_ms: 0.0,
            download_ms: 0.0,
            throughput_kbps,
            estimate_kbps: 2000.0,
            buffer_s,
            abandoned: false,
        }
    }

    fn session() -> Vec<SegmentRecord> {
        // Ten 2 s downloads of 4 s segments, one absurd throughput measurement.
        (1..=10)
            .map(|i| {
                let t = if i == 5 { 1e8 } else { 3000.0 };
                rec(2.0 * i as f64, 4.0 + 2.0 * i as f64, t)
            })
            .collect()
    }

    #[test]
    fn the_x_axis_covers_the_session_until_the_buffer_is_played() {
        let a = axes(&session());
        assert!((a.t_max - (20.0 + 24.0)).abs() < 1e-9, "{a:?}");
    }

    #[test]
    fn one_outlier_does_not_set_the_rate_axis() {
        let a = axes(&session());
        assert!(a.kbps_max < 5000.0, "{a:?}");
        assert!(a.kbps_max >= 3000.0, "{a:?}");
    }

    #[test]
    fn the_buffer_drains_between_downloads() {
        let p = buffer_path(&session());
        // Before the 2nd segment lands the buffer has drained 2 s from 6 s.
        assert!(p.contains(&(4.0, 4.0)), "{p:?}");
        assert!(p.contains(&(4.0, 8.0)), "{p:?}");
        assert_eq!(p.last(), Some(&(44.0, 0.0)));
    }
}
