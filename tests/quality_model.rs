//! The quality model as a criterion: finite-difference gradients, properties, FiLM semantics,
//! frozen weights, and errors on bad input or broken model folders.
mod common;

use common::{fixture, max_abs, temp_dir, QualitySize};
use ldctq::criterion::{QualityCriterion, Reduction};
use ldctq::model::{QualityConfig, QualityModel, Widths};
use ldctq::Placement;
use proptest::prelude::*;
use tch::{Device, Kind, Tensor};

const WIDTHS: Widths = Widths { film_hidden: 12, head_hidden: 10, fusion_hidden: 4 };

fn tiny_model(kind: Kind, seed: i64) -> QualityModel {
    let backbone = fixture("siglip/tiny_a").display().to_string();
    let config = QualityConfig::new(&backbone, 16);
    QualityModel::init(config, WIDTHS, seed, Placement { device: Device::Cpu, kind }).unwrap()
}

/// The tiny model's computation (tiny_a at 16 pixels: 16 tokens), for tolerances.
fn size() -> QualitySize {
    QualitySize::of(&fixture("siglip/tiny_a"), 16)
}

fn images(n: i64, c: i64, h: i64, w: i64, kind: Kind, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([n, c, h, w], (kind, Device::Cpu))
}

#[test]
fn gradient_matches_central_finite_differences_in_f64() {
    let model = tiny_model(Kind::Double, 1);
    let x = images(2, 1, 12, 20, Kind::Double, 7); // resized (down in width, up in height) to 16x16
    let u = Tensor::from_slice(&[1.0f64, -0.7]);
    let (scores, grad) = model.score_and_grad(&x, Some(&u)).unwrap();
    assert_eq!(grad.size(), x.size());
    assert_eq!(grad.kind(), Kind::Double);
    let objective = |x: &Tensor| -> f64 {
        (model.score(x).unwrap().to_kind(Kind::Double) * &u).sum(Kind::Double).double_value(&[])
    };
    // score (no graph) and score_and_grad (with one) may run other kernels: f64 rounding apart.
    let tol = size().f64_scores_tol(4.0 * 1.7); // |u_0| + |u_1| = 1.7 times the largest score
    let direct = (&scores.to_kind(Kind::Double) * &u).sum(Kind::Double).double_value(&[]);
    assert!((objective(&x) - direct).abs() < tol);
    // Central differences in f64: truncation (eps^2 times the third derivative, ~1e-12) and rounding
    // (u |f| / eps, ~1e-9) stay far below 1e-5 of the 1e-3 floor on any CPU (f64 kernels differ by
    // ~1e-15); a wrong VJP shows as >= 1e-3.
    let eps = 1e-6;
    let flat_len = x.numel() as i64;
    let mut worst: f64 = 0.0;
    for k in [0, 17, 101, 250, 333, flat_len - 1] {
        let bump = |d: f64| {
            let y = x.copy();
            let _ = y.view([-1]).get(k).f_add_scalar_(d).unwrap();
            y
        };
        let fd = (objective(&bump(eps)) - objective(&bump(-eps))) / (2.0 * eps);
        let an = grad.view([-1]).double_value(&[k]);
        let err = (fd - an).abs() / fd.abs().max(1e-3);
        println!("pixel {k}: analytic {an:.9e}, finite difference {fd:.9e}, rel err {err:.2e}");
        worst = worst.max(err);
    }
    assert!(worst < 1e-5, "worst relative error {worst:e}");
}

#[test]
fn model_weights_are_frozen_and_get_no_gradient() {
    let model = tiny_model(Kind::Float, 2);
    let x = images(2, 1, 16, 16, Kind::Float, 3);
    let (_, grad) = model.score_and_grad(&x, None).unwrap();
    assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    for vs in [model.vision_store(), model.heads_store()] {
        for (name, v) in vs.variables() {
            assert!(!v.requires_grad(), "{name} requires grad");
            assert!(!v.grad().defined(), "{name} got a gradient");
        }
    }
}

