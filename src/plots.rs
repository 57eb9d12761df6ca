//! Plots of plain series (plotters): PNG through an RGB buffer and the `png` crate, SVG directly.
//! Text uses DejaVu Sans loaded at run time (`LDCTQ_PLOT_FONT` overrides the path); without a font the
//! plots are drawn without any text. Each function writes `DIR/STEM.png` and `DIR/STEM.svg` and
//! returns both paths, except [`map_grid`] (image overlays: PNG only).
//!
//! A leaf module: callers (the trainer's curves, the benchmark's reports) turn their records into
//! [`Series`] first. Built with the `plots` feature.
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Result of a plot: plotters' and the PNG encoder's errors are boxed.
pub type PlotResult<T> = std::result::Result<T, Box<dyn StdError>>;

/// A named series of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel of line plots: `lines` share x from 0.5 to the largest x + 0.5 and y from 0 to `y_max`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePanel {
    pub title: String,
    pub y_max: f64,
    pub lines: Vec<Series>,
}

const SIZE: (u32, u32) = (960, 600);
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font once; false when there is none (plots are then drawn without text).
pub fn font_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let path = std::env::var("LDCTQ_PLOT_FONT").unwrap_or_else(|_| DEFAULT_FONT.into());
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            }
            Err(_) => false,
        }
    })
}

fn color(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// Deterministic jitter in [-1, 1] for point `i`.
fn jitter(i: usize) -> f64 {
    crate::rng::Rng::new(i as u64).uniform() * 2.0 - 1.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (i, f) = (h.floor() as usize, h.fract());
    if i + 1 < sorted.len() {
        sorted[i] + f * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

fn padded((lo, hi): (f64, f64)) -> (f64, f64) {
    let span = (hi - lo).max(1e-3);
    (lo - 0.05 * span, hi + 0.05 * span)
}

fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)))
}

fn write_png(path: &Path, buf: &[u8]) -> PlotResult<()> {
    write_png_sized(path, buf, SIZE)
}

fn write_png_sized(path: &Path, buf: &[u8], size: (u32, u32)) -> PlotResult<()> {
    let file = std::fs::File::create(path)?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), size.0, size.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(buf)?;
    Ok(())
}

type Area<DB> = DrawingArea<DB, Shift>;
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws `$body` (generic over the backend, using the area `$a`) to `DIR/STEM.png` and `.svg`.
macro_rules! both {
    ($dir:expr, $stem:expr, |$a:ident| $body:expr) => {{
        let (png_path, svg_path) = ($dir.join(format!("{}.png", $stem)), $dir.join(format!("{}.svg", $stem)));
        let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let $a = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
            $body?;
        }
        write_png(&png_path, &buf)?;
        {
            let $a = SVGBackend::new(&svg_path, SIZE).into_drawing_area();
            $body?;
        }
        Ok(vec![png_path, svg_path])
    }};
}

/// Side-by-side panels of lines against x (e.g. training curves by epoch), one colour per line.
pub fn line_panels(dir: &Path, stem: &str, x_label: &str, panels: &[LinePanel]) -> PlotResult<Vec<PathBuf>> {
    let text = font_available();
    both!(dir, stem, |a| draw_line_panels(a, x_label, panels, text))
}

