//! `ldctq::metrics` against scipy (tests/fixtures/metrics/cases.json, from gen_metrics_fixtures.py), an
//! O(n^2) Kendall tau-b, and proptest properties of the correlations.

use ldctq::metrics::*;
use proptest::prelude::*;
use serde::Deserialize;

/// Scalar f64 code (no libtorch kernel) against scipy's f64 values (made with pinned kernels): both
/// within ~1e-13 of the exact statistic for these n <= 2500 (f64 sums of n terms: sqrt(n) u ~ 1e-14);
/// 1e-9 leaves room for scipy's other formulas (e.g. the normal approximation's p) on any CPU.
const TOL: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixtures {
    correlation: Vec<CorrelationCase>,
    wilcoxon: Vec<WilcoxonCase>,
    normal_sf: Vec<NormalCase>,
    bootstrap: Vec<BootstrapCase>,
}

#[derive(Deserialize)]
struct CorrelationCase {
    name: String,
    pred: Vec<f64>,
    label: Vec<f64>,
    plcc: f64,
    srocc: f64,
    krocc: f64,
    mae: f64,
    rmse: f64,
}

#[derive(Deserialize)]
struct WilcoxonCase {
    name: String,
    diffs: Vec<f64>,
    statistic: f64,
    pvalue: f64,
}

#[derive(Deserialize)]
struct NormalCase {
    z: f64,
    sf: f64,
}

#[derive(Deserialize)]
struct BootstrapCase {
    name: String,
    values: Vec<f64>,
    stat: String,
    n_boot: usize,
    seed: u64,
    lo: f64,
    hi: f64,
}

fn fixtures() -> Fixtures {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics/cases.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("cases.json does not parse")
}

#[track_caller]
fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, want {want:e} (|diff| {:e})",
        (got - want).abs()
    );
}

