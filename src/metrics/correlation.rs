//! Agreement with labels (PLCC, SROCC, KROCC, MAE, RMSE) and the paired statistics of the benchmark.
use std::f64::consts::{PI, SQRT_2};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Which argument a [`MetricError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Predictions,
    Labels,
    /// The sample of a one-sample statistic ([`bootstrap_ci`]).
    Values,
    /// The paired differences of [`wilcoxon_signed_rank`].
    Differences,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Predictions => "predictions",
            Input::Labels => "labels",
            Input::Values => "values",
            Input::Differences => "differences",
        })
    }
}

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricError {
    #[error("length mismatch: {predictions} predictions but {labels} labels")]
    LengthMismatch { predictions: usize, labels: usize },
    #[error("too few {input}: need at least {needed}, got {got}")]
    TooFew { input: Input, needed: usize, got: usize },
    #[error("non-finite value {value} in {input} at index {index}")]
    NonFinite { input: Input, index: usize, value: f64 },
    /// All values equal (`-0.0 == 0.0`): the variance is zero and a correlation is 0/0.
    #[error("constant {0}: correlation is undefined")]
    Constant(Input),
    #[error("no non-zero differences: the Wilcoxon signed-rank test is undefined")]
    NoNonZeroDifferences,
    #[error("the bootstrap needs at least one replicate")]
    NoReplicates,
    #[error("the bootstrap statistic is not finite on replicate {0}")]
    NonFiniteStatistic(usize),
}

pub type Result<T, E = MetricError> = std::result::Result<T, E>;

/// All metrics of one evaluation; `overall` is the challenge score `|plcc| + |srocc| + |krocc|` (max 3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub plcc: f64,
    pub srocc: f64,
    pub krocc: f64,
    pub overall: f64,
    pub mae: f64,
    pub rmse: f64,
    pub n: usize,
}

/// Computes every metric of [`Report`], validating the inputs once.
///
/// # Errors
/// As [`plcc`].
pub fn evaluate(pred: &[f64], label: &[f64]) -> Result<Report> {
    check_correlation(pred, label)?;
    let (plcc, srocc, krocc) = (pearson(pred, label), spearman(pred, label), kendall_tau_b(pred, label));
    Ok(Report {
        plcc,
        srocc,
        krocc,
        overall: plcc.abs() + srocc.abs() + krocc.abs(),
        mae: mean_abs_error(pred, label),
        rmse: root_mean_sq_error(pred, label),
        n: pred.len(),
    })
}

/// Pearson linear correlation (PLCC), clamped to `[-1, 1]` like scipy.
///
/// Two-pass: both vectors are scaled by a power of two (exact) and mean-centred before the sums of
/// products, so large common offsets cancel exactly and no magnitude of finite input overflows.
///
/// # Errors
/// Length mismatch, fewer than 2 items, a non-finite value, or a constant vector
/// (`"constant predictions: correlation is undefined"`, likewise for labels).
pub fn plcc(pred: &[f64], label: &[f64]) -> Result<f64> {
    check_correlation(pred, label).map(|()| pearson(pred, label))
}

/// Spearman rank correlation (SROCC): the Pearson correlation of [`rank_average`] ranks, so tied values
/// share their average rank exactly as in `scipy.stats.spearmanr`.
///
/// # Errors
/// As [`plcc`]; a vector is constant exactly when its ranks are.
pub fn srocc(pred: &[f64], label: &[f64]) -> Result<f64> {
    check_correlation(pred, label).map(|()| spearman(pred, label))
}

/// Kendall rank correlation (KROCC), tau-b as `scipy.stats.kendalltau`:
/// `(C - D) / sqrt((N - Tx) (N - Ty))` with `N = n(n-1)/2` pairs, `C`/`D` concordant/discordant pairs and
/// `Tx`/`Ty` the pairs tied in predictions/labels (pairs tied in both count in each).
///
/// O(n log n) (Knight 1966): sort by (pred, label), count x-ties and joint ties on the sorted runs, then
/// count discordant pairs as the inversions of a merge sort of the labels, which also yields the y-ties.
///
/// # Errors
/// As [`plcc`].
pub fn krocc(pred: &[f64], label: &[f64]) -> Result<f64> {
    check_correlation(pred, label).map(|()| kendall_tau_b(pred, label))
}

/// Mean absolute error.
///
/// # Errors
/// Length mismatch, no items, or a non-finite value; constant vectors are fine.
pub fn mae(pred: &[f64], label: &[f64]) -> Result<f64> {
    check_pair(pred, label, 1).map(|()| mean_abs_error(pred, label))
}

/// Root mean squared error (`+inf`, not NaN, if differences exceed ~1e154 and their squares overflow).
///
/// # Errors
/// As [`mae`].
pub fn rmse(pred: &[f64], label: &[f64]) -> Result<f64> {
    check_pair(pred, label, 1).map(|()| root_mean_sq_error(pred, label))
}

/// 1-based average ranks (`scipy.stats.rankdata(method='average')`): a run of `t` tied values occupying
/// sorted positions `k+1..=k+t` all get `k + (t+1)/2`. `-0.0` ties with `0.0`; NaNs (rejected by every
/// metric before ranking) would each get their own rank, after `+inf`.
#[must_use]
pub fn rank_average(xs: &[f64]) -> Vec<f64> {
    ranks_and_ties(xs).0
}

/// Two-sided Wilcoxon signed-rank test of `diffs` against zero, as `scipy.stats.wilcoxon(diffs,
/// zero_method='wilcox', correction=False, method='approx')`. Returns `(statistic, p_value)` where the
/// statistic is `min(R+, R-)`.
///
/// Zero differences are dropped (Wilcoxon's method); the remaining `|d|` get average ranks, and the normal
/// approximation uses mean `n(n+1)/4` and variance `(n(n+1)(2n+1) - sum(t^3 - t)/2) / 24` over tie
/// groups of size `t`, without continuity correction.
///
/// # Errors
/// A non-finite difference, or no non-zero difference at all (including an empty slice).
pub fn wilcoxon_signed_rank(diffs: &[f64]) -> Result<(f64, f64)> {
    check_values(diffs, Input::Differences, 0)?;
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|&d| d != 0.0).collect();
    if nonzero.is_empty() {
        return Err(MetricError::NoNonZeroDifferences);
    }
    let (ranks, ties) = ranks_and_ties(&nonzero.iter().map(|d| d.abs()).collect::<Vec<_>>());
    let r_plus: f64 = ranks.iter().zip(&nonzero).filter(|&(_, &d)| d > 0.0).map(|(r, _)| r).sum();
    let n = nonzero.len() as f64;
    let r_minus = n * (n + 1.0) / 2.0 - r_plus;
    let tie_term: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
    let sd = ((n * (n + 1.0) * (2.0 * n + 1.0) - tie_term / 2.0) / 24.0).sqrt();
    let z = (r_plus - n * (n + 1.0) / 4.0) / sd;
    Ok((r_plus.min(r_minus), 2.0 * normal_sf(z.abs())))
}

/// Standard normal survival function `P(Z > z) = erfc(z / sqrt 2) / 2` (`scipy.special.ndtr(-z)`),
/// accurate to ~1e-15 absolute and ~1e-11 relative, far into the upper tail (checked against scipy).
#[must_use]
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

/// 95% percentile-bootstrap confidence interval `(lo, hi)` of `stat` over `values`.
///
/// Each of the `n_boot` replicates resamples `values.len()` items with replacement, drawn by a splitmix64
/// generator seeded with `seed` (deterministic across platforms); `lo`/`hi` are the 2.5th/97.5th
/// percentiles of the replicates with linear interpolation (`numpy.percentile`'s default).
///
/// # Errors
/// Empty or non-finite `values`, `n_boot == 0`, or a replicate on which `stat` is not finite.
pub fn bootstrap_ci(
    values: &[f64],
    stat: impl Fn(&[f64]) -> f64,
    n_boot: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    check_values(values, Input::Values, 1)?;
    if n_boot == 0 {
        return Err(MetricError::NoReplicates);
    }
    let mut rng = crate::rng::Rng::new(seed);
    let mut sample = vec![0.0; values.len()];
    let mut stats = (0..n_boot)
        .map(|b| {
            sample.iter_mut().for_each(|s| *s = values[rng.below(values.len() as u64) as usize]);
            Some(stat(&sample)).filter(|v| v.is_finite()).ok_or(MetricError::NonFiniteStatistic(b))
        })
        .collect::<Result<Vec<_>>>()?;
    stats.sort_unstable_by(f64::total_cmp);
    let percentile = |q: f64| {
        let h = (stats.len() - 1) as f64 * q;
        let (i, frac) = (h.floor() as usize, h.fract());
        if frac == 0.0 {
            stats[i]
        } else {
            stats[i] + frac * (stats[i + 1] - stats[i])
        }
    };
    Ok((percentile(0.025), percentile(0.975)))
}

// ---------------------------------------------------------------------------------------------------------
// Validation

fn check_values(xs: &[f64], input: Input, needed: usize) -> Result<()> {
    if xs.len() < needed {
        return Err(MetricError::TooFew { input, needed, got: xs.len() });
    }
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(MetricError::NonFinite { input, index, value: xs[index] }),
        None => Ok(()),
    }
}