fn draw_line_panels<DB: DrawingBackend>(
    area: Area<DB>,
    x_label: &str,
    panels: &[LinePanel],
    text: bool,
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let max_x = extent(panels.iter().flat_map(|p| &p.lines).flat_map(|s| s.points.iter().map(|p| p.0))).1;
    let max_x = if max_x.is_finite() { max_x } else { 1.0 };
    area.fill(&WHITE)?;
    for (cell, panel) in area.split_evenly((1, panels.len().max(1))).iter().zip(panels) {
        let mut b = ChartBuilder::on(cell);
        b.margin(12).x_label_area_size(36).y_label_area_size(48);
        if text {
            b.caption(&panel.title, ("sans-serif", 18));
        }
        let mut chart = b.build_cartesian_2d(0.5..max_x + 0.5, 0.0..panel.y_max)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(x_label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw()?;
        for (i, line) in panel.lines.iter().enumerate() {
            let c = color(i);
            let drawn = chart.draw_series(LineSeries::new(line.points.clone(), c.stroke_width(2)))?;
            if text {
                drawn
                    .label(&line.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
            }
        }
        if text {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        }
    }
    area.present()?;
    Ok(())
}

/// One panel of lines with its own x label; both axes span the panel's data.
#[derive(Debug, Clone, PartialEq)]
pub struct XyPanel {
    pub title: String,
    pub x_label: String,
    pub lines: Vec<Series>,
}

/// Panels of lines in a grid of two columns (one row for one or two panels), one colour per line
/// within a panel, each panel's axes fitted to its data.
pub fn xy_panels(dir: &Path, stem: &str, panels: &[XyPanel]) -> PlotResult<Vec<PathBuf>> {
    let text = font_available();
    both!(dir, stem, |a| draw_xy_panels(a, panels, text))
}

fn draw_xy_panels<DB: DrawingBackend>(area: Area<DB>, panels: &[XyPanel], text: bool) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let cols = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(cols).max(1);
    for (cell, panel) in area.split_evenly((rows, cols)).iter().zip(panels) {
        let points = || {
            panel.lines.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite())
        };
        if points().next().is_none() {
            continue;
        }
        let (x, y) = (padded(extent(points().map(|p| p.0))), padded(extent(points().map(|p| p.1))));
        let mut b = ChartBuilder::on(cell);
        b.margin(12).x_label_area_size(36).y_label_area_size(52);
        if text {
            b.caption(&panel.title, ("sans-serif", 18));
        }
        let mut chart = b.build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(panel.x_label.as_str());
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw()?;
        for (i, line) in panel.lines.iter().enumerate() {
            let c = color(i);
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            let drawn = chart.draw_series(LineSeries::new(line.points.clone(), c.stroke_width(2)))?;
            if text {
                drawn
                    .label(&line.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
            }
        }
        if text && panel.lines.len() > 1 {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        }
    }
    area.present()?;
    Ok(())
}

fn chart<'a, DB: DrawingBackend + 'a>(
    area: &'a Area<DB>,
    title: &str,
    text: bool,
    x: (f64, f64),
    y: (f64, f64),
) -> PlotResult<Chart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let mut b = ChartBuilder::on(area);
    b.margin(16);
    if text {
        b.caption(title, ("sans-serif", 20)).x_label_area_size(48).y_label_area_size(60);
    }
    Ok(b.build_cartesian_2d(x.0..x.1, y.0..y.1)?)
}

fn legend<'a, DB: DrawingBackend + 'a>(c: &mut Chart<'a, DB>, text: bool) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    if text {
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    Ok(())
}

/// Distributions side by side: per group a box (quartiles, whiskers to the extremes within 1.5 IQR)
/// and its points (`None` values are skipped; the jitter follows each value's index).
pub fn boxes(
    dir: &Path,
    stem: &str,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<Option<f64>>)],
) -> PlotResult<Vec<PathBuf>> {
    let text = font_available();
    both!(dir, stem, |a| draw_boxes(a, title, y_label, groups, text))
}

fn draw_boxes<DB: DrawingBackend>(
    area: Area<DB>,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<Option<f64>>)],
    text: bool,
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let k = groups.len();
    let y = padded(extent(groups.iter().flat_map(|(_, v)| v.iter().flatten().copied())));
    let mut c = chart(&area, title, text, (-0.5, k as f64 - 0.5), y)?;
    if text {
        let names: Vec<String> = groups.iter().map(|(n, _)| n.clone()).collect();
        let fmt = move |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(k + 1)
            .x_label_formatter(&fmt)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()?;
    } else {
        c.configure_mesh().disable_x_mesh().x_labels(0).y_labels(0).draw()?;
    }
    for (i, (_, values)) in groups.iter().enumerate() {
        let mut v: Vec<f64> = values.iter().flatten().copied().collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let (q1, q2, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
        let iqr = q3 - q1;
        let wl = v.iter().copied().find(|&x| x >= q1 - 1.5 * iqr).unwrap_or(v[0]);
        let wh = v.iter().rev().copied().find(|&x| x <= q3 + 1.5 * iqr).unwrap_or(v[v.len() - 1]);
        let x = i as f64;
        let col = color(i);
        let rect = [(x - 0.3, q1), (x + 0.3, q3)];
        c.draw_series(std::iter::once(Rectangle::new(rect, col.mix(0.25).filled())))?;
        c.draw_series(std::iter::once(Rectangle::new(rect, col.stroke_width(2))))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(x - 0.3, q2), (x + 0.3, q2)],
            col.stroke_width(3),
        )))?;
        c.draw_series(std::iter::once(PathElement::new(vec![(x, q3), (x, wh)], col.stroke_width(1))))?;
        c.draw_series(std::iter::once(PathElement::new(vec![(x, q1), (x, wl)], col.stroke_width(1))))?;
        let pts: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(j, s)| s.map(|s| (x + 0.12 * jitter(j * 31 + i), s)))
            .collect();
        c.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, BLACK.mix(0.45).filled())))?;
    }
    area.present()?;
    Ok(())
}