/// Kendall tau-b by definition, over all n(n-1)/2 pairs.
fn kendall_reference(x: &[f64], y: &[f64]) -> f64 {
    let sign = |a: f64, b: f64| (a > b) as i64 - (a < b) as i64;
    let (mut s, mut x_ties, mut y_ties, mut pairs) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..x.len() {
        for j in 0..i {
            let (sx, sy) = (sign(x[i], x[j]), sign(y[i], y[j]));
            s += sx * sy;
            x_ties += (sx == 0) as i64;
            y_ties += (sy == 0) as i64;
            pairs += 1;
        }
    }
    s as f64 / (((pairs - x_ties) as f64) * ((pairs - y_ties) as f64)).sqrt()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

// ---------------------------------------------------------------------------------------------------------
// scipy fixtures

#[test]
fn correlations_match_scipy() {
    let fx = fixtures();
    assert!(fx.correlation.len() >= 10);
    for c in &fx.correlation {
        let r = evaluate(&c.pred, &c.label).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let what = |m: &str| format!("{} {m}", c.name);
        assert_close(r.plcc, c.plcc, TOL, &what("plcc"));
        assert_close(r.srocc, c.srocc, TOL, &what("srocc"));
        assert_close(r.krocc, c.krocc, TOL, &what("krocc"));
        assert_close(r.mae, c.mae, TOL, &what("mae"));
        assert_close(r.rmse, c.rmse, TOL, &what("rmse"));
        assert_eq!(r.overall, r.plcc.abs() + r.srocc.abs() + r.krocc.abs());
        assert_eq!(r.n, c.pred.len());
        // The standalone functions agree exactly with `evaluate`.
        assert_eq!(plcc(&c.pred, &c.label), Ok(r.plcc));
        assert_eq!(srocc(&c.pred, &c.label), Ok(r.srocc));
        assert_eq!(krocc(&c.pred, &c.label), Ok(r.krocc));
        assert_eq!(mae(&c.pred, &c.label), Ok(r.mae));
        assert_eq!(rmse(&c.pred, &c.label), Ok(r.rmse));
    }
}

#[test]
fn wilcoxon_matches_scipy() {
    for c in fixtures().wilcoxon {
        let (statistic, p) = wilcoxon_signed_rank(&c.diffs).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_close(statistic, c.statistic, TOL, &format!("{} statistic", c.name));
        assert_close(p, c.pvalue, TOL, &format!("{} p", c.name));
        assert_close(p / c.pvalue, 1.0, 1e-9, &format!("{} p relative", c.name));
    }
}

#[test]
fn normal_sf_matches_scipy() {
    for c in fixtures().normal_sf {
        let sf = normal_sf(c.z);
        // Absolute: a few ulps of sf <= 1; relative: the complementary error function's own accuracy
        // in the far tail (scipy's ndtr and ours are different series), well above libm's 1-ulp
        // differences between CPUs.
        assert_close(sf, c.sf, 1e-14, &format!("sf({})", c.z));
        if c.sf > 1e-300 {
            assert_close(sf / c.sf, 1.0, 1e-10, &format!("sf({}) relative", c.z));
        }
    }
}

#[test]
fn bootstrap_matches_numpy_replica() {
    for c in fixtures().bootstrap {
        let stat: fn(&[f64]) -> f64 = match c.stat.as_str() {
            "mean" => mean,
            "median" => median,
            other => panic!("unknown statistic {other}"),
        };
        let (lo, hi) = bootstrap_ci(&c.values, stat, c.n_boot, c.seed).unwrap();
        assert_close(lo, c.lo, TOL, &format!("{} lo", c.name));
        assert_close(hi, c.hi, TOL, &format!("{} hi", c.name));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Kendall: O(n log n) against the O(n^2) definition

#[test]
fn kendall_matches_quadratic_reference_large_tied() {
    let n = 3000;
    let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 101) as f64 / 5.0).collect();
    let y: Vec<f64> = (0..n).map(|i| (((i * i) % 37) as f64 + x[i] / 4.0).round()).collect();
    // Both count the same concordant pairs exactly; only the final f64 ratio and square root round.
    assert_close(krocc(&x, &y).unwrap(), kendall_reference(&x, &y), 1e-12, "n=3000");
}

// ---------------------------------------------------------------------------------------------------------
// Errors

#[test]
fn constant_vectors_are_errors() {
    let (c, v) = ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]);
    for f in [plcc, srocc, krocc] {
        assert_eq!(f(&c, &v), Err(MetricError::Constant(Input::Predictions)));
        assert_eq!(f(&v, &c), Err(MetricError::Constant(Input::Labels)));
    }
    let err = evaluate(&c, &v).unwrap_err();
    assert_eq!(err.to_string(), "constant predictions: correlation is undefined");
    assert_eq!(evaluate(&v, &c).unwrap_err().to_string(), "constant labels: correlation is undefined");
    // Signed zeros are equal, so this is constant too.
    assert_eq!(plcc(&[0.0, -0.0, 0.0], &v), Err(MetricError::Constant(Input::Predictions)));
    // MAE and RMSE are defined on constant vectors.
    assert_eq!(mae(&c, &v), Ok(2.0 / 3.0));
    assert_eq!(rmse(&c, &v), Ok((2.0f64 / 3.0).sqrt()));
}

#[test]
fn too_few_items_are_errors() {
    for f in [plcc, srocc, krocc] {
        assert_eq!(
            f(&[1.0], &[2.0]),
            Err(MetricError::TooFew { input: Input::Predictions, needed: 2, got: 1 })
        );
        assert!(f(&[], &[]).is_err());
    }
    assert!(evaluate(&[1.0], &[1.0]).is_err());
    assert_eq!(mae(&[1.0], &[3.5]), Ok(2.5));
    assert_eq!(rmse(&[1.0], &[3.5]), Ok(2.5));
    assert_eq!(mae(&[], &[]), Err(MetricError::TooFew { input: Input::Predictions, needed: 1, got: 0 }));
    assert!(rmse(&[], &[]).is_err());
}

