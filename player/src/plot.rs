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
    let t_max = records.iter().map(|r| r.at_s).fold(1.0, f64::max);
    let kbps_max = records
        .iter()
        .map(|r| {
            r.bitrate_kbps
                .max(r.throughput_kbps.min(r.bitrate_kbps * 4.0))
        })
        .fold(1.0, f64::max)
        * 1.1;
    let buf_max = records.iter().map(|r| r.buffer_s).fold(1.0, f64::max) * 1.1;

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
    b.draw_series(LineSeries::new(
        records.iter().map(|r| (r.at_s, r.buffer_s)),
        BLACK.stroke_width(2),
    ))
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
