//! Low-dose CT simulation: parallel-beam projection, transmission noise and filtered back-projection
//! (FBP), all in `tch`, so it runs on the CPU or a GPU.
//!
//! Pipeline of [`simulate`] for a slice in HU, `(H, W)`, with pixels of `pixel_mm`:
//! 1. attenuation `mu = MU_WATER * (1 + HU / 1000)`, clamped to `>= 0` (air and below give 0);
//! 2. line integrals `p` over `views` angles `k * pi / views` (180 degrees), by rotating the image
//!    (a rotated sampling grid + bilinear `grid_sampler`, zeros outside) and summing along rays with a
//!    step of one pixel, times `pixel_mm`;
//! 3. counts `N = Poisson(I0 * dose * exp(-p)) + Normal(0, electronic_sigma)`, floored at
//!    [`COUNT_FLOOR`] photons, and `p = -ln(N / (I0 * dose))`;
//! 4. FBP: ramp filter (Ram-Lak, or Hann-apodized, [`Filter`]) along the detector by FFT with zero
//!    padding to a power of two `>= 2 * bins`, back-projection by linear interpolation at
//!    `t = x cos(theta) + y sin(theta)`, times `pi / views`; back to HU.
//!
//! Geometry: the detector has [`detector_bins`] bins of one pixel each, the image's diagonal plus a
//! margin (odd, centred on the rotation axis), so every ray through the rectangular image is measured:
//! there is no field-of-view mask and no truncation. The "full" scan has [`ScanParams::full_views`]
//! views (default [`FULL_VIEWS`] = 720: near the `(pi / 2) * 512 = 804` angles of angular Nyquist
//! sampling at 512 pixels, above the 402 of 256 pixels; the 1 HU streaks left at 512 pixels are the
//! same in reference and low-dose image). `I0` is per detector bin and per view, so a sparse-view
//! scan at the same `dose` also gets `views / full_views` of the total photons (as when a scanner
//! fires fewer projections at the same tube current).
//!
//! Noise levels with the defaults (std of low-dose minus reference in the middle of a phantom's
//! body, 31-34 cm wide): 12, 24 and 75 HU at doses 1, 0.25 and 0.05 at 256 pixels of 1.4 mm, and
//! 23, 50 and 141 HU at 512 pixels of 0.7 mm (the noise std goes as 1 / pixel size at fixed photons
//! per bin). Photon starvation at dose 0.05 also shifts the mean by about +9 HU.
//!
//! The *reference* ([`reconstruct_reference`]) is the noise-free FBP of the full scan of the same
//! slice through the same projector and filter, so that reference and low-dose image differ only by
//! noise and view-sampling streaks, not by blur.
//!
//! Randomness comes from libtorch's default generator of the tensor's device. With
//! [`ScanParams::seed`] set, the generator is re-seeded (`manual_seed`) under a process-wide lock
//! right before the draws, so a seed gives the same image on one device (and libtorch build); CPU
//! and CUDA draws differ. Other code drawing from libtorch's generator in other threads (dropout,
//! `randn`) at the same time is not locked out, and would see a re-seeded generator.
use crate::error::{Error, Result};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// Linear attenuation of water, 1/mm (about 70 keV).
pub const MU_WATER: f64 = 0.019;
/// Views over 180 degrees of a full scan by default.
pub const FULL_VIEWS: i64 = 720;
/// Counts are floored at this many photons before the log (zero or negative counts after
/// electronic noise would give an infinite line integral).
pub const COUNT_FLOOR: f64 = 1.0;
/// Label points lost per halving of the dose (see [`quality_label`]).
pub const LABEL_DOSE_SLOPE: f64 = 0.6;
/// Label points lost per halving of the views (see [`quality_label`]).
pub const LABEL_VIEWS_SLOPE: f64 = 0.5;
/// Standard deviation of the reader-like perturbation of [`reader_label`].
pub const LABEL_NOISE_STD: f64 = 0.2;
/// Elements (samples per chunk of angles) that bound the memory of projection and back-projection:
/// about 100 MB of f32 for the grid and the samples.
const CHUNK_ELEMENTS: i64 = 1 << 22;