#[test]
fn non_finite_values_are_errors() {
    let good = [1.0, 2.0, 3.0];
    let err = plcc(&good, &[1.0, f64::NAN, 3.0]).unwrap_err();
    assert!(
        matches!(err, MetricError::NonFinite { input: Input::Labels, index: 1, value } if value.is_nan())
    );
    assert_eq!(err.to_string(), "non-finite value NaN in labels at index 1");
    let err = evaluate(&[1.0, 2.0, f64::INFINITY], &good).unwrap_err();
    assert_eq!(err.to_string(), "non-finite value inf in predictions at index 2");
    for f in [srocc, krocc, mae, rmse] {
        assert!(matches!(f(&[f64::NEG_INFINITY, 1.0], &[1.0, 2.0]), Err(MetricError::NonFinite { .. })));
    }
    assert!(matches!(wilcoxon_signed_rank(&[1.0, f64::NAN]), Err(MetricError::NonFinite { index: 1, .. })));
    assert!(bootstrap_ci(&[f64::NAN], mean, 10, 0).is_err());
}

#[test]
fn length_mismatch_is_an_error() {
    let err = evaluate(&[1.0, 2.0, 3.0], &[1.0, 2.0]).unwrap_err();
    assert_eq!(err, MetricError::LengthMismatch { predictions: 3, labels: 2 });
    assert_eq!(err.to_string(), "length mismatch: 3 predictions but 2 labels");
    for f in [plcc, srocc, krocc, mae, rmse] {
        assert!(matches!(f(&[1.0], &[1.0, 2.0]), Err(MetricError::LengthMismatch { .. })));
    }
}

#[test]
fn wilcoxon_and_bootstrap_errors() {
    assert_eq!(wilcoxon_signed_rank(&[0.0, -0.0]), Err(MetricError::NoNonZeroDifferences));
    assert_eq!(wilcoxon_signed_rank(&[]), Err(MetricError::NoNonZeroDifferences));
    assert_eq!(bootstrap_ci(&[1.0], mean, 0, 0), Err(MetricError::NoReplicates));
    assert!(matches!(bootstrap_ci(&[], mean, 10, 0), Err(MetricError::TooFew { .. })));
    assert_eq!(bootstrap_ci(&[1.0, 2.0], |_| f64::NAN, 10, 0), Err(MetricError::NonFiniteStatistic(0)));
}

// ---------------------------------------------------------------------------------------------------------
// Numerics and serialisation

#[test]
fn pearson_survives_extreme_magnitudes() {
    let x = [1.0, 2.0, 4.0, 3.0, 7.0];
    let y = [2.0, 1.0, 5.0, 3.0, 6.0];
    let r = plcc(&x, &y).unwrap();
    for scale in [1e300, 1e-300, 1e-310, f64::MAX / 8.0] {
        let xs: Vec<f64> = x.iter().map(|v| v * scale).collect();
        // Scaling by a power-of-ten factor rounds each value once (1e-310: subnormal, ~1e-5 relative
        // per value would show far above 1e-12 if not rescaled first); five terms: ~1e-15.
        assert_close(plcc(&xs, &y).unwrap(), r, 1e-12, &format!("scale {scale:e}"));
    }
    // Offsets far above the spread cancel exactly in the two-pass centring.
    let shifted: Vec<f64> = x.iter().map(|v| v + 1e12).collect();
    assert_eq!(plcc(&shifted, &y), Ok(r));
}

#[test]
fn rank_average_ties() {
    assert_eq!(rank_average(&[3.0, 1.0, 2.0, 2.0, -0.0, 0.0]), vec![6.0, 3.0, 4.5, 4.5, 1.5, 1.5]);
    assert!(rank_average(&[]).is_empty());
}

#[test]
fn report_serialises() {
    let r = evaluate(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap();
    let v: serde_json::Value = serde_json::to_value(r).unwrap();
    for key in ["plcc", "srocc", "krocc", "overall", "mae", "rmse", "n"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["n"], 3);
}

// ---------------------------------------------------------------------------------------------------------
// Properties

/// Values on a coarse grid (many ties) or continuous, kept where exp() stays finite and distinct.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![(-20i32..=20).prop_map(|k| k as f64 / 4.0), -40.0..40.0f64]
}

