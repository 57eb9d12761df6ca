//! Source slices for the simulator ([`crate::simulate`]): procedural abdomen-like phantoms in HU, a
//! water cylinder, and augmentation of real CT slices (flip, 90-degree rotation, crop, bicubic
//! resampling).
//!
//! Phantoms are drawn with [`Rng`], a small PRNG in Rust, so a seed gives the same phantom on
//! every machine and device. Coordinates are normalised: the image spans `[-1, 1]` in `x` (columns,
//! left to right) and `y` (rows, top to bottom); at 512 pixels of 0.7 mm, 1 unit is 179 mm.
use crate::error::{Error, Result};
use crate::rng::{derive_seed, Rng};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// HU of air.
pub const AIR_HU: f64 = -1000.0;

/// How an ellipse changes the pixels it covers.
#[derive(Debug, Clone, Copy)]
enum Paint {
    /// Replace by this HU.
    Set(f64),
    /// Add this many HU.
    Add(f64),
}

/// An ellipse in normalised coordinates: centre, semi-axes, rotation (radians).
#[derive(Debug, Clone, Copy)]
struct Ellipse {
    cx: f64,
    cy: f64,
    ax: f64,
    ay: f64,
    angle: f64,
    paint: Paint,
}

/// A square HU image being painted, with 2 x 2 supersampled (anti-aliased) ellipse edges.
struct Canvas {
    size: usize,
    hu: Vec<f64>,
}

impl Canvas {
    fn new(size: usize, hu: f64) -> Self {
        Self { size, hu: vec![hu; size * size] }
    }

    /// Normalised coordinate of pixel index `i` plus a sub-pixel offset `o` (in pixels).
    fn coord(&self, i: usize, o: f64) -> f64 {
        (2.0 * (i as f64 + 0.5 + o)) / self.size as f64 - 1.0
    }

    fn paint(&mut self, e: Ellipse) {
        let n = self.size as f64;
        let reach = e.ax.max(e.ay);
        let to_px = |v: f64| (((v + 1.0) * n / 2.0).floor().max(0.0) as usize).min(self.size);
        let (x0, x1) = (to_px(e.cx - reach - 2.0 / n), to_px(e.cx + reach + 2.0 / n) + 1);
        let (y0, y1) = (to_px(e.cy - reach - 2.0 / n), to_px(e.cy + reach + 2.0 / n) + 1);
        let (s, c) = e.angle.sin_cos();
        for r in y0..y1.min(self.size) {
            for col in x0..x1.min(self.size) {
                let mut inside = 0.0;
                for (oy, ox) in [(-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25)] {
                    let (dx, dy) = (self.coord(col, ox) - e.cx, self.coord(r, oy) - e.cy);
                    let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
                    if (u / e.ax).powi(2) + (v / e.ay).powi(2) <= 1.0 {
                        inside += 0.25;
                    }
                }
                if inside > 0.0 {
                    let px = &mut self.hu[r * self.size + col];
                    *px = match e.paint {
                        Paint::Set(hu) => *px * (1.0 - inside) + hu * inside,
                        Paint::Add(delta) => *px + delta * inside,
                    };
                }
            }
        }
    }
}

