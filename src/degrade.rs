//! Ordered degradations and the perceptual label model: families of images whose quality order is
//! known without a reader (`ldctq simulate --families`, the trainer's order pairs).
//!
//! A [`Degradation`] acts on a slice in HU after reconstruction: over-smoothing filters (what
//! denoisers and soft kernels do) and texture mismatch (the scan's noise replaced by noise of a wrong
//! power spectrum). [`measure`] then compares the result `X` with the noise-free reference `C` and the
//! undegraded scan `L` (both reconstructions of the same slice), by three physical factors:
//!
//! * **noise ratio** `rho = rms(X - D(C)) / rms(L - C)` over the body (`C > -800 HU`): how much of the
//!   scan's noise and streaks is left (`D` the degradation's filter; 1 for the scan itself);
//! * **edge sigma** `s`: the blur of a 100 HU edge passed through `D` together with a patch of the
//!   scan's own noise, fitted as an error function (the *task transfer function* way of measuring the
//!   resolution of non-linear CT reconstructions: contrast- and noise-dependent), in pixels;
//! * **texture shift** `t = log2(f_X / f_L)`: how far the centroid of the noise power spectrum of
//!   `X - D(C)` moved from that of `L - C`, in octaves (blotchy, low-frequency noise: `t < 0`).
//!
//! The label ([`perceptual_label`]) starts from the scan's dose/views label
//! ([`crate::simulate::quality_label`]), credits noise removed as the equivalent dose
//! (`2 * LABEL_DOSE_SLOPE` points per halving of the noise, never above 4), and subtracts
//! [`LABEL_EDGE_SLOPE`] points per pixel of edge sigma and [`LABEL_TEXTURE_SLOPE`] points per octave of
//! texture shift, weighted by how visible the remaining noise is (its rms relative to the full-dose
//! scan's, at most 1). So a denoiser that removes noise gains, one that blurs or leaves blotches
//! loses, and blurring a full-dose image only loses.
//!
//! A [`Local`] degradation is confined to a [`Region`] of an otherwise untouched full-dose scan
//! ([`localize`], `ldctq simulate --localized`): the ground truth of the quality maps' pointing game.
use crate::error::{Error, Result};
use crate::filters;
use crate::rng::{derive_seed, Rng};
use crate::simulate::{self, quality_label, ScanParams, LABEL_DOSE_SLOPE};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Label points lost per pixel of edge sigma (see [`perceptual_label`]).
pub const LABEL_EDGE_SLOPE: f64 = 0.5;
/// Label points lost per octave of noise-texture shift at full visibility.
pub const LABEL_TEXTURE_SLOPE: f64 = 0.3;
/// Pixels above this HU are the body, where noise is measured.
const BODY_HU: f64 = -800.0;
/// Contrast of the edge that measures the resolution, HU.
const EDGE_HU: f64 = 100.0;

/// A degradation of a reconstructed slice in HU. Parameters in pixels and HU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Degradation {
    /// The scan as reconstructed.
    None,
    /// Gaussian blur (resolution loss; a Gaussian denoiser).
    Gaussian { sigma: f64 },
    /// Box mean over `size x size`.
    Box { size: i64 },
    /// Median over `size x size`.
    Median { size: i64 },
    /// Bilateral filter, range in HU.
    Bilateral { sigma_space: f64, sigma_range_hu: f64 },
    /// Total-variation (ROF) denoising, weight in HU.
    Tv { weight_hu: f64, iters: usize },
    /// The scan's noise replaced by white noise of `level` times its rms.
    WhiteNoise { level: f64 },
    /// The scan's noise replaced by blotchy noise (white noise smoothed by a Gaussian of `grain`
    /// pixels) of `level` times its rms: the texture of over-smoothing CNN denoisers.
    BlotchyNoise { level: f64, grain: f64 },
}

