//! Quality maps: the intrinsic map's exact relation to the slice score, the gradient and smoothing maps
//! against the score's backward pass (the smoothing gain against finite differences, and its sign on
//! toy criteria), localisation of a degraded quadrant by `models/default`, and errors.
mod common;

use common::{fixture, max_abs_diff};
use ldctq::criterion::{gradient_sigma, smoothing_sigmas, CriterionInfo, MapMethod, QualityCriterion};
use ldctq::heads::{pool, pool_per_patch, LocalMode};
use ldctq::model::QualityModel;
use ldctq::{filters, phantom, Placement, Window};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn load(dir: PathBuf, kind: Kind) -> QualityModel {
    QualityModel::load(&dir, Placement { device: Device::Cpu, kind }).unwrap()
}

fn default_model() -> QualityModel {
    load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default"), Kind::Float)
}

/// Clean phantoms in [0, 1] (the default model's space), (n, 1, size, size).
fn phantoms(n: u64, size: i64) -> Tensor {
    let hu: Vec<Tensor> = (0..n).map(|s| phantom::phantom(100 + s, size)).collect();
    Window::LDCTIQA.to_unit(&Tensor::stack(&hu, 0).reshape([n as i64, 1, size, size])).unwrap()
}

#[test]
fn uniform_patch_tokens_give_the_slice_score_in_every_patch() {
    for (rel, scale) in [("quality/a_unit_seq", 1.0), ("quality/b_hu_grid", 2000.0)] {
        let model = load(fixture(rel), Kind::Double);
        tch::manual_seed(3);
        let images = Tensor::rand([2, 1, 20, 24], (Kind::Double, Device::Cpu)) * scale - scale / 2.0;
        let pixel_values = model.config.preprocess().pixel_values(&images).unwrap();
        let stages = model.forward_stages(&pixel_values, None).unwrap();
        let (b, p, d) = stages.tokens.size3().unwrap();
        // Real tokens: the patches differ (so the identity below is not vacuous).
        let patch = model.patch_scores(&stages).unwrap();
        assert_eq!(patch.size(), [b, p]);
        let spread = (patch.max() - patch.min()).double_value(&[]);
        assert!(spread > 1e-6, "{rel}: patch scores all equal ({spread})");
        // Every token replaced by the third one: each patch score is the slice score.
        let uniform = stages.tokens.narrow(1, 2, 1).expand([b, p, d], false);
        let stages = model.stages_from_tokens(pixel_values, uniform, None).unwrap();
        let patch = model.patch_scores(&stages).unwrap();
        let slice = stages.score.unsqueeze(1).expand([b, p], false);
        let diff = max_abs_diff(&patch, &slice);
        assert!(diff < 1e-12, "{rel}: uniform tokens: patch vs slice score differ by {diff}");
    }
}