/// A procedural abdomen-like slice, `(size, size)` HU, f32 on the CPU; the same for a seed on every
/// machine.
///
/// Air (-1000) around a body ellipse (31-34 cm wide at 512 px of 0.7 mm) with a subcutaneous fat rim
/// (-120..-80 HU) around soft tissue (30..50), visceral fat, a liver (50..70) and usually a spleen
/// (40..55), two kidneys (+20..+80), an aorta (40..200), a vertebra (cortex 700..1000, cancellous
/// 200..400, spinous process 400..900), 4-10 ribs (400..1000), 1-5 bowel loops with air pockets, and
/// 1-4 low-contrast lesions (+-10..30 HU), then a faint smooth texture (a few HU) on the soft
/// tissue. Sizes, positions, counts and values are drawn from the seed; the body is sometimes
/// mirrored left-right.
pub fn phantom(seed: u64, size: i64) -> Tensor {
    let mut rng = Rng::new(derive_seed(seed, 0x5048_414E));
    let size = size.max(2) as usize;
    let mut canvas = Canvas::new(size, AIR_HU);
    let mirror = if rng.chance(0.3) { -1.0 } else { 1.0 };
    let (bx, by) = (rng.range(-0.05, 0.05), rng.range(-0.02, 0.08));
    let (bax, bay) = (rng.range(0.70, 0.88), rng.range(0.50, 0.66));
    let tilt = rng.range(-0.08, 0.08);
    let ellipse = |cx: f64, cy: f64, ax: f64, ay: f64, angle: f64, paint: Paint| Ellipse {
        cx: bx + mirror * cx,
        cy: by + cy,
        ax,
        ay,
        angle: tilt + mirror * angle,
        paint,
    };
    let rim = rng.range(0.05, 0.12);
    let (iax, iay) = (bax - rim, bay - rim * rng.range(0.7, 1.0));
    let fat = rng.range(-120.0, -80.0);
    let mut shapes = vec![
        ellipse(0.0, 0.0, bax, bay, 0.0, Paint::Set(fat)),
        ellipse(0.0, 0.0, iax, iay, 0.0, Paint::Set(rng.range(30.0, 50.0))),
    ];
    for _ in 0..2 + rng.below(3) {
        let (cx, cy) = (rng.range(-0.5, 0.5) * iax, rng.range(-0.3, 0.5) * iay);
        let r = rng.range(0.04, 0.12);
        shapes.push(ellipse(cx, cy, r, r * rng.range(0.6, 1.0), rng.range(0.0, 3.2), Paint::Set(fat)));
    }
    // Liver (image left = patient right), spleen, kidneys.
    let liver = ellipse(
        -rng.range(0.35, 0.5) * iax,
        -rng.range(0.05, 0.25) * iay,
        rng.range(0.33, 0.45) * iax,
        rng.range(0.45, 0.6) * iay,
        rng.range(-0.5, 0.5),
        Paint::Set(rng.range(50.0, 70.0)),
    );
    shapes.push(liver);
    if rng.chance(0.8) {
        let (ax, ay) = (rng.range(0.1, 0.16) * iax, rng.range(0.2, 0.3) * iay);
        let paint = Paint::Set(rng.range(40.0, 55.0));
        shapes.push(ellipse(
            rng.range(0.5, 0.65) * iax,
            rng.range(0.0, 0.25) * iay,
            ax,
            ay,
            rng.range(-0.6, 0.6),
            paint,
        ));
    }
    let kidney_hu = rng.range(20.0, 80.0);
    for side in [-1.0, 1.0] {
        let (ax, ay) = (rng.range(0.08, 0.11) * iax, rng.range(0.14, 0.2) * iay);
        let (cx, cy) = (side * rng.range(0.28, 0.36) * iax, rng.range(0.35, 0.5) * iay);
        shapes.push(ellipse(
            cx,
            cy,
            ax,
            ay,
            side * rng.range(0.2, 0.6),
            Paint::Set(kidney_hu + rng.range(-5.0, 5.0)),
        ));
    }
    // Aorta, vertebra (cortex, cancellous bone, spinous process).
    let spine_y = rng.range(0.55, 0.68) * iay;
    let vr = rng.range(0.065, 0.09);
    let ar = rng.range(0.05, 0.07);
    shapes.push(ellipse(
        rng.range(0.02, 0.1),
        spine_y - vr - ar - 0.01,
        ar,
        ar,
        0.0,
        Paint::Set(rng.range(40.0, 200.0)),
    ));
    shapes.push(ellipse(0.0, spine_y, vr * 1.1, vr, 0.0, Paint::Set(rng.range(700.0, 1000.0))));
    shapes.push(ellipse(0.0, spine_y, vr * 0.85, vr * 0.75, 0.0, Paint::Set(rng.range(200.0, 400.0))));
    // The spinous process stays inside the body: its tip (centre + length) at most at the skin - 0.02.
    let process = rng.range(0.06, 0.1).min((bay - 0.02 - spine_y - vr) / 1.8).max(0.02);
    let process_y = spine_y + vr + process * 0.8;
    shapes.push(ellipse(0.0, process_y, process * 0.3, process, 0.0, Paint::Set(rng.range(400.0, 900.0))));
    // Ribs just inside the fat rim, on the sides and back.
    for _ in 0..4 + rng.below(7) {
        let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
        let phi = PI / 2.0 + side * rng.range(0.15, 0.8) * PI; // pi / 2 is the back
        let r = rng.range(0.018, 0.035);
        let (cx, cy) = ((iax - r - 0.01) * phi.cos(), (iay - r - 0.01) * phi.sin());
        shapes.push(ellipse(cx, cy, r * rng.range(1.0, 1.8), r, phi, Paint::Set(rng.range(400.0, 1000.0))));
    }
    // Bowel loops (wall of soft tissue around air) in front.
    for _ in 0..1 + rng.below(5) {
        let (cx, cy) = (rng.range(-0.4, 0.5) * iax, rng.range(-0.6, 0.1) * iay);
        let r = rng.range(0.02, 0.06);
        let angle = rng.range(0.0, 3.2);
        shapes.push(ellipse(cx, cy, r + 0.015, r * 0.8 + 0.015, angle, Paint::Set(rng.range(20.0, 45.0))));
        shapes.push(ellipse(cx, cy, r, r * 0.8, angle, Paint::Set(rng.range(-1000.0, -900.0))));
    }
    // Low-contrast lesions, mostly in the liver.
    for _ in 0..1 + rng.below(4) {
        let (cx, cy) = if rng.chance(0.6) {
            (
                liver.cx - bx + rng.range(-0.5, 0.5) * liver.ax * mirror,
                liver.cy - by + rng.range(-0.5, 0.5) * liver.ay,
            )
        } else {
            (rng.range(-0.2, 0.3) * iax * mirror, rng.range(-0.4, 0.2) * iay)
        };
        let r = rng.range(0.02, 0.06);
        let delta = rng.range(10.0, 30.0) * if rng.chance(0.6) { -1.0 } else { 1.0 };
        shapes.push(Ellipse {
            cx: cx + bx,
            cy: cy + by,
            ax: r,
            ay: r * rng.range(0.7, 1.0),
            angle: rng.range(0.0, 3.2),
            paint: Paint::Add(delta),
        });
    }
    for shape in shapes {
        canvas.paint(shape);
    }
    // Texture: a sum of a few plane waves on soft tissue (-200 .. 200 HU).
    let waves: Vec<(f64, f64, f64, f64)> = (0..6)
        .map(|_| {
            let (freq, dir) = (rng.range(3.0, 12.0) * PI, rng.range(0.0, PI));
            (freq * dir.cos(), freq * dir.sin(), rng.range(0.0, 6.3), rng.range(1.0, 3.0))
        })
        .collect();
    for r in 0..size {
        for c in 0..size {
            let px = &mut canvas.hu[r * size + c];
            if (-200.0..200.0).contains(px) {
                let (x, y) = (canvas_coord(size, c), canvas_coord(size, r));
                *px += waves.iter().map(|&(fx, fy, ph, amp)| amp * (fx * x + fy * y + ph).sin()).sum::<f64>();
            }
        }
    }
    let values: Vec<f32> = canvas.hu.iter().map(|&v| v as f32).collect();
    Tensor::from_slice(&values).view([size as i64, size as i64])
}