impl Degradation {
    /// The filter `D` of the degradation (identity for texture replacements), on `(N, 1, H, W)` HU.
    fn filter(&self, x: &Tensor) -> Result<Tensor> {
        match *self {
            Self::None | Self::WhiteNoise { .. } | Self::BlotchyNoise { .. } => Ok(x.shallow_clone()),
            Self::Gaussian { sigma } => filters::gaussian(x, sigma),
            Self::Box { size } => filters::box_mean(x, size),
            Self::Median { size } => filters::median(x, size),
            Self::Bilateral { sigma_space, sigma_range_hu } => {
                filters::bilateral(x, sigma_space, sigma_range_hu)
            }
            Self::Tv { weight_hu, iters } => filters::total_variation(x, weight_hu, iters),
        }
    }

    /// A short family name: `scan`, `smooth` (filters) or `texture`.
    pub fn family(&self) -> &'static str {
        match self {
            Self::None => "scan",
            Self::WhiteNoise { .. } | Self::BlotchyNoise { .. } => "texture",
            _ => "smooth",
        }
    }

    /// A random over-smoothing filter (Gaussian, box, median, bilateral or TV) of mild to strong
    /// strength, for a scan whose noise rms is `noise_hu`.
    pub fn random_smoothing(rng: &mut Rng, noise_hu: f64) -> Self {
        let u = rng.uniform();
        match rng.below(5) {
            0 => Self::Gaussian { sigma: 0.5 + 2.5 * u },
            1 => Self::Box { size: if u < 0.6 { 3 } else { 5 } },
            2 => Self::Median { size: if u < 0.6 { 3 } else { 5 } },
            3 => Self::Bilateral {
                sigma_space: 1.0 + 1.5 * u,
                sigma_range_hu: noise_hu.max(5.0) * (1.0 + 2.0 * rng.uniform()),
            },
            _ => Self::Tv { weight_hu: noise_hu.max(5.0) * (0.3 + 1.2 * u), iters: 40 },
        }
    }

    /// A random texture replacement at a noise level in [0.4, 1.2] of the scan's.
    pub fn random_texture(rng: &mut Rng) -> Self {
        let level = 0.4 + 0.8 * rng.uniform();
        if rng.below(3) == 0 {
            Self::WhiteNoise { level }
        } else {
            Self::BlotchyNoise { level, grain: 1.0 + 2.0 * rng.uniform() }
        }
    }
}

/// Applies `degradation` to the scan `low` (`(H, W)` HU) of the slice whose noise-free reference is
/// `clean`; texture noise is drawn from `seed`. Returns `(H, W)` HU, f32.
pub fn apply(degradation: &Degradation, low: &Tensor, clean: &Tensor, seed: u64) -> Result<Tensor> {
    let (h, w) = dims(low, clean)?;
    let low4 = low.to_kind(Kind::Float).f_view([1, 1, h, w])?;
    let out = match *degradation {
        Degradation::WhiteNoise { level } | Degradation::BlotchyNoise { level, .. } => {
            if !(level >= 0.0 && level.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "texture level must be finite and >= 0, got {level}"
                )));
            }
            let grain = match *degradation {
                Degradation::BlotchyNoise { grain, .. } => grain,
                _ => 0.0,
            };
            let noise_hu = body_rms(&low.f_sub(clean)?, clean)?;
            let n = unit_noise((h, w), grain, seed, low.device())?;
            clean.to_kind(Kind::Float).f_add(&n.f_mul_scalar(level * noise_hu)?)?
        }
        _ => degradation.filter(&low4)?.f_view([h, w])?,
    };
    Ok(out)
}

/// What [`measure`] found: the factors of [`perceptual_label`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// rms of the remaining noise over the scan's, `rho`.
    pub noise_ratio: f64,
    /// Edge sigma of the degradation in pixels (0 for the scan itself).
    pub edge_sigma: f64,
    /// Shift of the noise power spectrum's centroid, octaves.
    pub texture_octaves: f64,
    /// rms of the scan's noise over the body, HU.
    pub scan_noise_hu: f64,
}