/// Serialises seeding and drawing from libtorch's global generator.
static RNG: Mutex<()> = Mutex::new(());

/// The ramp filter of the FBP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    /// Ram-Lak (the band-limited ramp, spatial-domain form of Kak & Slaney): sharpest, noisiest.
    RamLak,
    /// Ram-Lak times a Hann window (1 at DC, 0 at Nyquist): a smooth, soft-tissue-like kernel.
    #[default]
    Hann,
}

/// A CT scan: dose, views, photons and noise, pixel size and reconstruction filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanParams {
    /// Fraction of the full dose per view, in `(0, 1]`.
    pub dose: f64,
    /// Projection angles over 180 degrees, `>= 2`.
    pub views: i64,
    /// Views of the full (reference) scan, `>= 2`.
    pub full_views: i64,
    /// Full-dose photons per detector bin and view, `> 0`; `f64::INFINITY` gives noise-free
    /// projections (view streaks only).
    pub i0: f64,
    /// Standard deviation of the Gaussian electronic noise, in photons, `>= 0`.
    pub electronic_sigma: f64,
    /// Pixel (and detector bin) size in mm, `> 0`.
    pub pixel_mm: f64,
    /// Reconstruction filter.
    pub filter: Filter,
    /// Seed of the noise (see the module docs); `None` draws from libtorch's generator as it stands.
    pub seed: Option<u64>,
}

impl Default for ScanParams {
    /// Full dose and views, `I0 = 1e5` photons (TIGRE's "standard clinical number"), electronic
    /// noise 5 photons, 0.7 mm pixels (a 358 mm field of view at 512 pixels), Hann filter, no seed.
    fn default() -> Self {
        Self {
            dose: 1.0,
            views: FULL_VIEWS,
            full_views: FULL_VIEWS,
            i0: 1e5,
            electronic_sigma: 5.0,
            pixel_mm: 0.7,
            filter: Filter::Hann,
            seed: None,
        }
    }
}

impl ScanParams {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidInput(format!("scan parameters: {msg}")));
        if !(self.dose > 0.0 && self.dose <= 1.0) {
            return bad(format!("dose {} is not in (0, 1]", self.dose));
        }
        if self.views < 2 || self.full_views < 2 {
            return bad(format!("views {} and full_views {} must be >= 2", self.views, self.full_views));
        }
        if self.i0.is_nan() || self.i0 <= 0.0 {
            return bad(format!("i0 {} must be > 0", self.i0));
        }
        if !(self.electronic_sigma >= 0.0 && self.electronic_sigma.is_finite()) {
            return bad(format!("electronic_sigma {} must be finite and >= 0", self.electronic_sigma));
        }
        if !(self.pixel_mm > 0.0 && self.pixel_mm.is_finite()) {
            return bad(format!("pixel_mm {} must be finite and > 0", self.pixel_mm));
        }
        Ok(())
    }
}

/// A low-dose reconstruction of `hu` (`(H, W)`, Hounsfield units), `(H, W)` in HU, f32, on `hu`'s
/// device.
pub fn simulate(hu: &Tensor, params: &ScanParams) -> Result<Tensor> {
    let (h, w) = check(hu, params)?;
    let p = project(&attenuation(hu, params.pixel_mm), params.views)?;
    Ok(to_hu(&fbp(&transmit(&p, params)?, h, w, params.filter)?, params.pixel_mm))
}

/// The noise-free FBP of the full scan (`params.full_views` views; dose, noise and seed unused),
/// `(H, W)` in HU.
pub fn reconstruct_reference(hu: &Tensor, params: &ScanParams) -> Result<Tensor> {
    let (h, w) = check(hu, params)?;
    let p = project(&attenuation(hu, params.pixel_mm), params.full_views)?;
    Ok(to_hu(&fbp(&p, h, w, params.filter)?, params.pixel_mm))
}