fn canvas_coord(size: usize, i: usize) -> f64 {
    (2.0 * i as f64 + 1.0) / size as f64 - 1.0
}

/// A uniform disc of `hu` with radius `radius` (normalised; 1 touches the edges) in air,
/// `(size, size)` f32 HU on the CPU, with anti-aliased edges.
pub fn cylinder(size: i64, radius: f64, hu: f64) -> Tensor {
    let size = size.max(2) as usize;
    let mut canvas = Canvas::new(size, AIR_HU);
    canvas.paint(Ellipse { cx: 0.0, cy: 0.0, ax: radius, ay: radius, angle: 0.0, paint: Paint::Set(hu) });
    let values: Vec<f32> = canvas.hu.iter().map(|&v| v as f32).collect();
    Tensor::from_slice(&values).view([size as i64, size as i64])
}

/// The augmentation applied to a real slice by [`augment`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Mirrored left-right (before the rotation).
    pub flip: bool,
    /// Rotated by this many quarter turns counter-clockwise.
    pub rot90: i64,
    /// Square crop `(top, left, side)` in pixels of the flipped and rotated slice.
    pub crop: (i64, i64, i64),
}

impl Augmentation {
    /// A random augmentation for an `(h, w)` slice: flip with probability 1/2, a uniform number of
    /// quarter turns, and a square crop whose side is `min_crop ..= 1` of the shorter side
    /// (uniform), at a uniform position.
    pub fn random(rng: &mut Rng, (h, w): (i64, i64), min_crop: f64) -> Self {
        let flip = rng.chance(0.5);
        let rot90 = rng.below(4) as i64;
        let (h, w) = if rot90 % 2 == 1 { (w, h) } else { (h, w) };
        let short = h.min(w);
        let side = ((rng.range(min_crop.clamp(0.0, 1.0), 1.0) * short as f64).round() as i64)
            .clamp(2.min(short), short);
        let top = rng.below((h - side + 1) as u64) as i64;
        let left = rng.below((w - side + 1) as u64) as i64;
        Self { flip, rot90, crop: (top, left, side) }
    }
}