/// Measures `x` (the degraded scan, `(H, W)` HU) against the scan `low` and the reference `clean`.
pub fn measure(degradation: &Degradation, x: &Tensor, low: &Tensor, clean: &Tensor) -> Result<Measured> {
    let (h, w) = dims(low, clean)?;
    let clean4 = clean.to_kind(Kind::Float).f_view([1, 1, h, w])?;
    let filtered_clean = degradation.filter(&clean4)?.f_view([h, w])?;
    let scan_noise = low.to_kind(Kind::Float).f_sub(clean)?;
    let left = x.to_kind(Kind::Float).f_sub(&filtered_clean)?;
    let scan_noise_hu = body_rms(&scan_noise, clean)?;
    let noise_ratio = if scan_noise_hu > 0.0 { body_rms(&left, clean)? / scan_noise_hu } else { 0.0 };
    let texture_octaves = match (nps_centroid(&left)?, nps_centroid(&scan_noise)?) {
        (Some(fx), Some(fl)) => (fx / fl).log2(),
        _ => 0.0,
    };
    Ok(Measured {
        noise_ratio,
        edge_sigma: edge_sigma(degradation, &scan_noise)?,
        texture_octaves,
        scan_noise_hu,
    })
}

/// The perceptual label in [0, 4] of a scan at `dose` and `views` (of `full_views`) degraded as
/// measured (see the module docs).
pub fn perceptual_label(dose: f64, views: i64, full_views: i64, m: &Measured) -> f64 {
    let base = quality_label(dose, views, full_views);
    let gain = 2.0 * LABEL_DOSE_SLOPE * (1.0 / m.noise_ratio.max(1e-3)).log2();
    let noise_term = (base + gain).min(4.0);
    // The remaining noise relative to a full-dose, full-view scan's (noise std ~ 1 / sqrt(photons)).
    let photons = dose.min(1.0) * (views as f64 / full_views.max(1) as f64).min(1.0);
    let visibility = (m.noise_ratio / photons.sqrt()).min(1.0);
    let blur = LABEL_EDGE_SLOPE * m.edge_sigma;
    let texture = LABEL_TEXTURE_SLOPE * m.texture_octaves.abs() * visibility;
    (noise_term - blur - texture).clamp(0.0, 4.0)
}

/// Unit-variance noise `(H, W)`: white, or smoothed by a Gaussian of `grain` pixels and rescaled.
fn unit_noise((h, w): (i64, i64), grain: f64, seed: u64, device: Device) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let values: Vec<f32> = (0..h * w).map(|_| rng.normal() as f32).collect();
    let mut n = Tensor::from_slice(&values).f_view([1, 1, h, w])?;
    if grain > 0.0 {
        n = filters::gaussian(&n, grain)?;
        let std = n.f_std(true)?.double_value(&[]).max(1e-12);
        n = n.f_div_scalar(std)?;
    }
    Ok(n.f_view([h, w])?.to_device(device))
}

/// Root mean square of `r` over the body of `clean` (all pixels if it has none).
fn body_rms(r: &Tensor, clean: &Tensor) -> Result<f64> {
    let mask = clean.f_gt(BODY_HU)?.to_kind(Kind::Double);
    let count = mask.f_sum(Kind::Double)?.double_value(&[]);
    let sq = r.to_kind(Kind::Double).f_square()?;
    Ok(if count > 0.0 {
        (sq.f_mul(&mask)?.f_sum(Kind::Double)?.double_value(&[]) / count).sqrt()
    } else {
        sq.f_mean(Kind::Double)?.double_value(&[]).sqrt()
    })
}