/// Every point of each series (x > 0; a log10 x axis when the x values span a factor of 4 or more)
/// and, as a line, the mean y per distinct x (e.g. score against dose).
pub fn points_and_means(
    dir: &Path,
    stem: &str,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
) -> PlotResult<Vec<PathBuf>> {
    let text = font_available();
    both!(dir, stem, |a| draw_points_and_means(a, title, (x_label, y_label), series, text))
}

fn draw_points_and_means<DB: DrawingBackend>(
    area: Area<DB>,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    text: bool,
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let all = || series.iter().flat_map(|s| s.points.iter().filter(|p| p.0 > 0.0));
    let (xmin, xmax) = extent(all().map(|p| p.0));
    let log = xmax / xmin >= 4.0;
    let tx = |x: f64| if log { x.log10() } else { x };
    let xr = padded((tx(xmin), tx(xmax)));
    let mut c = chart(&area, title, text, xr, padded(extent(all().map(|p| p.1))))?;
    if text {
        let fmt = move |v: &f64| if log { format!("{:.3}", 10f64.powf(*v)) } else { format!("{v:.3}") };
        let desc = if log { format!("{x_label} (log scale)") } else { x_label.to_string() };
        c.configure_mesh()
            .x_desc(desc)
            .y_desc(y_label)
            .x_label_formatter(&fmt)
            .label_style(("sans-serif", 14))
            .draw()?;
    } else {
        c.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    let mut levels: Vec<f64> = all().map(|p| p.0).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    for (i, s) in series.iter().enumerate() {
        let col = color(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0 > 0.0)
            .enumerate()
            .map(|(j, &(x, y))| (tx(x) + 0.004 * (xr.1 - xr.0) * jitter(j * 17 + i), y))
            .collect();
        c.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, col.mix(0.5).filled())))?;
        let means: Vec<(f64, f64)> = levels
            .iter()
            .filter_map(|&x| {
                let v: Vec<f64> = s.points.iter().filter(|p| p.0 == x).map(|p| p.1).collect();
                (!v.is_empty()).then(|| (tx(x), v.iter().sum::<f64>() / v.len() as f64))
            })
            .collect();
        c.draw_series(LineSeries::new(means, col.stroke_width(2)))?
            .label(&s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
    }
    legend(&mut c, text)?;
    area.present()?;
    Ok(())
}

/// A scatter plot, one colour per series (an empty white plot when there are no points).
pub fn scatter(
    dir: &Path,
    stem: &str,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
) -> PlotResult<Vec<PathBuf>> {
    let text = font_available();
    both!(dir, stem, |a| draw_scatter(a, title, (x_label, y_label), series, text))
}

fn draw_scatter<DB: DrawingBackend>(
    area: Area<DB>,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    text: bool,
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let all = || series.iter().flat_map(|s| s.points.iter());
    if all().next().is_none() {
        area.fill(&WHITE)?;
        area.present()?;
        return Ok(());
    }
    let (xr, yr) = (extent(all().map(|p| p.0)), extent(all().map(|p| p.1)));
    let mut c = chart(&area, title, text, padded(xr), padded(yr))?;
    if text {
        c.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 14)).draw()?;
    } else {
        c.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    for (i, s) in series.iter().enumerate() {
        let col = color(i);
        c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, col.mix(0.6).filled())))?
            .label(&s.name)
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
    }
    legend(&mut c, text)?;
    area.present()?;
    Ok(())
}

/// One image of a [`map_grid`]: a gray slice (values in [0, 1], row-major h x w) under a map of the
/// same size.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPanel {
    pub title: String,
    pub gray: Vec<f32>,
    pub map: Vec<f32>,
    pub h: usize,
    pub w: usize,
}