/// The occlusion gains against a brute force: the raw tokens of the block around each patch replaced
/// by the mean of the ring around the block (FiLM is affine per channel, so replacing before or after
/// it is the same) and the model's tail rerun; zero gains for uniform tokens; even blocks refused.
#[test]
fn occlusion_gains_equal_a_brute_force_replacement() {
    for rel in ["quality/a_unit_seq", "quality/b_hu_grid"] {
        let model = load(fixture(rel), Kind::Double);
        tch::manual_seed(4);
        let images = Tensor::rand([2, 1, 20, 24], (Kind::Double, Device::Cpu));
        let pixel_values = model.config.preprocess().pixel_values(&images).unwrap();
        let stages = model.forward_stages(&pixel_values, None).unwrap();
        let (b, p, d) = stages.tokens.size3().unwrap();
        let side = (p as f64).sqrt() as i64;
        let grid = stages.tokens.view([b, side, side, d]);
        for block in [1i64, 3] {
            let gains = model.occlusion_gains(&stages, block).unwrap();
            assert_eq!(gains.size(), [b, p]);
            let h = block / 2;
            for q in [0, 1, side + 1, p / 2 + 3, p - 1] {
                let (r, c) = (q / side, q % side);
                let cheb = |rr: i64, cc: i64| (rr - r).abs().max((cc - c).abs());
                let mut sum = Tensor::zeros([b, d], (Kind::Double, Device::Cpu));
                let mut n = 0.0;
                let tokens = stages.tokens.copy();
                let cells: Vec<(i64, i64)> =
                    (0..side).flat_map(|rr| (0..side).map(move |cc| (rr, cc))).collect();
                for &(rr, cc) in &cells {
                    if cheb(rr, cc) == h + 1 {
                        sum += grid.select(1, rr).select(1, cc);
                        n += 1.0;
                    }
                }
                let mean = sum / n;
                for &(rr, cc) in &cells {
                    if cheb(rr, cc) <= h {
                        tokens.select(1, rr * side + cc).copy_(&mean);
                    }
                }
                let replaced = model.stages_from_tokens(pixel_values.shallow_clone(), tokens, None).unwrap();
                let want = &replaced.score - &stages.score;
                let got = gains.select(1, q);
                // f64, another summation order of the ring's mean: rounding ~1e-15.
                assert!(
                    max_abs_diff(&got, &want) < 1e-10,
                    "{rel} block {block} patch {q}: {got:?} vs {want:?}"
                );
            }
            assert!(gains.abs().max().double_value(&[]) > 1e-6, "{rel}: all gains zero");
        }
        assert!(model.occlusion_gains(&stages, 2).is_err() && model.occlusion_gains(&stages, 0).is_err());
        let uniform = stages.tokens.narrow(1, 2, 1).expand([b, p, d], false);
        let stages = model.stages_from_tokens(pixel_values, uniform, None).unwrap();
        let zero = model.occlusion_gains(&stages, 3).unwrap().abs().max().double_value(&[]);
        assert!(zero < 1e-12, "{rel}: uniform tokens give gains {zero}");
    }
}

/// The per-patch local inputs average to the slice's (so every linear function of them, such as the
/// local head's first layer, averages to the slice's value), in both local modes.
#[test]
fn per_patch_local_inputs_average_to_the_slice_local_input() {
    tch::manual_seed(8);
    let tokens = Tensor::randn([2, 256, 5], (Kind::Double, Device::Cpu));
    for mode in [LocalMode::Sequence, LocalMode::Grid] {
        let (_, h_l, _) = pool(&tokens, mode).unwrap();
        let (per_patch, tex) = pool_per_patch(&tokens, mode).unwrap();
        assert_eq!((per_patch.size(), tex.size()), (vec![2, 256, 20], vec![2, 256, 10]));
        let diff = max_abs_diff(&per_patch.mean_dim(1, false, Kind::Double), &h_l);
        assert!(diff < 1e-14, "{mode:?}: {diff}");
        // Texture: the patch's own token in both bins.
        assert_eq!(max_abs_diff(&tex.view([2, 256, 5, 2]).select(3, 1), &tokens), 0.0);
    }
}

#[test]
fn intrinsic_map_is_four_minus_the_patch_scores_upsampled() {
    let model = load(fixture("quality/a_unit_seq"), Kind::Double);
    tch::manual_seed(4);
    let images = Tensor::rand([2, 1, 16, 16], (Kind::Double, Device::Cpu)); // the model's size: no resize
    let pixel_values = model.config.preprocess().pixel_values(&images).unwrap();
    let stages = model.forward_stages(&pixel_values, None).unwrap();
    let patch = model.patch_scores(&stages).unwrap(); // (2, P)
    let side = (patch.size()[1] as f64).sqrt() as i64;
    let map = model.quality_map(&images, MapMethod::Intrinsic).unwrap();
    assert_eq!(map.size(), [2, 16, 16]);
    let direct = patch.neg().g_add_scalar(4.0).reshape([2, 1, side, side]).upsample_bilinear2d(
        [16, 16],
        false,
        None,
        None,
    );
    assert!(max_abs_diff(&map, &direct.squeeze_dim(1)) < 1e-12);
    let lo = map.min().double_value(&[]);
    let hi = map.max().double_value(&[]);
    assert!((0.0..=4.0).contains(&lo) && hi <= 4.0 && hi > lo, "map range {lo}..{hi}");
}

