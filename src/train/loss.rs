//! The training loss (paper, section III-E): pairwise RankNet over the untied pairs of a batch plus an
//! optional MSE term.
use crate::error::Result;
use tch::{Kind, Tensor};

/// L = L_rank + lambda_mse * L_mse with
/// L_rank = mean over ordered pairs (i, j) with y_i != y_j of softplus(-sign(y_i - y_j) (s_i - s_j) / tau).
/// A batch with no untied pair gives L_rank = 0 (not NaN).
///
/// # Shapes
/// `pred`, `target`: (B) -> scalar
pub fn ranking_loss(pred: &Tensor, target: &Tensor, tau: f64, lambda_mse: f64) -> Tensor {
    let target = target.to_kind(pred.kind()).to_device(pred.device());
    let dp = pred.unsqueeze(1) - pred.unsqueeze(0); // (B, B): s_i - s_j
    let dy = target.unsqueeze(1) - target.unsqueeze(0); // (B, B): y_i - y_j
    let mask = dy.ne(0.0).to_kind(pred.kind());
    let terms = (dy.sign() * dp).neg().divide_scalar(tau).softplus() * &mask;
    let pairs = mask.sum(Kind::Float).clamp_min(1.0);
    let rank = terms.sum(pred.kind()) / pairs;
    if lambda_mse == 0.0 {
        rank
    } else {
        rank + (pred - &target).square().mean(pred.kind()) * lambda_mse
    }
}

/// Cosine between each image's score gradient and the way to its reference, `towards = reference - x`
/// (0 where the image equals its reference).
///
/// # Shapes
/// `grad`, `towards`: (B, ...) -> (B)
pub fn gradient_cosine(grad: &Tensor, towards: &Tensor) -> Tensor {
    let (g, d) = (grad.flatten(1, -1), towards.to_kind(grad.kind()).flatten(1, -1)); // (B, P)
    let dims = [1i64].as_slice();
    (&g * &d).sum_dim_intlist(dims, false, grad.kind())
        / (g.norm_scalaropt_dim(2, dims, false) * d.norm_scalaropt_dim(2, dims, false)).clamp_min(1e-30)
}

/// Gradient alignment: mean over the images that differ from their references of
/// `1 - cos(grad_i, towards_i)` ([`gradient_cosine`]), where `grad_i = d score_i / d x_i` (0 when
/// every image equals its reference). Minimising it turns the score's ascent direction towards the
/// reference.
///
/// # Shapes
/// `grad`, `towards`: (B, ...) -> scalar
pub fn alignment_loss(grad: &Tensor, towards: &Tensor) -> Tensor {
    let differs = towards.flatten(1, -1).abs().amax([1i64].as_slice(), false).gt(1e-6).to_kind(grad.kind()); // (B)
    ((gradient_cosine(grad, towards).neg() + 1.0) * &differs).sum(grad.kind())
        / differs.sum(grad.kind()).clamp_min(1.0)
}

/// The directions the alignment turns the gradient to: `reference - x` for the images labelled below
/// `below` (all when `None`), zero for the others, which [`alignment_loss`] then leaves out.
///
/// # Shapes
/// `x`, `references`: (B, ...), `labels`: (B) -> (B, ...)
pub fn alignment_directions(
    x: &Tensor,
    references: &Tensor,
    labels: &Tensor,
    below: Option<f64>,
) -> Result<Tensor> {
    let towards = references.f_sub(x)?;
    let Some(below) = below else { return Ok(towards) };
    let mut shape = vec![-1i64];
    shape.resize(x.dim(), 1); // (B, 1, ...)
    let keep = labels.f_lt(below)?.f_to_kind(towards.kind())?.f_to_device(towards.device())?;
    Ok(towards.f_mul(&keep.f_view(shape.as_slice())?)?)
}