/// `hu` (`(h, w)`) flipped, rotated and cropped by `aug`, then resampled to `(size, size)` by
/// bicubic interpolation (anti-aliased when shrinking) and clamped to `[-1024, 3071]` HU (the
/// overshoot of the interpolation, padding values below air); f32 on `hu`'s device.
pub fn augment(hu: &Tensor, aug: &Augmentation, size: i64) -> Result<Tensor> {
    let (h, w) = match hu.size().as_slice() {
        &[h, w] => (h, w),
        s => return Err(Error::InvalidInput(format!("slice: expected (H, W), got shape {s:?}"))),
    };
    let mut t = hu.to_kind(Kind::Float);
    if aug.flip {
        t = t.f_flip([1])?;
    }
    t = t.f_rot90(aug.rot90, [0, 1])?;
    let (h, w) = if aug.rot90 % 2 != 0 { (w, h) } else { (h, w) };
    let (top, left, side) = aug.crop;
    if side < 1 || top < 0 || left < 0 || top + side > h || left + side > w {
        return Err(Error::InvalidInput(format!("crop {:?} outside a {h} x {w} slice", aug.crop)));
    }
    let crop = t.f_narrow(0, top, side)?.f_narrow(1, left, side)?.contiguous().view([1, 1, side, side]);
    Ok(resize(&crop, size)?.view([size, size]).clamp(-1024.0, 3071.0))
}

/// Bicubic resampling of `(1, 1, h, w)` to `(1, 1, size, size)` (anti-aliased when shrinking).
fn resize(t: &Tensor, size: i64) -> Result<Tensor> {
    if t.size()[2..] == [size, size] {
        return Ok(t.shallow_clone());
    }
    Ok(t.f_internal_upsample_bicubic2d_aa([size, size], false, None, None)?)
}

/// The real CT slices bundled with the Python packages of a virtualenv, that exist: pydicom's
/// `CT_small.dcm` (128 x 128 thorax crop, 0.66 mm) and, from the `data_store` package,
/// `693_UNCI.dcm` (512 x 512 head, 0.48 mm). (`eCT_Supplemental.dcm` is left out: its rescale is in
/// functional groups, which [`crate::io::read_dicom`] does not apply.)
pub fn bundled_ct_slices(venv: &Path) -> Vec<PathBuf> {
    let rel = ["pydicom/data/test_files/CT_small.dcm", "data_store/data/693_UNCI.dcm"];
    let libs = std::fs::read_dir(venv.join("lib"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_else(|_| Vec::new());
    let mut found = Vec::new();
    for lib in
        libs.iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python")))
    {
        found.extend(rel.iter().map(|r| lib.join("site-packages").join(r)).filter(|p| p.is_file()));
    }
    found
}