#[test]
fn gradient_map_is_the_smoothed_magnitude_of_the_score_gradient() {
    let model = load(fixture("quality/a_unit_seq"), Kind::Double);
    tch::manual_seed(5);
    let images = Tensor::rand([2, 1, 24, 20], (Kind::Double, Device::Cpu));
    let map = model.quality_map(&images, MapMethod::Gradient).unwrap();
    assert_eq!(map.size(), [2, 24, 20]);
    let (_, grad) = model.score_and_grad(&images, None).unwrap();
    let want = filters::gaussian(&grad.abs(), gradient_sigma(24, 20)).unwrap().squeeze_dim(1);
    assert_eq!(max_abs_diff(&map, &want), 0.0);
    // Smoothing keeps the total gradient magnitude up to the mirrored borders.
    let (total, smoothed) = (grad.abs().sum(Kind::Double), map.sum(Kind::Double));
    let rel = ((total - &smoothed).abs() / smoothed).double_value(&[]);
    assert!(rel < 0.2, "smoothing changed the total by {rel}");
    // Same maps from (N, H, W) images and from f32 images (to f32 rounding).
    let map3 = model.quality_map(&images.squeeze_dim(1), MapMethod::Gradient).unwrap();
    assert_eq!(max_abs_diff(&map, &map3), 0.0);
}

/// The smoothing map is `G_w * (-g . (x - G_s x))` with g the score's gradient, and its density sums
/// to the score's directional derivative along smoothing: `(s(x - e d) - s(x + e d)) / 2e` with
/// `d = x - G_s x` (f64, central differences).
#[test]
fn smoothing_map_is_the_first_order_gain_of_smoothing() {
    let model = load(fixture("quality/a_unit_seq"), Kind::Double);
    tch::manual_seed(8);
    let images = Tensor::rand([2, 1, 24, 20], (Kind::Double, Device::Cpu));
    let map = model.quality_map(&images, MapMethod::Smoothing).unwrap();
    assert_eq!(map.size(), [2, 24, 20]);
    let (s, w) = smoothing_sigmas(24, 20);
    assert_eq!((s, w), (0.5, 3.0 * gradient_sigma(24, 20))); // a quarter of gradient_sigma is under 0.5
    assert_eq!(smoothing_sigmas(256, 256), (1.0, 12.0));
    let (_, grad) = model.score_and_grad(&images, None).unwrap();
    let detail = &images - filters::gaussian(&images, s).unwrap();
    let density = -(&grad * &detail);
    let want = filters::gaussian(&density, w).unwrap().squeeze_dim(1);
    assert_eq!(max_abs_diff(&map, &want), 0.0);
    let e = 1e-4;
    let score = |x: Tensor| model.score(&x).unwrap();
    let fd = (score(&images - &detail * e) - score(&images + &detail * e)) / (2.0 * e);
    let total = density.sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Double);
    println!("finite differences {fd:?}, density totals {total:?}");
    let rel = max_abs_diff(&fd, &total) / total.abs().max().double_value(&[]);
    assert!(rel < 1e-6, "density total vs finite differences: relative {rel:e}");
    let map3 = model.quality_map(&images.squeeze_dim(1), MapMethod::Smoothing).unwrap();
    assert_eq!(max_abs_diff(&map, &map3), 0.0);
}

/// Toy criteria of the mean squared high-pass energy `E = mean((x - G_1 x)^2)`: one penalises it
/// (score `4 sigmoid(-k E)`: noise is quality loss), one rewards it.
struct Detail(f64);

impl QualityCriterion for Detail {
    fn info(&self) -> CriterionInfo {
        common::toy_info("detail toy")
    }

    fn score(&self, images: &Tensor) -> ldctq::Result<Tensor> {
        let (n, h, w) = (images.size()[0], images.size()[images.dim() - 2], images.size()[images.dim() - 1]);
        let x = images.to_kind(Kind::Float).reshape([n, 1, h, w]);
        let energy =
            (&x - filters::gaussian(&x, 1.0)?).square().mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        Ok((energy * self.0).sigmoid() * 4.0)
    }
}