/// Inferno-like colour map of t in [0, 1].
fn heat(t: f64) -> [f64; 3] {
    const STOPS: [[f64; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [87.0, 16.0, 110.0],
        [188.0, 55.0, 84.0],
        [249.0, 142.0, 9.0],
        [252.0, 255.0, 164.0],
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let (i, f) = ((x.floor() as usize).min(STOPS.len() - 2), x - x.floor().min((STOPS.len() - 2) as f64));
    [0, 1, 2].map(|c| STOPS[i][c] + f * (STOPS[i + 1][c] - STOPS[i][c]))
}

/// Writes `path` (PNG): the panels in rows of `columns`, each its slice under its map at 55 % opacity
/// (the map's colour scale spans `range` in every panel), scaled to `cell` pixels on its longer side,
/// with its title above, the figure's `title` on top and a colour bar labelled `bar_label` at the right.
pub fn map_grid(
    path: &Path,
    title: &str,
    panels: &[MapPanel],
    columns: usize,
    cell: u32,
    range: (f64, f64),
    bar_label: &str,
) -> PlotResult<()> {
    const TOP: u32 = 36;
    const CAPTION: u32 = 22;
    const GAP: u32 = 10;
    const BAR: u32 = 110;
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1) as u32;
    let size = (columns as u32 * (cell + GAP) + GAP + BAR, TOP + rows * (cell + CAPTION + GAP) + GAP);
    let mut buf = vec![255u8; (size.0 * size.1 * 3) as usize];
    let (lo, hi) = (range.0, if range.1 > range.0 { range.1 } else { range.0 + 1e-12 });
    let mut put = |x: u32, y: u32, rgb: [f64; 3]| {
        let k = ((y * size.0 + x) * 3) as usize;
        for c in 0..3 {
            buf[k + c] = rgb[c].round().clamp(0.0, 255.0) as u8;
        }
    };
    let mut origins = Vec::new();
    for (i, p) in panels.iter().enumerate() {
        if p.gray.len() != p.h * p.w || p.map.len() != p.h * p.w || p.h == 0 || p.w == 0 {
            return Err(format!("map panel {:?}: sizes do not match {} x {}", p.title, p.h, p.w).into());
        }
        let (x0, y0) = (
            GAP + (i % columns) as u32 * (cell + GAP),
            TOP + (i / columns) as u32 * (cell + CAPTION + GAP) + CAPTION,
        );
        let scale = cell as f64 / p.h.max(p.w) as f64;
        let (dh, dw) = ((p.h as f64 * scale).round() as u32, (p.w as f64 * scale).round() as u32);
        for y in 0..dh {
            let sy = ((y as f64 / scale) as usize).min(p.h - 1);
            for x in 0..dw {
                let k = sy * p.w + ((x as f64 / scale) as usize).min(p.w - 1);
                let g = 255.0 * (p.gray[k] as f64).clamp(0.0, 1.0);
                let m = heat((p.map[k] as f64 - lo) / (hi - lo));
                put(x0 + x, y0 + y, m.map(|c| 0.45 * g + 0.55 * c));
            }
        }
        origins.push((x0, y0));
    }
    let (bx, by, bh) =
        (size.0 - BAR + 8, TOP + CAPTION, (size.1 - TOP - CAPTION - GAP - 24).min(cell * 2).max(2));
    for y in 0..bh {
        let rgb = heat(1.0 - y as f64 / (bh - 1).max(1) as f64);
        for x in 0..16 {
            put(bx + x, by + y, rgb);
        }
    }
    if font_available() {
        let area = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        let style = ("sans-serif", 16).into_font().color(&BLACK);
        area.draw_text(title, &("sans-serif", 20).into_font().color(&BLACK), (GAP as i32, 8))?;
        for (p, (x0, y0)) in panels.iter().zip(&origins) {
            area.draw_text(&p.title, &style, (*x0 as i32, *y0 as i32 - CAPTION as i32 + 3))?;
        }
        for k in 0..=4 {
            let v = hi - (hi - lo) * k as f64 / 4.0;
            let y = by as i32 + ((bh - 1) as f64 * k as f64 / 4.0) as i32 - 7;
            let label = if hi.abs().max(lo.abs()) >= 0.01 { format!("{v:.3}") } else { format!("{v:.2e}") };
            area.draw_text(&label, &("sans-serif", 13).into_font().color(&BLACK), (bx as i32 + 20, y))?;
        }
        area.draw_text(
            bar_label,
            &("sans-serif", 14).into_font().color(&BLACK),
            (bx as i32 - 4, by as i32 + bh as i32 + 4),
        )?;
        area.present()?;
    }
    write_png_sized(path, &buf, size)
}