/// Centroid of the radial frequency (cycles per pixel) of the power spectrum of `r` (`(H, W)`) minus
/// its mean: where a noise image's power lies (lower: blotchier). `None` for a flat `r`.
pub fn nps_centroid(r: &Tensor) -> Result<Option<f64>> {
    let (h, w) = (r.size()[0], r.size()[1]);
    let r = r.to_kind(Kind::Double).to_device(Device::Cpu);
    let r = r.f_sub(&r.f_mean(Kind::Double)?)?;
    let power = r.f_fft_fft2(None::<&[i64]>, [0, 1], "backward")?.f_abs()?.f_square()?;
    let fy = Tensor::f_fft_fftfreq(h, 1.0, (Kind::Double, Device::Cpu))?.f_view([h, 1])?;
    let fx = Tensor::f_fft_fftfreq(w, 1.0, (Kind::Double, Device::Cpu))?.f_view([1, w])?;
    let f = fy.f_square()?.f_add(&fx.f_square()?)?.f_sqrt()?;
    let total = power.f_sum(Kind::Double)?.double_value(&[]);
    if total <= 0.0 {
        return Ok(None);
    }
    Ok(Some(power.f_mul(&f)?.f_sum(Kind::Double)?.double_value(&[]) / total))
}

/// Edge sigma of `degradation` (pixels), by [`edge_sigma_of`] its filter.
fn edge_sigma(degradation: &Degradation, scan_noise: &Tensor) -> Result<f64> {
    if matches!(
        degradation,
        Degradation::None | Degradation::WhiteNoise { .. } | Degradation::BlotchyNoise { .. }
    ) {
        return Ok(0.0);
    }
    edge_sigma_of(&|x| degradation.filter(x), scan_noise)
}

/// Edge sigma (pixels) of an image operator `f` on `(1, 1, n, n)` HU images, at the noise of
/// `scan_noise` (`(H, W)` HU, e.g. a low-dose scan minus its reference): a vertical 100 HU step plus a
/// centre patch of that noise (n = 64 or less) through `f`, minus `f` of the noise alone, averaged
/// along the edge and fitted by `a + b Phi((x - x0) / s)` over s in 0 .. 6 px (step 0.02). For a
/// linear `f` the noise cancels exactly; for a non-linear one (median, TV, a CNN) the result depends
/// on contrast and noise, as the task transfer function of CT does.
pub fn edge_sigma_of(f: &dyn Fn(&Tensor) -> Result<Tensor>, scan_noise: &Tensor) -> Result<f64> {
    let (h, w) = match scan_noise.size().as_slice() {
        &[h, w] if h >= 8 && w >= 8 => (h, w),
        s => {
            return Err(Error::InvalidInput(format!(
                "edge sigma: expected (H, W) noise of 8 x 8 or more, got {s:?}"
            )))
        }
    };
    let n = 64.min(h).min(w);
    let noise = scan_noise.to_kind(Kind::Float).f_narrow(0, (h - n) / 2, n)?.f_narrow(1, (w - n) / 2, n)?;
    let step: Vec<f32> = (0..n).map(|x| if x < n / 2 { 0.0 } else { EDGE_HU as f32 }).collect();
    let edge = Tensor::from_slice(&step).f_view([1, n])?.f_expand([n, n], false)?.to_device(noise.device());
    let out = f(&edge.f_add(&noise)?.f_view([1, 1, n, n])?)?;
    let noise_only = f(&noise.f_view([1, 1, n, n])?)?;
    let esf = out.f_sub(&noise_only)?.f_view([n, n])?.f_mean_dim(0, false, Kind::Double)?;
    let esf = Vec::<f64>::try_from(esf.to_device(Device::Cpu))?;
    // Phi((x - x0) / s) for every s of the grid (rows) at every x (columns); s = 0 is the step.
    let x0 = n as f64 / 2.0 - 0.5;
    let d = Tensor::f_arange(n, (Kind::Double, Device::Cpu))?.f_sub_scalar(x0)?.f_view([1, n])?;
    let s = Tensor::f_arange(301, (Kind::Double, Device::Cpu))?.f_mul_scalar(0.02)?.f_view([301, 1])?;
    let phi = d.f_div(&s.f_clamp_min(1e-9)?.f_mul_scalar(std::f64::consts::SQRT_2)?)?.f_erf()?;
    let phi = Vec::<f64>::try_from(phi.f_add_scalar(1.0)?.f_mul_scalar(0.5)?.f_flatten(0, -1)?)?;
    let (mut best, mut best_err) = (0.0, f64::INFINITY);
    for (i, row) in phi.chunks(n as usize).enumerate() {
        let err = least_squares_error(row, &esf);
        if err < best_err {
            (best, best_err) = (i as f64 * 0.02, err);
        }
    }
    Ok(best)
}