/// Noise in one quadrant: the smoothing map of a criterion that penalises noise peaks in that
/// quadrant (smoothing there gains most), that of one rewarding detail has its minimum there.
#[test]
fn smoothing_map_peaks_where_smoothing_gains_and_dips_where_it_costs() {
    let images = noisy_quadrants(0.1);
    let penalises = Detail(-2000.0).quality_map(&images, MapMethod::Smoothing).unwrap();
    assert_eq!(peak_quadrants(&penalises), [0, 1, 2, 3]);
    let rewards = Detail(2000.0).quality_map(&images, MapMethod::Smoothing).unwrap();
    assert_eq!(peak_quadrants(&-rewards), [0, 1, 2, 3]);
}

/// Clean phantoms with white noise of `level` (in [0, 1] units) added to quadrant q of image q.
fn noisy_quadrants(level: f64) -> Tensor {
    let (size, half) = (256, 128);
    let clean = phantoms(4, size);
    tch::manual_seed(6);
    let images: Vec<Tensor> = (0..4)
        .map(|q| {
            let noise = Tensor::zeros([1, size, size], (Kind::Float, Device::Cpu));
            let patch = Tensor::randn([1, half, half], (Kind::Float, Device::Cpu)) * level;
            noise.narrow(1, q / 2 * half, half).narrow(2, q % 2 * half, half).copy_(&patch);
            (clean.get(q) + noise).clamp(0.0, 1.0)
        })
        .collect();
    Tensor::stack(&images, 0) // (4, 1, 256, 256)
}

/// The quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of each map's maximum.
fn peak_quadrants(maps: &Tensor) -> Vec<i64> {
    let (n, h, w) = maps.size3().unwrap();
    (0..n)
        .map(|q| {
            let flat = maps.get(q).flatten(0, -1).argmax(0, false).int64_value(&[]);
            (flat / w) / (h / 2) * 2 + (flat % w) / (w / 2)
        })
        .collect()
}

/// Noise of 0.1 (140 HU) in one quadrant of a clean phantom: the intrinsic map of `models/default`
/// should peak in that quadrant. The previous default model (trained on scans alone) did for all 4
/// images (2 of 4 at 0.05, 70 HU); the order-trained model of December 2026 does not: its patch
/// scores saturate near 4 on these phantoms (quadrant means of the map 0.011-0.027) and the peaks
/// land in quadrants [1, 1, 2, 1] ([1, 1, 3, 3] at 0.05). Kept, ignored, as the target a retrained
/// model should meet (the pointing game, docs/quality-maps.md, measures the same on real slices).
#[test]
#[ignore = "fails on the order-trained models/default (see the comment)"]
fn intrinsic_map_of_the_default_model_peaks_in_a_noisy_quadrant() {
    let maps = default_model().quality_map(&noisy_quadrants(0.1), MapMethod::Intrinsic).unwrap();
    assert_eq!(peak_quadrants(&maps), [0, 1, 2, 3]);
}

/// The same for the gradient map: it failed on the previous `models/default`, whose gradient magnitude
/// peaked at a few places whatever the image (quadrants [2, 2, 1, 0] for noise 0.1), and fails on the
/// order-trained one ([0, 3, 1, 1]); kept as the target a retrained model should meet.
#[test]
#[ignore = "fails on models/default (see the comment)"]
fn gradient_map_of_the_default_model_peaks_in_a_noisy_quadrant() {
    let maps = default_model().quality_map(&noisy_quadrants(0.1), MapMethod::Gradient).unwrap();
    assert_eq!(peak_quadrants(&maps), [0, 1, 2, 3]);
}

