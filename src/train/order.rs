//! Weakly supervised order pairs: "an image is better than a degraded copy of itself", needing no
//! reader. Each training image of a micro-batch is paired with a copy degraded by one of the chosen
//! kinds, in the model's input space at the model's size, and the ranking loss asks for
//! `score(x) > score(degraded x)`:
//!
//! * `blur`: Gaussian blur, sigma 0.5-1.5 px (1-3 px at twice the model size);
//! * `oversmooth`: a 3 x 3 median or box filter, or a bilateral filter;
//! * `noise`: added white noise, std 0.5-3 % of the value range;
//! * `texture`: added blotchy noise (white noise smoothed by 1-2 px), std 0.5-2 % of the range;
//! * `offset`: a global shift of the values by 0.5-2 % of the range (7-28 HU in the LDCTIQA window):
//!   CT numbers off their calibration, as a denoiser trained on the score alone learns to do
//!   (docs/perceptual-loss.md);
//! * `sharpen`: an unsharp mask, `x + a (x - G_sigma x)`, a 0.5-1.5, sigma 1-2 px: edge overshoot and
//!   amplified noise, the other way of gaming the score seen there;
//! * `reference`: the image moved further from its set's reference (`reference/`, the noise-free
//!   full-dose reconstruction of simulated sets): `x + a (x - ref)`, a 0.4-1. Whatever the image's
//!   degradation (noise and streaks of the scan's own texture, blur, over-smoothing, blotches), more
//!   of it is worse: for a scan, its own noise 1.4-2 times stronger (the dose halved to quartered),
//!   the pair that ranks a slice's dose series; so the score's gradient points towards the reference.
//! * `detail`: the image's anatomy blurred and its noise kept, `x - ref + G_sigma ref`, sigma 0.5-1.5
//!   px (the set's `reference/`): lost sharpness with the same noise, worse at any dose. A plain blur
//!   removes noise and detail together, so its pairs hold only for images with little noise; these
//!   teach the loss of detail apart from the noise, which the dose pairs already rank.
//! * `adversarial`: [`ADVERSARIAL_STEPS`] steps of signed-gradient ascent on the model being
//!   trained, `x_{k+1} = x_k + (e / K) sign(d score / d x_k)`, e 0.25-2 % of the range, kept when it
//!   lies further from the set's reference than `x` (nearly always: the steps add up to e^2 per pixel
//!   to the squared error unless the gradient's signs point towards the reference). Adversarial
//!   training with the reference as the oracle: what `ldctq audit`'s gradient ascent exploits is
//!   paired as worse, so the score's ascent directions are pushed towards the reference. Measured on
//!   the default recipe, it also teaches that less high-frequency content is better, i.e. blur
//!   (docs/default-model.md).
//!
//! Smoothing can improve a noisy image and sharpening a blurred one, so `blur`, `oversmooth` and
//! `sharpen` pair only images labelled at least [`OrderPairs::min_label`]; added noise and a shifted
//! calibration always degrade, so `noise`, `texture` and `offset` pair any image, and `detail` any
//! image with a reference; `reference` and `adversarial` any image that differs from its reference.
//! Draws come from the run's seeded [`Rng`] (resumable like the rest of the trainer).
use crate::error::{Error, Result};
use crate::filters;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// A kind of order pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    Blur,
    Oversmooth,
    Noise,
    Texture,
    Offset,
    Sharpen,
    Reference,
    Detail,
    Adversarial,
}

impl OrderKind {
    /// Whether it changes sharpness (which can also improve an image): paired only for well-labelled
    /// images.
    fn changes_sharpness(self) -> bool {
        matches!(self, Self::Blur | Self::Oversmooth | Self::Sharpen)
    }

    /// Whether it needs the image's reference.
    pub fn needs_reference(self) -> bool {
        matches!(self, Self::Reference | Self::Detail | Self::Adversarial)
    }

    /// Whether it moves the image away from its reference (nothing to move from when they are equal).
    fn needs_difference(self) -> bool {
        matches!(self, Self::Reference | Self::Adversarial)
    }
}