fn check_pair(pred: &[f64], label: &[f64], needed: usize) -> Result<()> {
    if pred.len() != label.len() {
        return Err(MetricError::LengthMismatch { predictions: pred.len(), labels: label.len() });
    }
    check_values(pred, Input::Predictions, needed)?;
    check_values(label, Input::Labels, needed)
}

fn check_correlation(pred: &[f64], label: &[f64]) -> Result<()> {
    check_pair(pred, label, 2)?;
    for (xs, input) in [(pred, Input::Predictions), (label, Input::Labels)] {
        if xs.iter().all(|&x| x == xs[0]) {
            return Err(MetricError::Constant(input));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Kernels on validated input (equal lengths, finite, n >= 2 and non-constant for correlations)

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let (dx, dy) = (centred(x), centred(y));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
    (dot(&dx, &dy) / (dot(&dx, &dx) * dot(&dy, &dy)).sqrt()).clamp(-1.0, 1.0)
}

/// `xs` times a power of two (exact for normal numbers) bringing `max |x|` to order one, then mean-centred.
/// Sums of `n` products then stay in `[2^-110, 4n]` for any finite non-constant input: no overflow, and no
/// underflow to a zero variance.
fn centred(xs: &[f64]) -> Vec<f64> {
    let max = xs.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let e = -(max.log2().floor() as i32 + 1);
    let (s1, s2) = (2f64.powi(e / 2), 2f64.powi(e - e / 2)); // two factors: 2^e alone may overflow
    let subtract_mean = |v: Vec<f64>| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.into_iter().map(|x| x - mean).collect::<Vec<_>>()
    };
    // The second pass removes what the rounding of the first mean left (corrected two-pass algorithm).
    subtract_mean(subtract_mean(xs.iter().map(|x| x * s1 * s2).collect()))
}

fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&rank_average(x), &rank_average(y))
}