/// Residual of the best `a + b * phi` fit to `y`.
fn least_squares_error(phi: &[f64], y: &[f64]) -> f64 {
    let n = phi.len() as f64;
    let (mp, my) = (phi.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = phi.iter().zip(y).map(|(p, v)| (p - mp) * (v - my)).sum();
    let var: f64 = phi.iter().map(|p| (p - mp).powi(2)).sum();
    let b = if var > 0.0 { cov / var } else { 0.0 };
    phi.iter().zip(y).map(|(p, v)| (my + b * (p - mp) - v).powi(2)).sum()
}

fn dims(low: &Tensor, clean: &Tensor) -> Result<(i64, i64)> {
    match (low.size().as_slice(), clean.size().as_slice()) {
        (&[h, w], &[h2, w2]) if (h, w) == (h2, w2) && h >= 2 && w >= 2 => Ok((h, w)),
        (a, b) => Err(Error::InvalidInput(format!(
            "degrade: expected a scan and its reference of one (H, W) shape, got {a:?} and {b:?}"
        ))),
    }
}

/// A degradation confined to a region of a full-dose scan (see [`localize`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Local {
    /// A local dose drop: the scan at `dose` (fraction of full) inside the region.
    Noise { dose: f64 },
    /// Sparse-view streaks: the noise-free FBP of `views` views minus that of the full views, added
    /// inside the region.
    Streaks { views: i64 },
    /// Gaussian blur of `sigma` pixels inside the region.
    Blur { sigma: f64 },
}

impl Local {
    /// The kinds in the order `ldctq simulate --localized` cycles them.
    pub const KINDS: [&'static str; 3] = ["noise", "streaks", "blur"];

    /// Kind `kind mod 3` of [`Local::KINDS`] at a random strength: dose 0.03-0.15 (log-uniform),
    /// 1/6, 1/8 or 1/12 of `full_views` views, or blur sigma 1.5-3 px.
    pub fn random(kind: usize, rng: &mut Rng, full_views: i64) -> Self {
        let u = rng.uniform();
        match kind % 3 {
            0 => Self::Noise { dose: 0.03 * 5f64.powf(u) },
            1 => Self::Streaks { views: (full_views / [6, 8, 12][rng.below(3) as usize]).max(2) },
            _ => Self::Blur { sigma: 1.5 + 1.5 * u },
        }
    }

    /// The label of the whole scan so degraded, by the label model: [`quality_label`] at the dose or
    /// views, [`perceptual_label`]'s edge term for blur (a Gaussian's edge sigma is its sigma).
    pub fn full_label(&self, full_views: i64) -> f64 {
        match *self {
            Self::Noise { dose } => quality_label(dose, full_views, full_views),
            Self::Streaks { views } => quality_label(1.0, views, full_views),
            Self::Blur { sigma } => (4.0 - LABEL_EDGE_SLOPE * sigma).clamp(0.0, 4.0),
        }
    }
}

/// An ellipse in pixels: centre `(row, col)`, semi-axes `radii` (along the rotated rows and
/// columns), rotated by `angle` radians.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub centre: [f64; 2],
    pub radii: [f64; 2],
    pub angle: f64,
}