/// The local head's per-patch values ([`QualityModel::patch_sub_scores`]) average to the slice's local
/// sub-score: exactly for the head's first (linear) layer, and within 0.1 after its GELU on clean and
/// noisy phantoms (measured at most 0.062, against a spread of 0.43-0.51 between patches).
#[test]
fn local_patch_values_average_to_the_slice_local_sub_score() {
    let model = default_model();
    tch::manual_seed(7);
    let levels = Tensor::from_slice(&[0.0f32, 0.0, 0.02, 0.04, 0.06, 0.08, 0.12, 0.2]).view([8, 1, 1, 1]);
    let noise = Tensor::randn([8, 1, 256, 256], (Kind::Float, Device::Cpu)) * levels;
    let images = (phantoms(8, 256) + noise).clamp(0.0, 1.0);
    let pixel_values = model.config.preprocess().pixel_values(&images).unwrap();
    let stages = tch::no_grad(|| model.forward_stages(&pixel_values, None)).unwrap();
    let sub = tch::no_grad(|| model.patch_sub_scores(&stages)).unwrap(); // (8, P, 3)
                                                                         // The global column is the slice's own.
    let y_g = stages.y.select(1, 0).unsqueeze(1).expand_as(&sub.select(2, 0));
    assert_eq!(max_abs_diff(&sub.select(2, 0), &y_g), 0.0);
    let local = sub.select(2, 1); // (8, P)
    let gap = max_abs_diff(&local.mean_dim(1, false, Kind::Float), &stages.y.select(1, 1));
    let spread = local.std_dim(1, true, false).min().double_value(&[]);
    println!("local head: |patch mean - slice| <= {gap:.4}; patch spread >= {spread:.3}");
    assert!(gap <= 0.1 && spread > 4.0 * gap, "gap {gap}, spread {spread}");
}

#[test]
fn bad_map_arguments_are_errors() {
    let model = load(fixture("quality/a_unit_seq"), Kind::Float);
    for method in MapMethod::ALL {
        for bad in [
            Tensor::zeros([2, 2, 16, 16], (Kind::Float, Device::Cpu)),
            Tensor::zeros([16, 16], (Kind::Float, Device::Cpu)),
            Tensor::zeros([1, 16, 16], (Kind::Int64, Device::Cpu)),
            Tensor::full([1, 16, 16], f64::NAN, (Kind::Float, Device::Cpu)),
        ] {
            let err = model.quality_map(&bad, method).unwrap_err();
            assert!(
                matches!(err, ldctq::Error::InvalidInput(_)),
                "{}: {:?}: {err}",
                method.name(),
                bad.size()
            );
        }
    }
    assert!("saliency".parse::<MapMethod>().is_err());
    assert_eq!("gradient".parse::<MapMethod>().unwrap(), MapMethod::Gradient);
}

/// `ldctq map` writes NAME.METHOD.npy equal to the library's maps (1e-5) and a PNG overlay per method;
/// a bad method is an error.
#[test]
fn cli_map_writes_the_library_maps() {
    let dir = common::temp_dir("map-cli");
    tch::manual_seed(9);
    let image = Tensor::rand([20, 24], (Kind::Float, Device::Cpu));
    let values = Vec::<f32>::try_from(&image.flatten(0, -1)).unwrap();
    let array = ndarray::ArrayD::from_shape_vec(vec![20, 24], values).unwrap();
    ldctq::io::write_npy_f32(&dir.join("slice.npy"), &array.view()).unwrap();
    let model_dir = fixture("quality/a_unit_seq");
    let ldctq = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ldctq")).args(args).output().expect("ldctq runs")
    };
    let out = dir.join("maps");
    let (m, o, f) = (model_dir.to_str().unwrap(), out.to_str().unwrap(), dir.join("slice.npy"));
    let run = ldctq(&["map", "--model", m, "--input", "unit", "--out", o, f.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let model = load(model_dir.clone(), Kind::Float);
    for method in MapMethod::ALL {
        let want = model.quality_map(&image.unsqueeze(0), method).unwrap().squeeze_dim(0);
        let got = ldctq::io::read_npy(&out.join(format!("slice.{}.npy", method.name()))).unwrap();
        let got = Tensor::from_slice(got.pixels.as_slice().unwrap()).view([20, 24]);
        let diff = max_abs_diff(&got, &want);
        println!("{}: CLI vs Rust max |diff| {diff:e}", method.name());
        assert!(diff <= 1e-5, "{}: {diff}", method.name());
        assert!(out.join(format!("slice.{}.png", method.name())).is_file());
    }
    let bad = ldctq(&[
        "map",
        "--model",
        m,
        "--input",
        "unit",
        "--out",
        o,
        "--method",
        "saliency",
        f.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("saliency"));
}