fn paired(max_len: usize) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (2..=max_len).prop_flat_map(|n| (prop::collection::vec(value(), n), prop::collection::vec(value(), n)))
}

fn is_constant(xs: &[f64]) -> bool {
    xs.iter().all(|&x| x == xs[0])
}

type Metric = fn(&[f64], &[f64]) -> Result<f64>;
const RANK_METRICS: [(&str, Metric); 2] = [("srocc", srocc), ("krocc", krocc)];
const ALL_METRICS: [(&str, Metric); 3] = [("plcc", plcc), ("srocc", srocc), ("krocc", krocc)];

// The properties below compare scalar f64 computations (no libtorch kernel: the same bits on any CPU)
// that are equal in exact arithmetic: 1e-12 covers summing up to 300 terms in another order
// (sqrt(300) u ~ 2e-15 of terms <= 1); 1e-9 covers the affine map's rounding of each value.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn kendall_matches_quadratic_reference((x, y) in paired(300)) {
        prop_assume!(!is_constant(&x) && !is_constant(&y));
        let (fast, slow) = (krocc(&x, &y).unwrap(), kendall_reference(&x, &y));
        prop_assert!((fast - slow).abs() <= 1e-12, "fast {fast} slow {slow}");
    }

    #[test]
    fn rank_metrics_invariant_under_increasing_maps((x, y) in paired(60)) {
        prop_assume!(!is_constant(&x) && !is_constant(&y));
        let maps: [fn(f64) -> f64; 3] = [f64::exp, |v| v * v * v + v, |v| 2.5 * v - 1.0];
        for map in maps {
            let t: Vec<f64> = x.iter().map(|&v| map(v)).collect();
            // Strictly increasing in floating point too on this sample (rounding could merge neighbours).
            prop_assume!(rank_average(&t) == rank_average(&x));
            for (name, f) in RANK_METRICS {
                let r = f(&x, &y).unwrap();
                prop_assert_eq!(f(&t, &y).unwrap(), r, "{} of transformed predictions", name);
                prop_assert_eq!(f(&y, &t).unwrap(), f(&y, &x).unwrap(), "{} of transformed labels", name);
            }
        }
    }

    #[test]
    fn correlations_symmetric_bounded_and_odd((x, y) in paired(60)) {
        prop_assume!(!is_constant(&x) && !is_constant(&y));
        let neg: Vec<f64> = x.iter().map(|v| -v).collect();
        for (name, f) in ALL_METRICS {
            let r = f(&x, &y).unwrap();
            prop_assert!((-1.0..=1.0).contains(&r), "{} = {} out of range", name, r);
            prop_assert!((f(&y, &x).unwrap() - r).abs() <= 1e-12, "{} not symmetric", name);
            prop_assert!((f(&neg, &y).unwrap() + r).abs() <= 1e-12, "{} not odd in predictions", name);
            prop_assert!((f(&y, &neg).unwrap() + r).abs() <= 1e-12, "{} not odd in labels", name);
        }
    }

    #[test]
    fn plcc_invariant_under_positive_affine_maps((x, y) in paired(60), a in 0.01..100.0f64, b in -1e3..1e3f64) {
        prop_assume!(!is_constant(&x) && !is_constant(&y));
        let t: Vec<f64> = x.iter().map(|v| a * v + b).collect();
        prop_assume!(!is_constant(&t));
        let r = plcc(&x, &y).unwrap();
        prop_assert!((plcc(&t, &y).unwrap() - r).abs() <= 1e-9);
        prop_assert!((plcc(&y, &t).unwrap() - r).abs() <= 1e-9);
    }

    #[test]
    fn overall_is_sum_of_absolute_correlations((x, y) in paired(60)) {
        prop_assume!(!is_constant(&x) && !is_constant(&y));
        let r = evaluate(&x, &y).unwrap();
        prop_assert!(r.overall >= 0.0 && r.overall <= 3.0);
        prop_assert!(r.rmse >= r.mae && r.mae >= 0.0);
    }
}