/// `score_and_grad` turns gradient mode on for itself: under a caller's `tch::no_grad` (as `ldctq
/// bench` and `score` hold) it gives the same scores and gradient as with gradient mode on, with and
/// without activation checkpointing, and leaves gradient mode off afterwards.
#[test]
fn score_and_grad_works_under_no_grad() {
    let mut model = tiny_model(Kind::Float, 5);
    let x = images(2, 1, 16, 16, Kind::Float, 6);
    let u = Tensor::from_slice(&[0.5f32, -2.0]);
    let (s, g) = model.score_and_grad(&x, Some(&u)).unwrap();
    for every in [0, 1] {
        model.set_activation_checkpointing(every);
        let _guard = tch::no_grad_guard();
        let (s2, g2) = model.score_and_grad(&x, Some(&u)).unwrap();
        assert!(common::max_abs_diff(&s, &s2) < 1e-6, "scores, checkpointing {every}");
        assert!(common::max_abs_diff(&g, &g2) < 1e-6, "gradient, checkpointing {every}");
        assert!(g2.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let probe = Tensor::ones([1], tch::kind::FLOAT_CPU).set_requires_grad(true);
        assert!(!(&probe * 2.0).requires_grad(), "gradient mode is off again");
    }
}

#[test]
fn film_strength_zero_ignores_the_prompt_and_nonzero_uses_it() {
    // f64: the effects below (7e-4 and 7e-3 on this untrained model) stand far above f64 rounding.
    let mut model = tiny_model(Kind::Double, 4);
    let x = images(3, 1, 16, 16, Kind::Double, 5);
    let clinical = model.score(&x).unwrap();
    model.set_prompt("Describe the visual beauty of blooming flowers in a spring garden.").unwrap();
    let flowers = model.score(&x).unwrap();
    // Effects, not tolerances: each must exceed what rounding alone could move the scores by far.
    let rounding = size().f64_scores_tol(4.0);
    let prompt_effect = common::max_abs_diff(&clinical, &flowers);
    println!("prompt effect {prompt_effect:.3e}, f64 rounding bound {rounding:.1e}");
    assert!(prompt_effect > 1e6 * rounding, "the prompt does not change the score");
    model.set_film_strength(0.0).unwrap();
    let off_flowers = model.score(&x).unwrap();
    model.set_prompt(ldctq::model::DEFAULT_PROMPT).unwrap();
    let off_clinical = model.score(&x).unwrap();
    // s = 0: H (1 + 0 tanh(gamma)) + 0 beta is H exactly, whatever the prompt.
    assert_eq!(common::max_abs_diff(&off_flowers, &off_clinical), 0.0);
    let film_effect = common::max_abs_diff(&off_clinical, &clinical);
    println!("FiLM effect {film_effect:.3e}");
    assert!(film_effect > 1e6 * rounding, "FiLM does not change the score");
}

#[test]
fn loss_is_four_minus_score() {
    // f64: the relation is exact, and the scores of two passes agree to f64 rounding on any CPU.
    let model = tiny_model(Kind::Double, 6);
    let x = images(3, 1, 16, 16, Kind::Double, 8);
    let s = model.score(&x).unwrap();
    let per = model.loss(&x, Reduction::None).unwrap();
    let tol = size().f64_scores_tol(4.0);
    assert!(common::max_abs_diff(&per, &(s.neg() + 4.0)) < tol);
    let mean = model.loss(&x, Reduction::Mean).unwrap().double_value(&[]);
    assert!((mean - (4.0 - s.mean(Kind::Double).double_value(&[]))).abs() < tol);
    assert!(model.info().higher_is_better && model.info().score_range == (0.0, 4.0));
}

#[test]
fn bad_inputs_are_errors() {
    let model = tiny_model(Kind::Float, 9);
    let nan = images(2, 1, 16, 16, Kind::Float, 1);
    let _ = nan.view([-1]).get(5).fill_(f64::NAN);
    assert!(model.score(&nan).unwrap_err().to_string().contains("NaN"));
    let wrong = Tensor::zeros([2, 3, 16, 16], tch::kind::FLOAT_CPU);
    assert!(model.score(&wrong).unwrap_err().to_string().contains("(N, H, W)"));
    let ints = Tensor::zeros([2, 16, 16], (Kind::Int64, Device::Cpu));
    assert!(model.score(&ints).is_err());
    let x = images(2, 1, 16, 16, Kind::Float, 1);
    let err = model.score_and_grad(&x, Some(&Tensor::ones([3], tch::kind::FLOAT_CPU))).unwrap_err();
    assert!(err.to_string().contains("upstream"), "{err}");
    let empty = Tensor::zeros([0, 16, 16], tch::kind::FLOAT_CPU);
    assert!(model.score(&empty).is_err());
}

#[test]
fn model_folder_round_trip_and_errors_name_the_problem() {
    let model = tiny_model(Kind::Float, 10);
    let dir = temp_dir("folder");
    model.save(&dir, false).unwrap();
    let x = images(2, 1, 16, 16, Kind::Float, 2);
    let loaded = QualityModel::load(&dir, Placement::default()).unwrap();
    assert_eq!(common::max_abs_diff(&model.score(&x).unwrap(), &loaded.score(&x).unwrap()), 0.0);

    // A head tensor with the wrong shape, then a missing one: both named.
    let head = dir.join("head.safetensors");
    let mut tensors = Tensor::read_safetensors(&head).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "head_local.fc1.weight" {
            *t = t.narrow(1, 0, 7).contiguous();
        }
    }
    Tensor::write_safetensors(&tensors, &head).unwrap();
    let err = QualityModel::load(&dir, Placement::default()).unwrap_err().to_string();
    assert!(err.contains("head_local.fc1.weight") && err.contains("[10, 128]"), "{err}");
    tensors.retain(|(n, _)| n != "fusion.fc2.bias" && n != "head_local.fc1.weight");
    Tensor::write_safetensors(&tensors, &head).unwrap();
    let err = QualityModel::load(&dir, Placement::default()).unwrap_err().to_string();
    assert!(err.contains("missing tensor fusion.fc2.bias"), "{err}");

    // Broken ldctq.json.
    let json = dir.join("ldctq.json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(&json, text.replace("\"format_version\": 1", "\"format_version\": 99")).unwrap();
    let err = QualityModel::load(&dir, Placement::default()).unwrap_err().to_string();
    assert!(err.contains("ldctq.json") && err.contains("format_version 99"), "{err}");
    std::fs::remove_file(&json).unwrap();
    assert!(QualityModel::load(&dir, Placement::default()).unwrap_err().to_string().contains("ldctq.json"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn scores_are_bounded_and_batch_order_invariant(seed in 0i64..1000, n in 1i64..5, h in 8i64..40, w in 8i64..40) {
        // f64: a batch in another order may take other kernel paths (matrix tiles), which f64
        // rounding keeps within f64_scores_tol on any CPU.
        let model = tiny_model(Kind::Double, 11);
        let x = images(n, 1, h, w, Kind::Double, seed) * 3.0 - 1.0; // also outside [0, 1]
        let s = model.score(&x).unwrap();
        prop_assert_eq!(s.size(), vec![n]);
        let (lo, hi) = (s.min().double_value(&[]), s.max().double_value(&[]));
        prop_assert!((0.0..=4.0).contains(&lo) && (0.0..=4.0).contains(&hi));
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let s_perm = model.score(&x.index_select(0, &perm)).unwrap();
        prop_assert!(common::max_abs_diff(&s_perm, &s.index_select(0, &perm)) < size().f64_scores_tol(4.0));
    }
}

#[test]
fn ensemble_folder_averages_its_members() {
    use ldctq::ensemble::{Ensemble, Scorer};
    let dir = temp_dir("ensemble");
    // f64 members (saved and loaded in f64): their own runs and the ensemble's agree to f64 rounding
    // on any CPU; the mean adds one rounding.
    let (a, b) = (tiny_model(Kind::Double, 21), tiny_model(Kind::Double, 22));
    a.save(&dir.join("a"), false).unwrap();
    b.save(&dir.join("b"), false).unwrap();
    Ensemble::write(&dir.join("ens"), &["../a".into(), "../b".into()]).unwrap();
    let f64_cpu = Placement { device: Device::Cpu, kind: Kind::Double };
    let scorer = Scorer::load(&dir.join("ens"), f64_cpu).unwrap();
    assert!(matches!(scorer, Scorer::Ensemble(_)));
    let x = images(3, 1, 16, 16, Kind::Double, 4);
    let want = (a.score(&x).unwrap() + b.score(&x).unwrap()) / 2.0;
    assert!(common::max_abs_diff(&scorer.score(&x).unwrap(), &want) < size().f64_scores_tol(4.0));
    let (_, grad) = scorer.score_and_grad(&x, None).unwrap();
    let (_, ga) = a.score_and_grad(&x, None).unwrap();
    let (_, gb) = b.score_and_grad(&x, None).unwrap();
    let want = (ga + gb) / 2.0;
    assert!(common::max_abs_diff(&grad, &want) < size().f64_grad_tol(max_abs(&want)));
    Ensemble::write(&dir.join("bad"), &["../a".into(), "../missing".into()]).unwrap();
    assert!(Scorer::load(&dir.join("bad"), Placement::default())
        .unwrap_err()
        .to_string()
        .contains("missing"));
}
