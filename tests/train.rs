//! Trainer: the loss against a hand computation, the schedule, the folds, exact resume, and a smoke
//! run whose loss falls.
mod common;

use common::{fixture, synthetic_set, temp_dir, tiny_train_config};
use ldctq::data::{stratified_folds, Dataset};
use ldctq::model::{QualityConfig, QualityModel, Widths};
use ldctq::train::{
    alignment_directions, alignment_loss, cosine_lr, ranking_loss, AdamW, Cache, Event, OrderKind,
    OrderPairs, TrainConfig, Trainer, VisionTraining,
};
use ldctq::Placement;
use ldctq::QualityCriterion;
use std::ops::ControlFlow;
use std::path::Path;
use tch::{Kind, Tensor};

#[test]
fn ranking_loss_matches_a_hand_computation_and_its_gradient() {
    let (p, y, tau) = ([1.0f64, 2.0, 0.5], [3.0f64, 1.0, 1.0], 0.5);
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (mut total, mut pairs, mut grad) = (0.0, 0.0, [0.0; 3]);
    for i in 0..3 {
        for j in 0..3 {
            if y[i] != y[j] {
                let s = (y[i] - y[j]).signum();
                total += softplus(-s * (p[i] - p[j]) / tau);
                pairs += 1.0;
                let d = -s / tau * sigmoid(-s * (p[i] - p[j]) / tau); // d term / d (p_i - p_j)
                grad[i] += d;
                grad[j] -= d;
            }
        }
    }
    let want = total / pairs;
    assert!((want - 1.2200950).abs() < 1e-6, "hand value {want}"); // the 8 digits written down
    let pred = Tensor::from_slice(&p).set_requires_grad(true);
    let loss = ranking_loss(&pred, &Tensor::from_slice(&y), tau, 0.0);
    // f64 tensors against the f64 loop: a few ulps of values ~1 (3 pairs; softplus, sigmoid).
    assert!((loss.double_value(&[]) - want).abs() < 1e-12);
    loss.backward();
    for (k, g) in grad.iter().enumerate() {
        assert!((pred.grad().double_value(&[k as i64]) - g / pairs).abs() < 1e-12);
    }
    // With the MSE term.
    let mse: f64 = p.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 3.0;
    let both = ranking_loss(&Tensor::from_slice(&p), &Tensor::from_slice(&y), tau, 0.3).double_value(&[]);
    assert!((both - (want + 0.3 * mse)).abs() < 1e-12);
}

/// 1 - cos over the images that differ from their references: aligned 0, opposite 2, 45 degrees
/// 1 - 1/sqrt 2; an image equal to its reference does not count, and a batch of them gives 0.
#[test]
fn alignment_loss_matches_a_hand_computation() {
    let g = Tensor::from_slice(&[1.0f64, 0.0, -2.0, 0.0, 1.0, 1.0, 5.0, 5.0]).view([4, 1, 1, 2]);
    let d = Tensor::from_slice(&[3.0f64, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]).view([4, 1, 1, 2]);
    let want = (0.0 + 2.0 + (1.0 - 0.5f64.sqrt())) / 3.0;
    assert!((alignment_loss(&g, &d).double_value(&[]) - want).abs() < 1e-12);
    let zero = alignment_loss(&g.narrow(0, 3, 1), &d.narrow(0, 3, 1)).double_value(&[]);
    assert_eq!(zero, 0.0);
}

