//! Projected gradient ascent on the score within an L-infinity ball.
use super::AuditError;
use super::Result;
use crate::criterion::QualityCriterion;
use crate::error::Error;
use crate::window::{Space, Window};
use tch::{Kind, Tensor};

/// Settings of [`ascend`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ascent {
    /// Radius of the L-infinity ball around the start, in [0, 1] units.
    pub epsilon: f64,
    pub steps: usize,
    /// Change of every pixel per step (the step is `step_size * sign(gradient)`).
    pub step_size: f64,
}

impl Ascent {
    pub fn validate(&self) -> Result<(), AuditError> {
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(AuditError::Epsilon(self.epsilon));
        }
        if self.steps == 0 {
            return Err(AuditError::Steps);
        }
        if !(self.step_size > 0.0 && self.step_size.is_finite()) {
            return Err(AuditError::StepSize(self.step_size));
        }
        Ok(())
    }
}

/// What [`ascend`] calls at every iterate: `(k, x_k, scores_k)`.
pub type OnStep<'a> = dyn FnMut(usize, &Tensor, &[f64]) -> Result<()> + 'a;

/// What [`ascend`] found.
#[derive(Debug)]
pub struct AscentOutcome {
    /// Each image's best-scoring iterate (the start when no step raised its score), `(N, 1, H, W)`.
    pub images: Tensor,
    /// Scores of the start.
    pub start_scores: Vec<f64>,
    /// The score's gradient at the start (the ascent's first direction before its sign), `(N, 1, H, W)`.
    pub start_grad: Tensor,
    /// Scores of [`AscentOutcome::images`].
    pub scores: Vec<f64>,
}

/// Scores of `[0, 1]` images and their gradient with respect to those images, whatever the
/// criterion's input space (the LDCTIQA window relates the two).
fn score_and_grad_unit(criterion: &dyn QualityCriterion, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let input = criterion.info().input;
    let (s, g) = criterion.score_and_grad(&Window::LDCTIQA.convert(x, Space::Unit, input)?, None)?;
    // d hu / d unit = the window's width.
    let g = if input == Space::Hu { g.f_mul_scalar(Window::LDCTIQA.width)? } else { g };
    Ok((s, g))
}

/// Scores of `[0, 1]` images, without a graph.
pub(crate) fn score_unit(criterion: &dyn QualityCriterion, x: &Tensor) -> Result<Vec<f64>> {
    let input = criterion.info().input;
    let s =
        tch::no_grad(|| criterion.score(&Window::LDCTIQA.convert(&x.f_detach()?, Space::Unit, input)?))?;
    to_vec(&s)
}

pub(crate) fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?.f_reshape([-1])?)?)
}

/// Projected gradient ascent on the score of `images` (`(N, 1, H, W)` in [0, 1], the LDCTIQA
/// window): `x <- clip(x + step_size * sign(grad), max(x0 - epsilon, 0), min(x0 + epsilon, 1))`,
/// `steps` times from `x0 = images`. Returns each image's best-scoring iterate, so its score is never
/// below the start's. `on_step(k, x_k, scores_k)` sees every iterate, `k` in `0..=steps`.
///
/// The signed gradient is the steepest ascent direction in the L-infinity norm (the fast gradient
/// sign method, iterated: Madry et al. 2018).
pub fn ascend(
    criterion: &dyn QualityCriterion,
    images: &Tensor,
    ascent: &Ascent,
    on_step: &mut OnStep,
) -> Result<AscentOutcome> {
    ascent.validate()?;
    let size = images.size();
    if size.len() != 4 || size[1] != 1 || !images.is_floating_point() {
        return Err(Error::InvalidInput(format!(
            "ascent: expected (N, 1, H, W) float images, got {:?} {size:?}",
            images.kind()
        ))
        .into());
    }
    let x0 = images.f_detach()?.f_clamp(0.0, 1.0)?;
    let lo = x0.f_sub_scalar(ascent.epsilon)?.f_clamp_min(0.0)?;
    let hi = x0.f_add_scalar(ascent.epsilon)?.f_clamp_max(1.0)?;
    let mut x = x0.shallow_clone();
    let mut best = x0.shallow_clone();
    let mut best_scores: Option<Tensor> = None;
    let (mut start_scores, mut start_grad) = (Vec::new(), None);
    // Keeps, per image, the iterate `x` where its scores `s` beat the best so far.
    let mut keep = |x: &Tensor, s: &Tensor, best: &mut Tensor| -> Result<()> {
        let s = s.f_to_kind(Kind::Double)?.f_to_device(x.device())?;
        best_scores = Some(match best_scores.take() {
            None => {
                *best = x.shallow_clone();
                s
            }
            Some(b) => {
                let better = s.f_gt_tensor(&b)?;
                *best = x.f_where_self(&better.f_view([-1, 1, 1, 1])?, best)?;
                s.f_maximum(&b)?
            }
        });
        Ok(())
    };
    for k in 0..ascent.steps {
        let (s, g) = score_and_grad_unit(criterion, &x)?;
        let scores = to_vec(&s)?;
        if k == 0 {
            start_scores = scores.clone();
            start_grad = Some(g.shallow_clone());
        }
        on_step(k, &x, &scores)?;
        keep(&x, &s, &mut best)?;
        let step = g.f_sign()?.f_to_kind(x.kind())?.f_mul_scalar(ascent.step_size)?;
        x = x.f_add(&step)?.f_clamp_tensor(Some(&lo), Some(&hi))?;
    }
    let s = Tensor::from_slice(&score_unit(criterion, &x)?);
    on_step(ascent.steps, &x, &to_vec(&s)?)?;
    keep(&x, &s, &mut best)?;
    let scores = to_vec(best_scores.as_ref().expect("at least one step"))?;
    let start_grad = start_grad.expect("at least one step");
    Ok(AscentOutcome { images: best, start_scores, start_grad, scores })
}
