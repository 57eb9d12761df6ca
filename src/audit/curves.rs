//! The score of a reference as it is blurred, and as white noise is added to it.
use super::ascent::score_unit;
use super::Result;
use super::{check_noise_levels, check_sigmas};
use crate::criterion::QualityCriterion;
use crate::degrade::{self, Degradation};
use crate::error::Error;
use crate::filters;
use crate::rng::Rng;
use crate::window::Window;
use tch::{Kind, Tensor};

fn check_images(x: &Tensor, what: &str) -> Result<()> {
    let size = x.size();
    if size.len() != 4 || size[1] != 1 || !x.is_floating_point() {
        return Err(Error::InvalidInput(format!(
            "{what}: expected (N, 1, H, W) float images, got {:?} {size:?}",
            x.kind()
        ))
        .into());
    }
    Ok(())
}

/// Scores of `reference` (`(N, 1, H, W)` in [0, 1], the LDCTIQA window) blurred by a Gaussian of
/// each of `sigmas` ([`filters::gaussian`]; sigma 0 is the reference itself): `[image][sigma]`.
pub fn blur_curve(
    criterion: &dyn QualityCriterion,
    reference: &Tensor,
    sigmas: &[f64],
) -> Result<Vec<Vec<f64>>> {
    check_sigmas(sigmas)?;
    check_images(reference, "blur curve")?;
    let n = reference.size()[0] as usize;
    let mut curves = vec![Vec::with_capacity(sigmas.len()); n];
    for &sigma in sigmas {
        let blurred = filters::gaussian(&reference.to_kind(Kind::Float), sigma)?.f_clamp(0.0, 1.0)?;
        for (curve, s) in curves.iter_mut().zip(score_unit(criterion, &blurred)?) {
            curve.push(s);
        }
    }
    Ok(curves)
}

/// What [`noise_curve`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseCurve {
    /// `[image][level]`.
    pub scores: Vec<Vec<f64>>,
    /// rms (HU, over the body) of each low-dose image's noise, the unit of the levels.
    pub noise_hu: Vec<f64>,
}

/// Scores of `reference` with its noise replaced by white noise of `level` times the rms of the
/// noise of `low` (the low-dose image of the same slice), for each of `levels`
/// ([`Degradation::WhiteNoise`], in HU; level 0 is the reference). Both `(N, 1, H, W)` in [0, 1], the
/// LDCTIQA window. Image `i`'s noise is drawn from `seeds[i]` (one draw, scaled for every level).
pub fn noise_curve(
    criterion: &dyn QualityCriterion,
    low: &Tensor,
    reference: &Tensor,
    levels: &[f64],
    seeds: &[u64],
) -> Result<NoiseCurve> {
    check_noise_levels(levels)?;
    check_images(low, "noise curve")?;
    check_images(reference, "noise curve")?;
    let n = reference.size()[0];
    if low.size() != reference.size() || seeds.len() != n as usize {
        return Err(Error::InvalidInput(format!(
            "noise curve: low-dose images {:?}, references {:?} and {} seeds do not match",
            low.size(),
            reference.size(),
            seeds.len()
        ))
        .into());
    }
    let w = Window::LDCTIQA;
    let (low_hu, ref_hu) = (w.to_hu(&low.to_kind(Kind::Float))?, w.to_hu(&reference.to_kind(Kind::Float))?);
    let (h, wd) = (reference.size()[2], reference.size()[3]);
    let slice = |t: &Tensor, i: i64| t.f_get(i)?.f_view([h, wd]);
    let mut noise_hu = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (l, r) = (slice(&low_hu, i)?, slice(&ref_hu, i)?);
        noise_hu.push(degrade::measure(&Degradation::None, &l, &l, &r)?.scan_noise_hu);
    }
    let mut scores = vec![Vec::with_capacity(levels.len()); n as usize];
    for &level in levels {
        let noisy = (0..n)
            .map(|i| {
                let d = Degradation::WhiteNoise { level };
                let x = degrade::apply(&d, &slice(&low_hu, i)?, &slice(&ref_hu, i)?, seeds[i as usize])?;
                Ok(w.to_unit(&x)?.f_view([1, 1, h, wd])?)
            })
            .collect::<Result<Vec<_>>>()?;
        let noisy = Tensor::f_cat(&noisy, 0)?;
        for (curve, s) in scores.iter_mut().zip(score_unit(criterion, &noisy)?) {
            curve.push(s);
        }
    }
    Ok(NoiseCurve { scores, noise_hu })
}

/// The seed of image `index`'s noise in an audit seeded with `seed`.
pub(crate) fn image_seed(seed: u64, index: usize) -> u64 {
    Rng::derive(&[seed, index as u64]).next_u64()
}