/// `grad_align_below`: only the images labelled below it keep their direction `ref - x`; the others
/// get zero and drop out of the loss's mean (here: the image at 45 degrees, labelled 3.5).
#[test]
fn alignment_directions_keep_only_images_labelled_below_the_bound() {
    let g = Tensor::from_slice(&[1.0f64, 0.0, -2.0, 0.0, 1.0, 1.0, 5.0, 5.0]).view([4, 1, 1, 2]);
    let refs = Tensor::from_slice(&[3.0f64, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]).view([4, 1, 1, 2]);
    let x = Tensor::zeros([4, 1, 1, 2], (Kind::Double, tch::Device::Cpu));
    let labels = Tensor::from_slice(&[1.0f32, 2.9, 3.5, 0.0]);
    let all = alignment_directions(&x, &refs, &labels, None).unwrap();
    assert_eq!(f64::try_from((&all - &refs).abs().max()).unwrap(), 0.0, "None: every image, ref - x");
    let below = alignment_directions(&x, &refs, &labels, Some(3.0)).unwrap();
    let kept: Vec<f64> = Vec::try_from(below.flatten(0, -1)).unwrap();
    assert_eq!(kept, vec![3.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let want = (0.0 + 2.0) / 2.0; // aligned and opposite; the 45-degree image left out
    assert!((alignment_loss(&g, &below).double_value(&[]) - want).abs() < 1e-12);
}

#[test]
fn a_batch_without_untied_pairs_gives_zero_not_nan() {
    let pred = Tensor::from_slice(&[0.3f32, 2.0, 1.0]).set_requires_grad(true);
    let loss = ranking_loss(&pred, &Tensor::from_slice(&[2.0f32, 2.0, 2.0]), 0.5, 0.0);
    assert_eq!(loss.double_value(&[]), 0.0);
    loss.backward();
    assert_eq!(pred.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn cosine_schedule_values() {
    // Scalar f64 (libm cos): within an ulp or two of 1e-3 (~2e-19) on any CPU.
    assert_eq!(cosine_lr(1e-3, 0, 100), 1e-3);
    assert!((cosine_lr(1e-3, 50, 100) - 5e-4).abs() < 1e-15);
    assert!(
        (cosine_lr(1e-3, 25, 100) - 1e-3 * (0.5 + 0.5 * (std::f64::consts::PI / 4.0).cos())).abs() < 1e-15
    );
    assert!(cosine_lr(1e-3, 100, 100).abs() < 1e-18);
    assert!(cosine_lr(1e-3, 150, 100).abs() < 1e-18);
}

#[test]
fn folds_are_stratified_and_deterministic() {
    let labels: Vec<f64> = (0..103).map(|i| ((i * 7919) % 21) as f64 * 0.2).collect();
    let a = stratified_folds(&labels, 5, 42);
    assert_eq!(a, stratified_folds(&labels, 5, 42));
    assert_ne!(a, stratified_folds(&labels, 5, 43));
    let overall = labels.iter().sum::<f64>() / labels.len() as f64;
    for f in 0..5 {
        let fold: Vec<f64> = labels.iter().zip(&a).filter(|(_, &k)| k == f).map(|(l, _)| *l).collect();
        assert!((20..=21).contains(&fold.len()), "fold {f} has {}", fold.len());
        let mean = fold.iter().sum::<f64>() / fold.len() as f64;
        assert!((mean - overall).abs() < 0.25, "fold {f} mean {mean} vs {overall}");
        assert!(
            fold.iter().any(|&l| l < 0.5) && fold.iter().any(|&l| l > 3.5),
            "fold {f} misses an end of the range"
        );
    }
}

/// Trains; with `stop_after`, stops (as if killed) once that epoch's checkpoint is written.
fn train(data: &Path, out: &Path, config: TrainConfig, resume: bool, stop_after: Option<usize>) -> Vec<f64> {
    train_in(Kind::Float, data, out, config, resume, stop_after)
}

/// [`train`] with the model in `kind`.
fn train_in(
    kind: Kind,
    data: &Path,
    out: &Path,
    config: TrainConfig,
    resume: bool,
    stop_after: Option<usize>,
) -> Vec<f64> {
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let set = Dataset::open(data).unwrap();
    let mut cache = Cache::load(&set, &base).unwrap();
    if config.needs_references() {
        cache = cache.with_references(&set, &base).unwrap(); // as `ldctq train` does
    }
    let widths = Widths { film_hidden: 8, head_hidden: 8, fusion_hidden: 4 };
    let at = Placement { kind, ..Placement::default() };
    let t = Trainer { base, widths, config, at, out: out.to_path_buf(), cache: &cache };
    let mut losses = Vec::new();
    let result = t.run(resume, &mut |e| {
        if let Event::Epoch(log) = e {
            losses.push(log.train_loss);
            if Some(log.epoch) == stop_after {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match (result, stop_after) {
        (Ok(_), None) => {}
        (Err(ldctq::Error::Interrupted(_)), Some(_)) => {}
        (other, _) => panic!("unexpected training result {other:?}"),
    }
    losses
}

fn weights(dir: &Path) -> Vec<(String, Tensor)> {
    let mut all = Tensor::read_safetensors(dir.join("head.safetensors")).unwrap();
    all.extend(Tensor::read_safetensors(dir.join("vision.safetensors")).unwrap());
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// In f32, and in bf16 (whose AdamW master weights are saved with the moments).
#[test]
fn resumed_training_ends_with_the_same_weights() {
    tch::set_num_threads(1);
    let data = synthetic_set(24);
    for kind in [Kind::Float, Kind::BFloat16] {
        let straight = temp_dir("straight");
        train_in(kind, &data, &straight, tiny_train_config(3), false, None);
        let resumed = temp_dir("resumed");
        train_in(kind, &data, &resumed, tiny_train_config(3), false, Some(1)); // "killed" after epoch 1
        assert!(!resumed.join("ldctq.json").exists());
        let later = train_in(kind, &data, &resumed, tiny_train_config(3), true, None);
        assert_eq!(later.len(), 2, "resume should run epochs 2 and 3 only");
        let (a, b) =
            (weights(&straight.join("folds/fold-1/last")), weights(&resumed.join("folds/fold-1/last")));
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(common::max_abs_diff(ta, tb), 0.0, "{kind:?}: {na} differs after resume");
        }
        // The chosen model loads as a model folder.
        QualityModel::load(&resumed, Placement::default()).unwrap();
    }
}

/// Trains `config` straight and stopped after epoch 1 then resumed: the last weights must be equal
/// (`what`'s draws are seeded like the rest). Returns the straight run's folder.
fn assert_resume_is_exact(data: &Path, config: &TrainConfig, what: &str) -> std::path::PathBuf {
    let straight = temp_dir(&format!("{what}-straight"));
    train(data, &straight, config.clone(), false, None);
    let resumed = temp_dir(&format!("{what}-resumed"));
    train(data, &resumed, config.clone(), false, Some(1));
    train(data, &resumed, config.clone(), true, None);
    let (a, b) = (weights(&straight.join("folds/fold-1/last")), weights(&resumed.join("folds/fold-1/last")));
    for ((na, ta), (_, tb)) in a.iter().zip(&b) {
        assert_eq!(common::max_abs_diff(ta, tb), 0.0, "{na} differs after resume with {what} pairs");
    }
    straight
}

/// Order pairs and the gradient penalty: resumable like the rest (their draws are seeded), and the
/// chosen model prefers a sharp well-labelled image to its blurred copy.
#[test]
fn order_pairs_train_resume_and_teach_that_blur_is_worse() {
    tch::set_num_threads(1);
    let data = synthetic_set(24);
    let config = |epochs| TrainConfig {
        order_pairs: Some(OrderPairs {
            kinds: vec![OrderKind::Blur, OrderKind::Noise],
            weight: 2.0,
            min_label: 2.0,
        }),
        grad_penalty: 1e-3,
        augment: None,
        ..tiny_train_config(epochs)
    };
    let straight = assert_resume_is_exact(&data, &config(3), "order");
    let summary = std::fs::read_to_string(straight.join("train_summary.json")).unwrap();
    assert!(summary.contains("\"order_pairs\"") && summary.contains("\"blur\""), "{summary}");

    // Blur only, longer: sharp images labelled >= 2 must outscore their sigma-1 blur on average.
    let out = temp_dir("order-blur");
    let blur_only = TrainConfig {
        order_pairs: Some(OrderPairs { kinds: vec![OrderKind::Blur], weight: 2.0, min_label: 2.0 }),
        vision: VisionTraining::Frozen,
        head_lr: Some(1e-2),
        augment: None,
        ..tiny_train_config(20)
    };
    train(&data, &out, blur_only, false, None);
    let model = QualityModel::load(&out, Placement::default()).unwrap();
    let set = Dataset::open(&data).unwrap();
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let cache = Cache::load(&set, &base).unwrap();
    let keep = cache.labels.ge(2.0).nonzero().squeeze_dim(1);
    let sharp = cache.images.index_select(0, &keep);
    let blurred = ldctq::filters::gaussian(&sharp, 1.0).unwrap();
    let gap =
        (model.score(&sharp).unwrap() - model.score(&blurred).unwrap()).mean(Kind::Double).double_value(&[]);
    println!("mean score(sharp) - score(blurred) = {gap:.4}");
    assert!(gap > 0.0, "blurred copies score higher on average: {gap}");
}

/// Writes `reference/` into a [`synthetic_set`]: each image's noise-free ramp.
fn add_references(data: &Path) {
    std::fs::create_dir_all(data.join("reference")).unwrap();
    let ramp = Tensor::linspace(0.2, 0.8, 16, tch::kind::FLOAT_CPU);
    let clean = (ramp.unsqueeze(0) + ramp.unsqueeze(1) * 0.5).clamp(0.0, 1.0);
    let arr = ndarray::Array2::from_shape_vec((16, 16), Vec::<f32>::try_from(clean.flatten(0, -1)).unwrap())
        .unwrap();
    for entry in std::fs::read_dir(data.join("image")).unwrap() {
        let name = entry.unwrap().file_name();
        ldctq::io::write_tiff_f32(&data.join("reference").join(name), &arr.view()).unwrap();
    }
}

/// The trainer's error for `config` on `data` loaded without its references.
fn refusal_without_references(data: &Path, config: TrainConfig) -> String {
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let cache = Cache::load(&Dataset::open(data).unwrap(), &base).unwrap();
    let widths = Widths { film_hidden: 8, head_hidden: 8, fusion_hidden: 4 };
    let t =
        Trainer { base, widths, config, at: Placement::default(), out: temp_dir("no-refs"), cache: &cache };
    t.run(false, &mut |_| ControlFlow::Continue(())).err().unwrap().to_string()
}

/// Reference pairs: refused without the images' references (naming the image); with them, resumable
/// (and adversarial pairs too), and the chosen model scores images above their copies moved further
/// from the reference.
#[test]
fn reference_pairs_need_references_resume_and_teach_that_further_is_worse() {
    tch::set_num_threads(1);
    let data = synthetic_set(24);
    let config = |epochs| TrainConfig {
        order_pairs: Some(OrderPairs { kinds: vec![OrderKind::Reference], weight: 2.0, min_label: 2.0 }),
        augment: None,
        ..tiny_train_config(epochs)
    };
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let set = Dataset::open(&data).unwrap();
    let err = Cache::load(&set, &base).unwrap().with_references(&set, &base).err().unwrap().to_string();
    assert!(err.contains("0000.tif") && err.contains("no reference"), "{err}");
    let err = refusal_without_references(&data, config(1));
    assert!(err.contains("need the images' references"), "{err}");
    let detail = TrainConfig {
        order_pairs: Some(OrderPairs { kinds: vec![OrderKind::Detail], weight: 2.0, min_label: 2.0 }),
        ..config(1)
    };
    let err = refusal_without_references(&data, detail);
    assert!(err.contains("detail") && err.contains("need the images' references"), "{err}");

    add_references(&data);
    assert_resume_is_exact(&data, &config(3), "reference");
    // Adversarial pairs (a gradient step of the model being trained) resume alike.
    let adversarial = TrainConfig {
        order_pairs: Some(OrderPairs { kinds: vec![OrderKind::Adversarial], weight: 2.0, min_label: 2.0 }),
        ..config(3)
    };
    assert_resume_is_exact(&data, &adversarial, "adversarial");
    // Without dropout the runs with and without the pairs differ only by the pairs' loss term.
    let widths = Widths { film_hidden: 8, head_hidden: 8, fusion_hidden: 4 };
    let no_dropout = |config: TrainConfig, name: &str| {
        let mut base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
        base.dropout = 0.0;
        let set = Dataset::open(&data).unwrap();
        let cache = Cache::load(&set, &base).unwrap().with_references(&set, &base).unwrap();
        let out = temp_dir(name);
        let t = Trainer { base, widths, config, at: Placement::default(), out: out.clone(), cache: &cache };
        t.run(false, &mut |_| ControlFlow::Continue(())).unwrap();
        weights(&out.join("folds/fold-1/last"))
    };
    let a = no_dropout(adversarial.clone(), "adversarial-with");
    let b = no_dropout(TrainConfig { order_pairs: None, ..config(3) }, "adversarial-none");
    let b2 = no_dropout(TrainConfig { order_pairs: None, ..config(3) }, "adversarial-none2");
    assert!(b.iter().zip(&b2).all(|((_, t1), (_, t2))| common::max_abs_diff(t1, t2) == 0.0), "deterministic");
    assert!(
        a.iter().zip(&b).any(|((_, ta), (_, tb))| common::max_abs_diff(ta, tb) > 0.0),
        "pairs had no effect"
    );

    let out = temp_dir("ref-long");
    let long = TrainConfig { vision: VisionTraining::Frozen, head_lr: Some(1e-2), ..config(20) };
    train(&data, &out, long, false, None);
    let model = QualityModel::load(&out, Placement::default()).unwrap();
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let set = Dataset::open(&data).unwrap();
    let cache = Cache::load(&set, &base).unwrap().with_references(&set, &base).unwrap();
    let refs = cache.references.as_ref().unwrap();
    let further = &cache.images + (&cache.images - refs) * 0.7;
    let margin = model.score(&cache.images).unwrap() - model.score(&further).unwrap();
    let share = margin.gt(0.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    println!("images above their further copies: {share:.3}");
    assert!(
        share >= 0.8,
        "only {share:.3} of the images outscore their copies moved away from the reference"
    );
}

/// Mean cosine between each image's score gradient and the way to its reference.
fn mean_alignment(model_dir: &Path, data: &Path) -> f64 {
    let model = QualityModel::load(model_dir, Placement::default()).unwrap();
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let set = Dataset::open(data).unwrap();
    let cache = Cache::load(&set, &base).unwrap().with_references(&set, &base).unwrap();
    let towards = cache.references.as_ref().unwrap() - &cache.images;
    let (_, g) = model.score_and_grad(&cache.images, None).unwrap();
    1.0 - alignment_loss(&g, &towards).double_value(&[])
}

/// Gradient alignment: refused without references, resumable, and it turns the score's gradient
/// towards the references: the aligned model's mean cosine beats the same run's without it.
#[test]
fn gradient_alignment_turns_the_gradient_towards_the_reference() {
    tch::set_num_threads(1);
    let data = synthetic_set(24);
    let config = |epochs, grad_align| TrainConfig {
        grad_align,
        augment: None,
        vision: VisionTraining::Full,
        ..tiny_train_config(epochs)
    };
    let err = refusal_without_references(&data, config(1, 1.0));
    assert!(err.contains("gradient alignment need the images' references"), "{err}");

    add_references(&data);
    assert_resume_is_exact(&data, &config(3, 1.0), "align");
    let (with, without) = (temp_dir("align-with"), temp_dir("align-without"));
    train(&data, &with, config(12, 2.0), false, None);
    train(&data, &without, config(12, 0.0), false, None);
    let (a, b) = (mean_alignment(&with, &data), mean_alignment(&without, &data));
    println!("mean cos(grad, reference - x): aligned {a:.3}, not aligned {b:.3}");
    assert!(a > b + 0.1 && a > 0.2, "alignment {a:.3} against {b:.3} without it");
}

/// Alignment at the order pairs' copies: refused without order pairs, resumable, and it turns the
/// score's gradient at blurred copies towards the references (sharpening): the mean cosine there
/// beats the same run's without it.
#[test]
fn copy_alignment_turns_the_gradient_at_blurred_copies_towards_the_reference() {
    tch::set_num_threads(1);
    let data = synthetic_set(24);
    add_references(&data);
    let config = |epochs, grad_align_copies| TrainConfig {
        order_pairs: Some(OrderPairs { kinds: vec![OrderKind::Blur], weight: 1.0, min_label: 2.0 }),
        grad_align_copies,
        augment: None,
        vision: VisionTraining::Full,
        ..tiny_train_config(epochs)
    };
    let err = refusal_without_references(&data, TrainConfig { order_pairs: None, ..config(1, 1.0) });
    assert!(err.contains("grad_align_copies needs order pairs"), "{err}");
    assert_resume_is_exact(&data, &config(3, 1.0), "copy-align");

    let (with, without) = (temp_dir("copy-align-with"), temp_dir("copy-align-without"));
    train(&data, &with, config(12, 2.0), false, None);
    train(&data, &without, config(12, 0.0), false, None);
    let base = QualityConfig::new(fixture("siglip/tiny_a").to_str().unwrap(), 16);
    let set = Dataset::open(&data).unwrap();
    let cache = Cache::load(&set, &base).unwrap().with_references(&set, &base).unwrap();
    let keep = cache.labels.ge(2.0).nonzero().squeeze_dim(1);
    let blurred = ldctq::filters::gaussian(&cache.images.index_select(0, &keep), 1.0).unwrap();
    let towards = cache.references.as_ref().unwrap().index_select(0, &keep) - &blurred;
    let cosine = |dir: &Path| {
        let model = QualityModel::load(dir, Placement::default()).unwrap();
        let (_, g) = model.score_and_grad(&blurred, None).unwrap();
        1.0 - alignment_loss(&g, &towards).double_value(&[])
    };
    let (a, b) = (cosine(&with), cosine(&without));
    println!("mean cos(grad, reference - blurred) at blurred copies: aligned {a:.3}, not aligned {b:.3}");
    assert!(a > b + 0.1 && a > 0.2, "copy alignment {a:.3} against {b:.3} without it");
}

#[test]
fn smoke_training_lowers_the_loss() {
    let data = synthetic_set(30);
    let out = temp_dir("smoke");
    let losses = train(
        &data,
        &out,
        TrainConfig {
            vision: VisionTraining::Frozen,
            augment: None,
            head_lr: Some(1e-2),
            ..tiny_train_config(24)
        },
        false,
        None,
    );
    println!("train losses {losses:?}");
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.8 * first, "loss did not fall: {losses:?}");
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 24);
    assert!(out.join("ldctq.json").is_file() && out.join("train_summary.json").is_file());
    let png = std::fs::read(out.join("curves.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "curves.png is not a drawn PNG");
}

#[test]
fn dataset_errors_name_the_missing_files() {
    let data = synthetic_set(4);
    std::fs::remove_file(data.join("image/0002.tif")).unwrap();
    let err = Dataset::open(&data).unwrap_err().to_string();
    assert!(err.contains("0002.tif") && err.contains("without an image"), "{err}");
    std::fs::write(data.join("image/0002.tif"), b"x").unwrap();
    std::fs::write(data.join("image/extra.tif"), b"x").unwrap();
    let err = Dataset::open(&data).unwrap_err().to_string();
    assert!(err.contains("extra.tif") && err.contains("without a label"), "{err}");
    let csv = data.join("m.csv");
    std::fs::write(&csv, "path,score\nimage/0000.tif,2.0\nimage/nope.tif,1.0\n").unwrap();
    assert!(Dataset::open(&csv).unwrap_err().to_string().contains("nope.tif"));
    std::fs::write(&csv, "path,score\nimage/0000.tif,7.5\n").unwrap();
    assert!(Dataset::open(&csv).unwrap_err().to_string().contains("outside [0, 4]"));
}

/// A bf16 parameter trained with steps far below its resolution: AdamW's f32 master copy adds them up
/// (pure bf16 would round every one away), and a restored optimizer continues bit for bit.
#[test]
fn adamw_keeps_f32_master_weights_for_bf16_parameters() {
    let run = |opt: &mut AdamW, p: &Tensor, steps: usize| {
        for _ in 0..steps {
            opt.zero_grad();
            p.to_kind(Kind::Float).sum(Kind::Float).backward(); // gradient 1 everywhere
            opt.step(1e-3); // Adam moves each weight by about lr = 1e-3; bf16's step near 1 is 2^-8..2^-7
        }
    };
    let p = Tensor::ones([4], (Kind::BFloat16, tch::Device::Cpu)).set_requires_grad(true);
    let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], 0.0);
    run(&mut opt, &p, 100);
    let v = p.double_value(&[0]);
    // bf16's spacing near 0.9 is 2^-8 (0.0039): the master's value rounds to within half of it, plus
    // Adam's early steps (~1e-3 off); elementwise f32 ops, correctly rounded on any CPU.
    assert!((v - 0.9).abs() < 0.006, "100 steps of 1e-3 from 1 should reach about 0.9 (bf16), got {v}");
    let state: std::collections::HashMap<String, Tensor> = opt.state().into_iter().collect();
    let master = state.get("w.p").expect("the master copy is saved with the moments");
    assert_eq!(master.kind(), Kind::Float);
    assert!((master.double_value(&[0]) - 0.9).abs() < 1e-3); // Adam's step is lr up to its bias correction
                                                             // Resume: a new optimizer over a copy of the parameter, restored from the state, takes the same steps.
    let q = p.detach().copy().set_requires_grad(true);
    let mut resumed = AdamW::new(vec![("p".into(), q.shallow_clone())], 0.0);
    resumed.load_state(&state, opt.step).unwrap();
    run(&mut opt, &p, 50);
    run(&mut resumed, &q, 50);
    assert_eq!(common::max_abs_diff(&p, &q), 0.0);
    // f32 parameters have no master copy.
    let f = Tensor::ones([2], tch::kind::FLOAT_CPU).set_requires_grad(true);
    assert!(AdamW::new(vec![("f".into(), f)], 0.0).state().iter().all(|(k, _)| !k.starts_with("w.")));
}
