//! `bench --plot`: each row's steady-state step time as a horizontal bar in an SVG file, with
//! the earlier run's matching bar beside it under `--compare`. Drawn with plotters' SVG backend,
//! which leaves text to the viewer, so no font has to be found on this machine.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::Row;

/// Pixels per bar row, and what the caption and the time axis take around them.
const ROW_PX: u32 = 40;
const FRAME_PX: u32 = 110;
/// Room for the row labels (adapter, API/compiler, precision, size).
const LABEL_PX: u32 = 420;

const NOW: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const BEFORE: RGBColor = RGBColor(0xa0, 0xa0, 0xa0);

/// Writes the chart to `path`; `earlier` is the `--compare` run, if any.
pub fn write(path: &Path, rows: &[Row], earlier: Option<&[Row]>) -> anyhow::Result<()> {
    anyhow::ensure!(!rows.is_empty(), "no results to draw");
    // top to bottom in the table's order: plotters counts segments from the bottom
    let bars: Vec<(String, f64, Option<f64>)> = rows
        .iter()
        .rev()
        .map(|r| {
            let old = earlier.and_then(|e| r.earlier(e)).map(|o| o.step_s);
            (label(r), r.step_s, old)
        })
        .collect();
    let longest = bars
        .iter()
        .flat_map(|(_, now, old)| [Some(*now), *old])
        .flatten()
        .filter(|s| s.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3);
    // one segment per row, and one more on top for the legend (plotters' integer ranges
    // include their end, and a range of one value has no extent to map)
    let height = FRAME_PX + ROW_PX * (bars.len() as u32 + 1);
    let root = SVGBackend::new(path, (LABEL_PX + 620, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "UNet step with CFG, steady state (seconds, shorter is faster)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(LABEL_PX)
        .build_cartesian_2d(0.0..longest * 1.2, (0..bars.len()).into_segmented())?;
    let row_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&row_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .x_desc("seconds per step")
        .draw()?;
    // a bar fills 70% of its row; with an earlier run, this run's bar is the lower half of
    // that and the earlier one the upper half
    let y = |i| chart.backend_coord(&(0.0, SegmentValue::Exact(i))).1;
    let row_px = y(0).abs_diff(y(1));
    let gap = row_px * 15 / 100;
    let half = if earlier.is_some() {
        (row_px - 2 * gap) / 2
    } else {
        0
    };
    let bar = |i: usize, seconds: f64, color: RGBColor, top: u32, bottom: u32| {
        // corners top-left, bottom-right: segment i + 1 is above segment i
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i + 1)),
                (seconds, SegmentValue::Exact(i)),
            ],
            color.filled(),
        );
        bar.set_margin(top, bottom, 0, 0);
        bar
    };
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, (_, now, _))| bar(i, *now, NOW, gap + half, gap)),
        )?
        .label("this run")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], NOW.filled()));
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, now, _))| {
        Text::new(
            format!(" {now:.3}"),
            (*now, SegmentValue::CenterOf(i)),
            ("sans-serif", 13),
        )
    }))?;
    if earlier.is_some() {
        let old = bars
            .iter()
            .enumerate()
            .filter_map(|(i, (_, _, old))| old.map(|s| bar(i, s, BEFORE, gap, gap + half)));
        chart
            .draw_series(old)?
            .label("earlier run (--compare)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BEFORE.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `NVIDIA H200 vulkan/wgsl f16 1024x1024`
fn label(r: &Row) -> String {
    format!(
        "{} {}/{} {} {}x{}",
        r.adapter, r.api, r.compiler, r.precision, r.width, r.height
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(adapter: &str, precision: &str, step_s: f64) -> Row {
        serde_json::from_value(serde_json::json!({
            "adapter": adapter, "api": "Vulkan", "compiler": "WGSL", "precision": precision,
            "width": 64, "height": 64, "steps": 2, "unet_batch": 2, "load_s": 1.0,
            "load_gb_per_s": 1.0, "text_encode_s": 1.0, "step_s": step_s, "step_record_s": 1.0,
            "first_step_extra_s": 1.0, "vae_decode_s": 1.0, "lora_swap_s": 1.0,
            "peak_memory_bytes": 1024, "images_per_minute": 1.0, "unet_flops_per_step": 1.0,
            "tflops": 1.0
        }))
        .expect("row")
    }

    /// The filled bars of one colour, as (width, height) in pixels, top to bottom.
    fn bars(svg: &str, fill: &str) -> Vec<(f64, f64)> {
        let rect = regex::Regex::new(
            r#"<rect x="[0-9.]+" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)" opacity="1" fill="(#[0-9A-F]{6})""#,
        )
        .expect("regex");
        let mut found: Vec<(f64, f64, f64)> = rect
            .captures_iter(svg)
            .filter(|c| &c[4] == fill)
            .map(|c| {
                let n = |i: usize| c[i].parse::<f64>().expect("number");
                (n(1), n(2), n(3))
            })
            .filter(|(_, _, h)| *h > 10.0) // not the legend's 10 px swatch
            .collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        found.into_iter().map(|(_, w, h)| (w, h)).collect()
    }

    #[test]
    fn one_row_against_an_earlier_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("steps.svg");
        let earlier = [row("gpu b", "f16", 2.0)];
        write(&path, &[row("gpu a", "f16", 0.5)], Some(&earlier)).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.contains("gpu a Vulkan/WGSL f16 64x64"), "{svg}");
        let (now, before) = (bars(&svg, "#2B6CB0"), bars(&svg, "#A0A0A0"));
        assert_eq!((now.len(), before.len()), (1, 1), "{svg}");
        assert!(
            (now[0].0 / before[0].0 - 0.25).abs() < 0.01,
            "{now:?} {before:?}"
        );
        assert!(
            now[0].1 >= 12.0 && before[0].1 >= 12.0,
            "{now:?} {before:?}"
        );
    }

    #[test]
    fn bars_are_as_long_as_the_step_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("steps.svg");
        let rows = [
            row("gpu a", "f16", 0.5),
            row("gpu a", "f32", 1.0),
            row("gpu b", "f16", 2.0),
        ];
        let earlier = [row("gpu a", "f16", 1.0)];
        for compare in [None, Some(&earlier[..])] {
            write(&path, &rows, compare).expect("drawn");
            let svg = std::fs::read_to_string(&path).expect("svg");
            assert!(svg.contains("gpu a Vulkan/WGSL f32 64x64"), "{svg}");
            let now = bars(&svg, "#2B6CB0");
            assert_eq!(now.len(), 3, "{svg}");
            // top to bottom in the rows' order, lengths in the ratio of the times (1 px rounding)
            for (bar, r) in now.iter().zip(&rows) {
                assert!((bar.0 / now[2].0 - r.step_s / 2.0).abs() < 0.01, "{now:?}");
                assert!(bar.1 >= 12.0, "{now:?}");
            }
            let before = bars(&svg, "#A0A0A0");
            match compare {
                None => assert!(before.is_empty(), "{svg}"),
                // gpu a f16 matches the earlier row (1.0 s), gpu b f16 too (same API, precision
                // and size), f32 nothing
                Some(_) => {
                    assert_eq!(before.len(), 2, "{svg}");
                    assert!((before[0].0 / now[2].0 - 0.5).abs() < 0.01, "{before:?}");
                }
            }
        }
        assert!(write(&path, &[], None).is_err());
    }
}