/// `(simulate(hu, params), reconstruct_reference(hu, params))` with one projection when `views`
/// divides `full_views` (the sparse angles are then a subset of the full ones).
pub fn simulate_pair(hu: &Tensor, params: &ScanParams) -> Result<(Tensor, Tensor)> {
    let (h, w) = check(hu, params)?;
    let atten = attenuation(hu, params.pixel_mm);
    let full = project(&atten, params.full_views)?;
    let reference = to_hu(&fbp(&full, h, w, params.filter)?, params.pixel_mm);
    let sparse = if params.full_views % params.views == 0 {
        full.slice(0, 0, params.full_views, params.full_views / params.views)
    } else {
        project(&atten, params.views)?
    };
    let low = to_hu(&fbp(&transmit(&sparse, params)?, h, w, params.filter)?, params.pixel_mm);
    Ok((low, reference))
}

/// Validates the parameters and a 2-D finite image of at least 2 x 2; returns `(H, W)`.
fn check(hu: &Tensor, params: &ScanParams) -> Result<(i64, i64)> {
    params.validate()?;
    let (h, w) = dims2(hu)?;
    if !matches!(hu.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(Error::InvalidInput(format!(
            "image: expected a floating-point tensor, got {:?}",
            hu.kind()
        )));
    }
    if hu.f_isfinite()?.f_all()?.int64_value(&[]) == 0 {
        return Err(Error::InvalidInput("image: has NaN or infinite values".into()));
    }
    Ok((h, w))
}

/// `(H, W)` of a 2-D tensor with both sides `>= 2`.
fn dims2(t: &Tensor) -> Result<(i64, i64)> {
    match t.size().as_slice() {
        &[h, w] if h >= 2 && w >= 2 => Ok((h, w)),
        s => Err(Error::InvalidInput(format!("image: expected (H, W) with H, W >= 2, got shape {s:?}"))),
    }
}

/// Attenuation per pixel, `mu * pixel_mm` (dimensionless, so that sums along rays with a step of one
/// pixel are line integrals), f32.
pub fn attenuation(hu: &Tensor, pixel_mm: f64) -> Tensor {
    ((hu.to_kind(Kind::Float) / 1000.0 + 1.0) * (MU_WATER * pixel_mm)).clamp_min(0.0)
}

/// HU from attenuation per pixel (the inverse of [`attenuation`] above -1000 HU).
pub fn to_hu(atten: &Tensor, pixel_mm: f64) -> Tensor {
    (atten / (MU_WATER * pixel_mm) - 1.0) * 1000.0
}

/// Detector bins for an `(H, W)` image: `ceil(diagonal) + 2` (bilinear support), made odd so that
/// the middle bin is on the rotation axis.
pub fn detector_bins(h: i64, w: i64) -> i64 {
    let d = ((h * h + w * w) as f64).sqrt().ceil() as i64 + 2;
    d | 1
}

/// Sampling grids of the views `ks` (of `views` over 180 degrees), `(ks.len(), rows, cols, 2)` in
/// `grid_sampler`'s normalised coordinates, for output pixels at `u = 2 col + 1 - cols` and
/// `v = 2 row + 1 - rows` (twice their offsets from the centre): `u * a(theta) + v * b(theta)`.
/// An expanded copy and an in-place add: `affine_grid_generator` (a batched matmul) and a broadcast
/// add are several times slower on the CPU.
fn grid(
    ks: &[i64],
    views: i64,
    (rows, cols): (i64, i64),
    (a, b): (Axis, Axis),
    device: Device,
) -> Result<Tensor> {
    let n = ks.len() as i64;
    let (mut av, mut bv) = (Vec::with_capacity(2 * ks.len()), Vec::with_capacity(2 * ks.len()));
    for &k in ks {
        let (s, c) = (k as f64 * PI / views as f64).sin_cos();
        av.extend(a(c, s).map(|x| x as f32));
        bv.extend(b(c, s).map(|x| x as f32));
    }
    let offsets = |m: i64| Tensor::f_arange(m, (Kind::Float, device)).map(|t| t * 2.0 + (1 - m) as f64);
    let a = Tensor::from_slice(&av).to_device(device).view([n, 1, 1, 2]);
    let b = Tensor::from_slice(&bv).to_device(device).view([n, 1, 1, 2]);
    let across = offsets(cols)?.view([1, 1, cols, 1]) * a; // (n, 1, cols, 2)
    let down = offsets(rows)?.view([1, rows, 1, 1]) * b; // (n, rows, 1, 2)
    let mut grid = across.f_expand([n, rows, cols, 2], false)?.contiguous();
    grid += down;
    Ok(grid)
}