fn kendall_tau_b(x: &[f64], y: &[f64]) -> f64 {
    // Work on ranks: same order and ties as the values, but exact half-integers where `total_cmp` agrees
    // with `==` (it orders -0.0 before 0.0, which would break tie runs).
    let mut pairs: Vec<(f64, f64)> = rank_average(x).into_iter().zip(rank_average(y)).collect();
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let x_ties = tied_pairs(&pairs, |a, b| a.0 == b.0);
    let joint_ties = tied_pairs(&pairs, |a, b| a == b);
    // Within a run of equal x the labels are ascending, so every inversion is a discordant pair.
    let mut ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let discordant = merge_sort_inversions(&mut ys, &mut vec![0.0; x.len()]);
    let y_ties = tied_pairs(&ys, |a, b| a == b);
    let n = x.len() as u64;
    let total = n * (n - 1) / 2;
    // C + D + Tx + Ty - Txy = total, so C - D = total - Tx - Ty + Txy - 2D.
    let s = ((total + joint_ties) as i64 - (x_ties + y_ties + 2 * discordant) as i64) as f64;
    (s / ((total - x_ties) as f64).sqrt() / ((total - y_ties) as f64).sqrt()).clamp(-1.0, 1.0)
}

/// Number of pairs within runs of equal neighbours of a sorted slice: `sum t(t-1)/2`.
fn tied_pairs<T>(sorted: &[T], same: impl FnMut(&T, &T) -> bool) -> u64 {
    sorted.chunk_by(same).map(|run| (run.len() * (run.len() - 1) / 2) as u64).sum()
}