impl std::str::FromStr for OrderKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "blur" => Ok(Self::Blur),
            "oversmooth" => Ok(Self::Oversmooth),
            "noise" => Ok(Self::Noise),
            "texture" => Ok(Self::Texture),
            "offset" => Ok(Self::Offset),
            "sharpen" => Ok(Self::Sharpen),
            "reference" => Ok(Self::Reference),
            "detail" => Ok(Self::Detail),
            "adversarial" => Ok(Self::Adversarial),
            other => Err(format!(
                "{other:?}: expected blur, oversmooth, noise, texture, offset, sharpen, reference, detail or adversarial"
            )),
        }
    }
}

/// Order-pair settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPairs {
    pub kinds: Vec<OrderKind>,
    /// Weight of the order term in the loss.
    pub weight: f64,
    /// Smallest label of an image paired with its blurred or over-smoothed copy.
    pub min_label: f64,
}

impl OrderPairs {
    pub fn validate(&self) -> Result<()> {
        if self.kinds.is_empty()
            || !(self.weight > 0.0 && self.weight.is_finite())
            || !self.min_label.is_finite()
        {
            return Err(Error::InvalidInput(format!(
                "order pairs: need at least one kind, a weight > 0 and a finite min label, got {self:?}"
            )));
        }
        Ok(())
    }

    /// Degraded copies of the eligible images of `x` (`(B, 1, S, S)`, labels `y` (B), references
    /// `refs` like `x` where the set has them) and their indices in the batch; `None` when no image is
    /// eligible. `value_range`: 1 for [0, 1] input, the window width for HU. `grad(images, at)`: the
    /// score's gradient with respect to `images`, the batch's images `at` (for `adversarial`).
    pub fn degrade(
        &self,
        x: &Tensor,
        refs: Option<&Tensor>,
        y: &Tensor,
        value_range: f64,
        rng: &mut Rng,
        grad: Option<&mut ScoreGrad>,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let labels = Vec::<f64>::try_from(y.to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
        let (mut copies, mut index) = (Vec::new(), Vec::new());
        let mut adversarial = Vec::new(); // (batch index, step)
        for (i, &label) in labels.iter().enumerate() {
            let xi = x.f_narrow(0, i as i64, 1)?;
            let residual = match refs {
                Some(r) => Some(xi.f_sub(&r.f_narrow(0, i as i64, 1)?)?), // x - ref
                None => None,
            };
            let differs = residual.as_ref().is_some_and(|d| d.abs().max().double_value(&[]) > 0.0);
            let eligible: Vec<OrderKind> = self
                .kinds
                .iter()
                .copied()
                .filter(|k| !k.changes_sharpness() || label >= self.min_label)
                .filter(|k| !k.needs_reference() || residual.is_some())
                .filter(|k| !k.needs_difference() || differs)
                .collect();
            if eligible.is_empty() {
                continue;
            }
            match eligible[rng.below(eligible.len() as u64) as usize] {
                OrderKind::Adversarial => adversarial.push((i as i64, rng.range(0.0025, 0.02) * value_range)),
                kind => {
                    copies.push(degrade_one(&xi, residual.as_ref(), kind, value_range, rng)?);
                    index.push(i as i64);
                }
            }
        }
        if let (Some(refs), false) = (refs, adversarial.is_empty()) {
            let grad = grad.ok_or_else(|| {
                Error::InvalidInput("adversarial pairs: no gradient of the score was given".into())
            })?;
            let at: Vec<i64> = adversarial.iter().map(|a| a.0).collect();
            let at_t = Tensor::from_slice(&at).to_device(x.device());
            let x0 = x.f_index_select(0, &at_t)?.f_detach()?;
            let steps: Vec<f64> = adversarial.iter().map(|a| a.1 / ADVERSARIAL_STEPS as f64).collect();
            let steps = Tensor::from_slice(&steps)
                .f_view([-1, 1, 1, 1])?
                .f_to_kind(x.kind())?
                .f_to_device(x.device())?;
            // x_{k+1} = x_k + (e / K) sign(grad(x_k)): K sign steps, within e of x in every pixel.
            let mut copy = x0.shallow_clone();
            for _ in 0..ADVERSARIAL_STEPS {
                copy = copy.f_add(&grad(&copy, &at)?.f_sign()?.f_mul(&steps)?)?;
            }
            let refs = refs.f_index_select(0, &at_t)?;
            let sq = |t: &Tensor| {
                t.f_sub(&refs)?.f_square()?.f_sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Double)
            };
            let further = Vec::<bool>::try_from(sq(&copy)?.f_gt_tensor(&sq(&x0)?)?)?;
            for (k, &i) in at.iter().enumerate().filter(|&(k, _)| further[k]) {
                copies.push(copy.f_narrow(0, k as i64, 1)?);
                index.push(i);
            }
        }
        if copies.is_empty() {
            return Ok(None);
        }
        Ok(Some((Tensor::f_cat(&copies, 0)?, Tensor::from_slice(&index).to_device(x.device()))))
    }
}