/// A grid axis as a function of `(cos, sin)` of the view angle.
type Axis = Box<dyn Fn(f64, f64) -> [f64; 2]>;

/// The views that the symmetries of a square image give from one grid: for base views
/// `k = 0 ..= views / 4` (angles up to 45 degrees), views `[k, V/2 - k, k + V/2, V - k]` are the
/// base view of `[f, f^T, flip_rows(f^T), flip_cols(f)]`; `None` where out of range or already
/// taken. Needs an even `views`.
fn symmetric_plan(views: i64) -> Vec<[Option<i64>; 4]> {
    let mut taken = vec![false; views as usize];
    (0..=views / 4)
        .map(|k| {
            [k, views / 2 - k, k + views / 2, views - k]
                .map(|v| (v < views && !std::mem::replace(&mut taken[v as usize], true)).then_some(v))
        })
        .collect()
}

/// Whether an `(h, w)` image at `views` uses [`symmetric_plan`] (square and `views` even).
fn symmetric(h: i64, w: i64, views: i64) -> bool {
    h == w && views % 2 == 0
}

/// Parallel-beam line integrals of `image` (`(H, W)`, attenuation per pixel) at `views` angles
/// `k * pi / views`: `(views, detector_bins(H, W))`, f32. Bin `j` is at `t = j - (bins - 1) / 2`
/// pixels from the axis; the ray at angle `theta` and `t` runs along `(-sin, cos)` through
/// `t * (cos, sin)`, with `x` along columns and `y` along rows from the image centre. Square images
/// and an even number of views share each sampling grid among four views (`symmetric_plan`).
pub fn project(image: &Tensor, views: i64) -> Result<Tensor> {
    let (h, w) = dims2(image)?;
    if views < 1 {
        return Err(Error::InvalidInput(format!("views {views} must be >= 1")));
    }
    let f = image.to_kind(Kind::Float);
    if !symmetric(h, w, views) {
        return project_views(&[f], &(0..views).collect::<Vec<_>>(), views).map(|mut p| p.remove(0));
    }
    let plan = symmetric_plan(views);
    let ft = f.f_transpose(0, 1)?;
    let images = [f.shallow_clone(), ft.shallow_clone(), ft.f_flip([0])?, f.f_flip([1])?];
    let base: Vec<i64> = (0..plan.len() as i64).collect();
    let all = Tensor::f_cat(&project_views(&images, &base, views)?, 0)?; // (4 * base, bins)
    let mut source = vec![-1i64; views as usize];
    for (k, targets) in plan.iter().enumerate() {
        for (j, v) in targets.iter().enumerate() {
            if let Some(v) = v {
                source[*v as usize] = (j * plan.len() + k) as i64;
            }
        }
    }
    debug_assert!(source.iter().all(|&s| s >= 0), "every view is planned");
    Ok(all.f_index_select(0, &Tensor::from_slice(&source).to_device(image.device()))?)
}

/// Line integrals of each `(H, W)` image at the views `ks` of `views`: one `(ks.len(), bins)` each,
/// sharing the sampling grids.
fn project_views(images: &[Tensor], ks: &[i64], views: i64) -> Result<Vec<Tensor>> {
    let (h, w) = dims2(&images[0])?;
    let (d, device) = (detector_bins(h, w), images[0].device());
    let inputs: Vec<Tensor> = images.iter().map(|f| f.contiguous().view([1, 1, h, w])).collect();
    let chunk = (CHUNK_ELEMENTS / (d * d)).max(1) as usize;
    let mut parts: Vec<Vec<Tensor>> = images.iter().map(|_| Vec::new()).collect();
    // Output pixel (row s, column t) of view k samples the image at t (cos, sin) + s (-sin, cos),
    // in grid_sampler's normalised coordinates (2 x / W, 2 y / H).
    let (sx, sy) = (1.0 / w as f64, 1.0 / h as f64);
    for ks in ks.chunks(chunk) {
        let n = ks.len() as i64;
        let (along_t, along_s): (Axis, Axis) =
            (Box::new(move |c, s| [c * sx, s * sy]), Box::new(move |c, s| [-s * sx, c * sy]));
        let grid = grid(ks, views, (d, d), (along_t, along_s), device)?.f_view([1, n * d, d, 2])?;
        for (input, out) in inputs.iter().zip(&mut parts) {
            let rays = input.f_grid_sampler_2d(&grid, 0, 0, false)?; // (1, 1, n * d, d)
            out.push(rays.f_view([n, d, d])?.f_sum_dim_intlist(1, false, Kind::Float)?);
        }
    }
    parts.iter().map(|p| Ok(Tensor::f_cat(p, 0)?)).collect()
}

