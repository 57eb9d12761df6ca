//! The training loss (paper, section III-E): pairwise RankNet over the untied pairs of a batch plus an
//! optional MSE term.
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
