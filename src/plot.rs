//! PNG figures drawn with plotters.
use std::path::Path;

use plotters::prelude::*;

use crate::{Error, Result};

/// DejaVu Sans, embedded so that drawing figures needs no system fonts and the binary no
/// fontconfig (licence: assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Registers [`FONT`] as plotters' "sans-serif" (once per process).
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded file is a valid TrueType font; were it not, text would fail to draw
        // with an error naming the figure, which is reported then.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::bad_file(path, format!("could not draw the figure: {e}"))
}

/// Axis bounds that hold every point of `sets` with a 5 % margin.
fn bounds<'a>(sets: impl Iterator<Item = &'a [f32]>) -> (f32, f32, f32, f32) {
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for s in sets {
        for p in s.chunks(2) {
            if p[0].is_finite() && p[1].is_finite() {
                x0 = x0.min(p[0]);
                x1 = x1.max(p[0]);
                y0 = y0.min(p[1]);
                y1 = y1.max(p[1]);
            }
        }
    }
    if x0 > x1 {
        return (-1.0, 1.0, -1.0, 1.0);
    }
    let (mx, my) = (0.05 * (x1 - x0).max(1e-3), 0.05 * (y1 - y0).max(1e-3));
    (x0 - mx, x1 + mx, y0 - my, y1 + my)
}

/// Scatter plot of generated points over ground-truth points (row-major [N, 2] arrays).
pub fn scatter(path: &Path, title: &str, truth: &[f32], generated: &[f32]) -> Result<()> {
    crate::files::ensure_parent(path)?;
    register_font();
    let root = BitMapBackend::new(path, (640, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let (x0, x1, y0, y1) = bounds([truth, generated].into_iter());
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| draw_err(path, e))?;
    chart
        .configure_mesh()
        .draw()
        .map_err(|e| draw_err(path, e))?;
    let series = [
        (truth, RGBColor(150, 150, 150), "ground truth"),
        (generated, RGBColor(220, 60, 40), "generated"),
    ];
    for (pts, color, label) in series {
        chart
            .draw_series(
                pts.chunks(2)
                    .map(|p| Circle::new((p[0], p[1]), 2, color.mix(0.6).filled())),
            )
            .map_err(|e| draw_err(path, e))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw_err(path, e))?;
    root.present().map_err(|e| draw_err(path, e))
}

/// A row of scatter panels, one per (caption, points).
pub fn strip(path: &Path, panels: &[(String, Vec<f32>)]) -> Result<()> {
    crate::files::ensure_parent(path)?;
    register_font();
    let n = panels.len().max(1);
    let root = BitMapBackend::new(path, (220 * n as u32, 240)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let areas = root.split_evenly((1, n));
    for ((caption, pts), area) in panels.iter().zip(areas) {
        let (x0, x1, y0, y1) = bounds(std::iter::once(pts.as_slice()));
        let mut chart = ChartBuilder::on(&area)
            .caption(caption, ("sans-serif", 16))
            .margin(6)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_err(path, e))?;
        chart
            .draw_series(
                pts.chunks(2)
                    .map(|p| Circle::new((p[0], p[1]), 1, BLUE.mix(0.5).filled())),
            )
            .map_err(|e| draw_err(path, e))?;
    }
    root.present().map_err(|e| draw_err(path, e))
}

/// Line plot of one or more named series against x (e.g. loss vs step, CD vs steps).
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    log_y: bool,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    crate::files::ensure_parent(path)?;
    register_font();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let pts = series
        .iter()
        .flat_map(|(_, s)| s.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.1, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 * 1.1 + 1e-9;
    }
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| draw_err(path, e))?;
            for (i, (name, s)) in series.iter().enumerate() {
                let color = palette[i % palette.len()];
                let data = s
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0));
                chart
                    .draw_series(LineSeries::new(data, color.stroke_width(2)))
                    .map_err(|e| draw_err(path, e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            if series.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| draw_err(path, e))?;
            }
        }};
    }
    let builder = || {
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60);
        b
    };
    if log_y {
        draw!(builder()
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| draw_err(path, e))?);
    } else {
        draw!(builder()
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_err(path, e))?);
    }
    root.present().map_err(|e| draw_err(path, e))
}