/// Stable merge sort of `v` (using `buf`, same length, as scratch) returning the number of pairs
/// `i < j` with `v[i] > v[j]`; equal values are not inversions.
fn merge_sort_inversions(v: &mut [f64], buf: &mut [f64]) -> u64 {
    if v.len() < 2 {
        return 0;
    }
    let mid = v.len() / 2;
    let mut inversions = merge_sort_inversions(&mut v[..mid], &mut buf[..mid])
        + merge_sort_inversions(&mut v[mid..], &mut buf[mid..]);
    buf.copy_from_slice(v);
    let (left, right) = buf.split_at(mid);
    let (mut i, mut j) = (0, 0);
    for slot in v.iter_mut() {
        if j == right.len() || (i < left.len() && left[i] <= right[j]) {
            *slot = left[i];
            i += 1;
        } else {
            *slot = right[j];
            j += 1;
            inversions += (left.len() - i) as u64;
        }
    }
    inversions
}

/// Average ranks (see [`rank_average`]) and the sizes of the runs of tied values, in sorted order.
fn ranks_and_ties(xs: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_unstable_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let (mut ranks, mut ties, mut below) = (vec![0.0; xs.len()], Vec::new(), 0);
    for run in order.chunk_by(|&i, &j| xs[i] == xs[j]) {
        let rank = below as f64 + (run.len() + 1) as f64 / 2.0;
        run.iter().for_each(|&i| ranks[i] = rank);
        below += run.len();
        ties.push(run.len());
    }
    (ranks, ties)
}

fn mean_abs_error(pred: &[f64], label: &[f64]) -> f64 {
    pred.iter().zip(label).map(|(p, l)| (p - l).abs()).sum::<f64>() / pred.len() as f64
}

fn root_mean_sq_error(pred: &[f64], label: &[f64]) -> f64 {
    (pred.iter().zip(label).map(|(p, l)| (p - l).powi(2)).sum::<f64>() / pred.len() as f64).sqrt()
}

// ---------------------------------------------------------------------------------------------------------
// Special functions and randomness

/// Complementary error function: Maclaurin series of erf below 2.5 (alternating, at most ~2 digits of
/// cancellation), Lentz's continued fraction `e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))`
/// above, which keeps full relative accuracy far into the tail.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        let (x2, mut term, mut sum) = (x * x, x, x);
        for k in 1..100 {
            term *= -x2 / k as f64;
            let add = term / (2 * k + 1) as f64;
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        return 1.0 - 2.0 / PI.sqrt() * sum;
    }
    let (mut f, mut c, mut d) = (x, x, 0.0);
    for k in 1..1000 {
        let a = k as f64 / 2.0;
        d = 1.0 / (x + a * d);
        c = x + a / c;
        f *= c * d;
        if (c * d - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    (-x * x).exp() / (PI.sqrt() * f)
}