/// Sign steps of an `adversarial` copy (projected gradient ascent, Madry et al. 2018, with the step
/// split in K: the ascent `ldctq audit` runs takes 10).
pub const ADVERSARIAL_STEPS: usize = 3;

/// The score's gradient with respect to `images` (`(n, 1, S, S)`), the batch's images `at`.
pub type ScoreGrad<'a> = dyn FnMut(&Tensor, &[i64]) -> Result<Tensor> + 'a;

/// One degraded copy of `x` (`(1, 1, S, S)`; `residual`: `x` minus its reference, for `reference`).
fn degrade_one(
    x: &Tensor,
    residual: Option<&Tensor>,
    kind: OrderKind,
    value_range: f64,
    rng: &mut Rng,
) -> Result<Tensor> {
    let x = x.f_detach()?;
    Ok(match kind {
        OrderKind::Blur => filters::gaussian(&x, rng.range(0.5, 1.5))?,
        OrderKind::Oversmooth => match rng.below(3) {
            0 => filters::median(&x, 3)?,
            1 => filters::box_mean(&x, 3)?,
            _ => filters::bilateral(&x, 1.5, 0.05 * value_range)?,
        },
        OrderKind::Noise => x.f_add(&noise(&x, 0.0, rng.range(0.005, 0.03) * value_range, rng)?)?,
        OrderKind::Texture => {
            let grain = rng.range(1.0, 2.0);
            x.f_add(&noise(&x, grain, rng.range(0.005, 0.02) * value_range, rng)?)?
        }
        OrderKind::Offset => {
            let sign = if rng.below(2) == 0 { -1.0 } else { 1.0 };
            x.f_add_scalar(sign * rng.range(0.005, 0.02) * value_range)?
        }
        OrderKind::Sharpen => {
            let (amount, sigma) = (rng.range(0.5, 1.5), rng.range(1.0, 2.0));
            let detail = x.f_sub(&filters::gaussian(&x, sigma)?)?;
            x.f_add(&detail.f_mul_scalar(amount)?)?
        }
        OrderKind::Reference => {
            x.f_add(&needed_residual(residual, kind)?.f_mul_scalar(rng.range(0.4, 1.0))?)?
        }
        OrderKind::Detail => {
            let reference = x.f_sub(needed_residual(residual, kind)?)?;
            let lost = reference.f_sub(&filters::gaussian(&reference, rng.range(0.5, 1.5))?)?;
            x.f_sub(&lost)? // x - ref + G ref
        }
        OrderKind::Adversarial => {
            return Err(Error::InvalidInput("adversarial pairs are made from the batch's gradient".into()))
        }
    })
}

/// The residual `x - ref` a kind needs, or an error naming it.
fn needed_residual(residual: Option<&Tensor>, kind: OrderKind) -> Result<&Tensor> {
    residual.ok_or_else(|| Error::InvalidInput(format!("{kind:?} pairs: the image has no reference")))
}

/// Noise of `std` shaped like `x`: white, or smoothed by a Gaussian of `grain` px and rescaled.
fn noise(x: &Tensor, grain: f64, std: f64, rng: &mut Rng) -> Result<Tensor> {
    let n: Vec<f32> = (0..x.numel()).map(|_| rng.normal() as f32).collect();
    let mut n = Tensor::from_slice(&n).f_view(x.size().as_slice())?;
    if grain > 0.0 {
        n = filters::gaussian(&n, grain)?;
        n = n.f_div_scalar(n.f_std(true)?.double_value(&[]).max(1e-12))?;
    }
    Ok(n.f_mul_scalar(std)?.to_kind(x.kind()).to_device(x.device()))
}