impl Region {
    /// A random ellipse with semi-axes of 5-12 % of the shorter side, centred in the body (`body`:
    /// `(H, W)` bool, eroded by 8 % of the shorter side when that leaves any pixel; the whole image
    /// when `body` has none).
    pub fn random(rng: &mut Rng, body: &Tensor) -> Result<Self> {
        let (h, w) = match body.size().as_slice() {
            &[h, w] if h >= 2 && w >= 2 => (h, w),
            s => return Err(Error::InvalidInput(format!("region: expected an (H, W) body mask, got {s:?}"))),
        };
        let side = h.min(w) as f64;
        let r = ((0.08 * side) as i64).max(1);
        let outside = body.f_logical_not()?.to_kind(Kind::Float).f_view([1, 1, h, w])?;
        let eroded = outside
            .f_max_pool2d([2 * r + 1, 2 * r + 1], [1, 1], [r, r], [1, 1], false)?
            .f_view([h, w])?
            .f_eq(0.0)?;
        let inside = [eroded, body.to_kind(Kind::Bool), Tensor::f_ones([h, w], (Kind::Bool, body.device()))?]
            .into_iter()
            .find(|m| m.f_any().map(|a| a.int64_value(&[]) != 0).unwrap_or(false))
            .expect("the last candidate is all true");
        let index = inside.f_flatten(0, -1)?.f_nonzero()?.to_device(Device::Cpu);
        let pick = index.int64_value(&[rng.below(index.size()[0] as u64) as i64, 0]);
        let mut radius = || side * (0.05 + 0.07 * rng.uniform());
        Ok(Self {
            centre: [(pick / w) as f64, (pick % w) as f64],
            radii: [radius(), radius()],
            angle: std::f64::consts::PI * rng.uniform(),
        })
    }

    /// The ellipse's pixels (centres inside it), `(H, W)` bool on `device`.
    pub fn mask(&self, h: i64, w: i64, device: Device) -> Result<Tensor> {
        let (s, c) = self.angle.sin_cos();
        let y = Tensor::f_arange(h, (Kind::Double, device))?.f_sub_scalar(self.centre[0])?.f_view([h, 1])?;
        let x = Tensor::f_arange(w, (Kind::Double, device))?.f_sub_scalar(self.centre[1])?.f_view([1, w])?;
        let u = (&y * c + &x * s) / self.radii[0];
        let v = (&x * c - &y * s) / self.radii[1];
        Ok(u.f_square()?.f_add(&v.f_square()?)?.f_le(1.0)?)
    }
}

/// The full-dose scan of `hu` (`(H, W)` HU; `params`' full views, dose 1, pixel size, filter and
/// seed) and that scan with `local` inside `mask` (`(H, W)` bool): `(localized, full)`, both
/// `(H, W)` HU. Hard edges: inside the mask the localized image is the degraded scan, outside it is
/// `full` bit for bit.
pub fn localize(local: &Local, hu: &Tensor, params: &ScanParams, mask: &Tensor) -> Result<(Tensor, Tensor)> {
    let (h, w) = dims(hu, mask)?;
    let full_scan = ScanParams { dose: 1.0, views: params.full_views, ..params.clone() };
    full_scan.validate()?;
    let atten = simulate::attenuation(hu, params.pixel_mm);
    let p = simulate::project(&atten, params.full_views)?;
    let fbp = |sino: &Tensor| -> Result<Tensor> {
        Ok(simulate::to_hu(&simulate::fbp(sino, h, w, params.filter)?, params.pixel_mm))
    };
    let full = fbp(&simulate::transmit(&p, &full_scan)?)?;
    let degraded = match *local {
        Local::Noise { dose } => {
            let seed = params.seed.map(|s| derive_seed(s, 1));
            let low = ScanParams { dose, seed, ..full_scan };
            low.validate()?;
            fbp(&simulate::transmit(&p, &low)?)?
        }
        Local::Streaks { views } => {
            ScanParams { views, ..full_scan.clone() }.validate()?;
            let sparse = if params.full_views % views == 0 {
                p.f_slice(0, 0, params.full_views, params.full_views / views)?
            } else {
                simulate::project(&atten, views)?
            };
            full.f_add(&fbp(&sparse)?.f_sub(&fbp(&p)?)?)?
        }
        Local::Blur { sigma } => filters::gaussian(&full.f_view([1, 1, h, w])?, sigma)?.f_view([h, w])?,
    };
    Ok((degraded.f_where_self(&mask.to_kind(Kind::Bool), &full)?, full))
}