/// The FBP filter's frequency response for `padded` samples: `(padded / 2 + 1,)` f32, real.
fn ramp(padded: i64, filter: Filter, device: Device) -> Result<Tensor> {
    // Spatial Ram-Lak with unit spacing: h(0) = 1/4, h(n odd) = -1 / (pi n)^2, h(n even) = 0.
    let h: Vec<f64> = (0..padded)
        .map(|i| match i.min(padded - i) {
            0 => 0.25,
            n if n % 2 == 1 => -1.0 / (PI * n as f64).powi(2),
            _ => 0.0,
        })
        .collect();
    let mut response = Tensor::from_slice(&h).f_fft_rfft(None, 0, "backward")?.f_real()?;
    if filter == Filter::Hann {
        let k = Tensor::f_arange(padded / 2 + 1, (Kind::Double, Device::Cpu))?;
        response = response * ((k * (2.0 * PI / padded as f64)).cos() + 1.0) * 0.5;
    }
    Ok(response.to_kind(Kind::Float).to_device(device))
}

/// FBP of line integrals `sino` (`(views, bins)` at angles `k * pi / views`, as from [`project`])
/// onto an `(H, W)` grid: attenuation per pixel, f32.
pub fn fbp(sino: &Tensor, h: i64, w: i64, filter: Filter) -> Result<Tensor> {
    let (views, d) = match sino.size().as_slice() {
        &[v, d] if v >= 1 && d >= 1 => (v, d),
        s => return Err(Error::InvalidInput(format!("sinogram: expected (views, bins), got shape {s:?}"))),
    };
    if h < 1 || w < 1 {
        return Err(Error::InvalidInput(format!("fbp: output size {h} x {w}")));
    }
    let device = sino.device();
    let padded = (2 * d as u64).next_power_of_two() as i64;
    let response = ramp(padded, filter, device)?;
    let spectrum = sino.to_kind(Kind::Float).f_fft_rfft(padded, -1, "backward")? * response;
    let filtered = spectrum.f_fft_irfft(padded, -1, "backward")?.f_narrow(-1, 0, d)?.contiguous();
    let image = if symmetric(h, w, views) {
        // Rows of view [k, V/2 - k, k + V/2, V - k] back-projected at angle k, then transposed and
        // flipped into place (row `views` is zeros, for views out of range or taken).
        let plan = symmetric_plan(views);
        let padded_rows = Tensor::f_cat(&[&filtered, &Tensor::f_zeros([1, d], (Kind::Float, device))?], 0)?;
        let rows: Vec<Tensor> = (0..4)
            .map(|j| {
                let index: Vec<i64> = plan.iter().map(|t| t[j].unwrap_or(views)).collect();
                padded_rows.f_index_select(0, &Tensor::from_slice(&index).to_device(device))
            })
            .collect::<std::result::Result<_, _>>()?;
        let base: Vec<i64> = (0..plan.len() as i64).collect();
        let m = backproject_views(&rows, &base, views, (h, w))?;
        &m[0] + m[1].f_transpose(0, 1)? + m[2].f_transpose(0, 1)?.f_flip([1])? + m[3].f_flip([1])?
    } else {
        backproject_views(&[filtered], &(0..views).collect::<Vec<_>>(), views, (h, w))?.remove(0)
    };
    Ok(image * (PI / views as f64))
}

/// Back-projection of each `(ks.len(), bins)` set of rows at the views `ks` of `views` onto an
/// `(h, w)` grid, summed over the views: one `(h, w)` per set, sharing the sampling grids.
fn backproject_views(rows: &[Tensor], ks: &[i64], views: i64, (h, w): (i64, i64)) -> Result<Vec<Tensor>> {
    let (d, device) = (rows[0].size()[1], rows[0].device());
    let chunk = (CHUNK_ELEMENTS / (h * w)).max(1) as usize;
    let mut images = rows
        .iter()
        .map(|_| Tensor::f_zeros([h, w], (Kind::Float, device)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Pixel (x, y) of view k reads bin t = x cos + y sin (normalised 2 t / bins, row 0) of its own
    // (1 x bins) row.
    let inv = 1.0 / d as f64;
    for (i, ks) in ks.chunks(chunk).enumerate() {
        let n = ks.len() as i64;
        let (along_x, along_y): (Axis, Axis) =
            (Box::new(move |c, _| [c * inv, 0.0]), Box::new(move |_, s| [s * inv, 0.0]));
        let grid = grid(ks, views, (h, w), (along_x, along_y), device)?;
        for (set, image) in rows.iter().zip(&mut images) {
            let chunk_rows = set.f_narrow(0, (i * chunk) as i64, n)?.f_view([n, 1, 1, d])?;
            let back = chunk_rows.f_grid_sampler_2d(&grid, 0, 0, false)?; // (n, 1, h, w)
            *image += back.f_sum_dim_intlist(0, false, Kind::Float)?.f_view([h, w])?;
        }
    }
    Ok(images)
}

/// Noisy line integrals: transmission Poisson plus electronic Gaussian noise on the counts
/// `I0 * dose * exp(-p)` (see the module docs); `p` itself when `i0` is infinite.
pub fn transmit(p: &Tensor, params: &ScanParams) -> Result<Tensor> {
    if params.i0.is_infinite() {
        return Ok(p.shallow_clone());
    }
    let photons = params.i0 * params.dose;
    let expected = p.to_kind(Kind::Float).f_neg()?.f_exp()? * photons;
    let counts = {
        let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seed) = params.seed {
            tch::manual_seed(seed as i64);
        }
        let counts = expected.f_poisson()?;
        if params.electronic_sigma > 0.0 {
            counts + expected.f_randn_like()? * params.electronic_sigma
        } else {
            counts
        }
    };
    Ok((counts.f_clamp_min(COUNT_FLOOR)? / photons).f_log()?.f_neg()?)
}

/// The noise-free quality label in `[0, 4]` of a scan at `dose` (fraction of full) and `views` (of
/// `full_views`): `4 - 0.6 log2(1 / dose) - 0.5 log2(full_views / views)`, clamped to `[0, 4]`
/// ([`LABEL_DOSE_SLOPE`], [`LABEL_VIEWS_SLOPE`]). Non-decreasing in `dose` and in `views`; doses and
/// views above full count as full. Doses 1 .. 0.05 and views 720 .. 90 span 4 .. 0: dose 0.25 alone
/// gives 2.8, dose 0.05 alone 1.41, 180 of 720 views alone 3.0, both 0.05 and 90 views 0.
pub fn quality_label(dose: f64, views: i64, full_views: i64) -> f64 {
    let dose_term = (1.0 / dose).log2().max(0.0);
    let views_term = (full_views.max(1) as f64 / views.max(1) as f64).log2().max(0.0);
    (4.0 - LABEL_DOSE_SLOPE * dose_term - LABEL_VIEWS_SLOPE * views_term).clamp(0.0, 4.0)
}

/// A reader-like label: `clean + Normal(0, 0.2)` (seeded, the same on every device), rounded to a
/// multiple of 0.2 and clamped to `[0, 4]`, like an average of five readers' integer scores.
pub fn reader_label(clean: f64, seed: u64) -> f64 {
    let noisy = clean + LABEL_NOISE_STD * Rng::new(seed).normal();
    ((noisy * 5.0).round() / 5.0).clamp(0.0, 4.0) + 0.0 // + 0.0: no negative zero
}
