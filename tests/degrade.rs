//! Filters, ordered degradations, the perceptual label model and the trainer's order pairs.
mod common;

use ldctq::degrade::{self, Degradation, Measured};
use ldctq::filters;
use ldctq::phantom;
use ldctq::rng::Rng;
use ldctq::simulate::{self, quality_label, ScanParams};
use ldctq::train::{OrderKind, OrderPairs};
use tch::{Device, Kind, Tensor};

fn image(seed: u64, n: i64) -> Tensor {
    let mut rng = Rng::new(seed);
    let v: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    Tensor::from_slice(&v).view([1, 1, n, n])
}

fn total_variation(x: &Tensor) -> f64 {
    let dx = x.diff(1, -1, None::<Tensor>, None::<Tensor>).abs().sum(Kind::Double);
    let dy = x.diff(1, -2, None::<Tensor>, None::<Tensor>).abs().sum(Kind::Double);
    (dx + dy).double_value(&[])
}

#[test]
fn filters_keep_constants_and_smooth_noise() {
    let c = Tensor::full([2, 1, 9, 11], 0.37, (Kind::Double, Device::Cpu));
    let x = image(1, 32);
    let std0 = x.std(true).double_value(&[]);
    type F = Box<dyn Fn(&Tensor) -> ldctq::Result<Tensor>>;
    let all: Vec<(&str, F)> = vec![
        ("gaussian", Box::new(|t| filters::gaussian(t, 1.2))),
        ("box", Box::new(|t| filters::box_mean(t, 3))),
        ("median", Box::new(|t| filters::median(t, 3))),
        ("bilateral", Box::new(|t| filters::bilateral(t, 1.5, 10.0))),
        ("tv", Box::new(|t| filters::total_variation(t, 0.5, 60))),
    ];
    for (name, f) in &all {
        // Constants: exact up to f64 rounding of sums of <= 121 terms of 0.37 (bilateral's window),
        // or 60 TV iterations: rounding_tol(f64, 121, 60, 0.37) ~ 2e-13 on any CPU.
        common::assert_close(&format!("{name} of a constant"), &f(&c).unwrap(), &c, 1e-12);
        let y = f(&x).unwrap();
        assert_eq!(y.size(), x.size(), "{name}: shape");
        let std1 = y.std(true).double_value(&[]);
        println!("{name}: std {std0:.3} -> {std1:.3}");
        assert!(std1 < 0.8 * std0, "{name} does not smooth white noise: {std0} -> {std1}");
    }
    // The box mean equals a direct 3 x 3 average away from the borders.
    let b = filters::box_mean(&x, 3).unwrap();
    let direct = x.unfold(2, 3, 1).unfold(3, 3, 1).mean_dim([-1i64, -2].as_slice(), false, Kind::Double);
    // Two f64 sums of the same 9 values (<= 1) in other orders: a few ulps.
    common::assert_close("box vs direct mean", &b.narrow(2, 1, 30).narrow(3, 1, 30), &direct, 1e-12);
    // TV lowers the total variation and keeps the mean (the ROF solution's mean is the data's).
    let t = filters::total_variation(&x, 0.5, 60).unwrap();
    assert!(total_variation(&t) < 0.5 * total_variation(&x));
    let dm = (t.mean(Kind::Double) - x.mean(Kind::Double)).abs().double_value(&[]);
    assert!(dm < 1e-9, "TV moved the mean by {dm}"); // f64: 60 iterations of 32 x 32 sums, ~1e-14
}

#[test]
fn filters_reject_bad_arguments() {
    let x = image(2, 8);
    assert!(filters::gaussian(&x, -1.0).is_err());
    assert!(filters::gaussian(&x, f64::NAN).is_err());
    assert!(filters::median(&x, 4).is_err());
    assert!(filters::box_mean(&x, 0).is_err());
    assert!(filters::bilateral(&x, 0.0, 1.0).is_err());
    assert!(filters::total_variation(&x, 0.1, 0).is_err());
    assert!(filters::gaussian(&x.view([8, 8]), 1.0).is_err(), "2-D input must be refused");
    assert!(filters::median(&x.to_kind(Kind::Int64), 3).is_err(), "integer input must be refused");
}

/// A 128 px phantom: (low dose scan, noise-free reference), HU.
fn scan(dose: f64) -> (Tensor, Tensor) {
    let hu = phantom::phantom(5, 128);
    let params = ScanParams { dose, views: 720, pixel_mm: 2.8, seed: Some(11), ..ScanParams::default() };
    simulate::simulate_pair(&hu, &params).unwrap()
}

fn measured(d: &Degradation, low: &Tensor, clean: &Tensor) -> Measured {
    let x = degrade::apply(d, low, clean, 3).unwrap();
    degrade::measure(d, &x, low, clean).unwrap()
}

#[test]
fn the_scan_itself_keeps_its_dose_label() {
    let _g = tch::no_grad_guard();
    let (low, clean) = scan(0.25);
    let m = measured(&Degradation::None, &low, &clean);
    println!("{m:?}");
    // The scan measured against itself: f64 ratios of equal sums, exact up to a few ulps.
    assert!((m.noise_ratio - 1.0).abs() < 1e-12 && m.edge_sigma == 0.0 && m.texture_octaves.abs() < 1e-12);
    let label = degrade::perceptual_label(0.25, 720, 720, &m);
    assert!((label - quality_label(0.25, 720, 720)).abs() < 1e-12);
}

#[test]
fn gaussian_blur_is_measured_as_its_sigma_and_labelled_worse_as_it_grows() {
    let _g = tch::no_grad_guard();
    let (low, clean) = scan(1.0);
    let mut last = f64::INFINITY;
    for sigma in [0.5, 1.0, 1.5, 2.0, 3.0] {
        let m = measured(&Degradation::Gaussian { sigma }, &low, &clean);
        let label = degrade::perceptual_label(1.0, 720, 720, &m);
        println!("sigma {sigma}: {m:?} label {label:.3}");
        // A linear filter's edge response does not depend on the noise (subtracted exactly): the fit
        // of the sampled Gaussian-blurred step is within its 0.02 px grid and the sampling of the taps.
        // The edge-spread fit's resolution (0.02 px steps) and bias, not rounding (f64).
        assert!((m.edge_sigma - sigma).abs() < 0.1, "edge sigma {} for blur {sigma}", m.edge_sigma);
        assert!(m.noise_ratio < 1.0 && m.texture_octaves < 0.0);
        assert!(label < last, "label must fall with sigma: {label} after {last}");
        last = label;
    }
}

#[test]
fn denoising_a_low_dose_scan_gains_and_texture_replacement_loses() {
    let _g = tch::no_grad_guard();
    let (low, clean) = scan(0.1);
    let base = quality_label(0.1, 720, 720);
    for d in
        [Degradation::Gaussian { sigma: 1.0 }, Degradation::Box { size: 3 }, Degradation::Median { size: 3 }]
    {
        let m = measured(&d, &low, &clean);
        let label = degrade::perceptual_label(0.1, 720, 720, &m);
        println!("{d:?}: {m:?} label {label:.3} (scan {base:.3})");
        assert!(label > base && label < 4.0, "{d:?}: {label} vs scan {base}");
    }
    let white = measured(&Degradation::WhiteNoise { level: 1.0 }, &low, &clean);
    let blotchy = measured(&Degradation::BlotchyNoise { level: 1.0, grain: 2.0 }, &low, &clean);
    println!("white {white:?}\nblotchy {blotchy:?}");
    // Same rms within the sampling error of the body's pixels (thousands of them).
    assert!((white.noise_ratio - 1.0).abs() < 0.05 && (blotchy.noise_ratio - 1.0).abs() < 0.05);
    assert!(blotchy.texture_octaves < -1.0, "blotchy noise must be lower in frequency");
    let lw = degrade::perceptual_label(0.1, 720, 720, &white);
    let lb = degrade::perceptual_label(0.1, 720, 720, &blotchy);
    // lw == base in exact arithmetic when the measured ratio rounds to the scan's: f64 ulps.
    assert!(lb < lw.min(base) && lw <= base + 1e-12, "labels: white {lw}, blotchy {lb}, scan {base}");
}

#[test]
fn degradations_reject_mismatched_images() {
    let a = Tensor::zeros([8, 8], (Kind::Float, Device::Cpu));
    let b = Tensor::zeros([8, 9], (Kind::Float, Device::Cpu));
    assert!(degrade::apply(&Degradation::None, &a, &b, 0).is_err());
    assert!(degrade::apply(&Degradation::WhiteNoise { level: f64::NAN }, &a, &a, 0).is_err());
    assert!(degrade::apply(&Degradation::Median { size: 2 }, &a, &a, 0).is_err());
}

#[test]
fn order_pairs_pair_only_eligible_images_and_degrade_them() {
    let x = Tensor::rand([3, 1, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[1.0f32, 3.5, 4.0]);
    let blur = OrderPairs { kinds: vec![OrderKind::Blur], weight: 1.0, min_label: 3.0 };
    let (worse, which) = blur.degrade(&x, None, &y, 1.0, &mut Rng::new(1), None).unwrap().unwrap();
    assert_eq!(Vec::<i64>::try_from(which).unwrap(), vec![1, 2], "blur pairs only labels >= 3");
    assert_eq!(worse.size(), vec![2, 1, 16, 16]);
    let smoother = worse.std(true).double_value(&[]) < x.narrow(0, 1, 2).std(true).double_value(&[]);
    assert!(smoother, "blurred copies must vary less");
    let low = Tensor::from_slice(&[0.5f32, 1.0, 2.0]);
    assert!(blur.degrade(&x, None, &low, 1.0, &mut Rng::new(1), None).unwrap().is_none());
    let noise = OrderPairs { kinds: vec![OrderKind::Noise, OrderKind::Texture], weight: 1.0, min_label: 3.0 };
    let (worse, which) = noise.degrade(&x, None, &low, 1.0, &mut Rng::new(2), None).unwrap().unwrap();
    assert_eq!(which.size(), vec![3], "noise pairs any image");
    assert!(common::max_abs_diff(&worse, &x) > 1e-3);
    // Seeded: the same draws again.
    let (again, _) = noise.degrade(&x, None, &low, 1.0, &mut Rng::new(2), None).unwrap().unwrap();
    assert_eq!(common::max_abs_diff(&worse, &again), 0.0);
    assert!(OrderPairs { kinds: vec![], weight: 1.0, min_label: 3.0 }.validate().is_err());
    assert!(OrderPairs { kinds: vec![OrderKind::Blur], weight: 0.0, min_label: 3.0 }.validate().is_err());
    assert!("deblur".parse::<OrderKind>().is_err());
}

/// `offset` shifts every value of a copy by one amount, 0.5-2 % of the value range, either way, for
/// any image; `sharpen` overshoots edges (values beyond both sides of a step) and pairs only
/// well-labelled images.
#[test]
fn offset_and_sharpen_pairs_shift_calibration_and_overshoot_edges() {
    let step = Tensor::cat(
        &[
            Tensor::zeros([1, 1, 16, 8], (Kind::Float, Device::Cpu)),
            Tensor::ones([1, 1, 16, 8], (Kind::Float, Device::Cpu)),
        ],
        3,
    ) * 0.5
        + 0.25; // 0.25 | 0.75
    let x = Tensor::cat(&[&step, &step, &step], 0);
    let low = Tensor::from_slice(&[0.5f32, 1.0, 2.0]);
    let offset = OrderPairs { kinds: vec!["offset".parse().unwrap()], weight: 1.0, min_label: 3.0 };
    let (worse, which) = offset.degrade(&x, None, &low, 1400.0, &mut Rng::new(3), None).unwrap().unwrap();
    assert_eq!(which.size(), vec![3], "offset pairs any image");
    for i in 0..3 {
        let d = worse.get(i) - x.get(i);
        let (lo, hi) = (d.min().double_value(&[]), d.max().double_value(&[]));
        assert!((hi - lo).abs() < 1e-3, "one shift per copy: {lo} .. {hi}");
        assert!((7.0 - 1e-3..=28.0 + 1e-3).contains(&lo.abs()), "0.5-2 % of 1400: {lo}");
    }
    let sharpen = OrderPairs { kinds: vec![OrderKind::Sharpen], weight: 1.0, min_label: 3.0 };
    assert!(
        sharpen.degrade(&x, None, &low, 1.0, &mut Rng::new(4), None).unwrap().is_none(),
        "only labels >= 3"
    );
    let y = Tensor::from_slice(&[3.0f32, 4.0, 1.0]);
    let (worse, which) = sharpen.degrade(&x, None, &y, 1.0, &mut Rng::new(4), None).unwrap().unwrap();
    assert_eq!(Vec::<i64>::try_from(which).unwrap(), vec![0, 1]);
    for i in 0..2 {
        let w = worse.get(i);
        assert!(
            w.max().double_value(&[]) > 0.76 && w.min().double_value(&[]) < 0.24,
            "overshoot on both sides"
        );
        let far = w.double_value(&[0, 0, 0]); // a corner, 8 px from the step
        assert!((far - 0.25).abs() < 1e-3, "flat regions stay: {far}");
    }
}

/// `reference` moves an image further from its reference, `x + a (x - ref)` with one a in 0.4-1 per
/// copy, for any label; an image equal to its reference, or a batch without references, is not paired.
#[test]
fn reference_pairs_move_images_away_from_their_references() {
    let refs = Tensor::rand([3, 1, 16, 16], (Kind::Float, Device::Cpu));
    let noise = Tensor::randn([3, 1, 16, 16], (Kind::Float, Device::Cpu)) * 0.05;
    let x = &refs + &noise * Tensor::from_slice(&[1.0f32, 0.0, 1.0]).view([3, 1, 1, 1]); // image 1 = its reference
    let y = Tensor::from_slice(&[0.5f32, 4.0, 3.9]);
    let pairs = OrderPairs { kinds: vec!["reference".parse().unwrap()], weight: 1.0, min_label: 3.0 };
    let (worse, which) = pairs.degrade(&x, Some(&refs), &y, 1.0, &mut Rng::new(5), None).unwrap().unwrap();
    assert_eq!(
        Vec::<i64>::try_from(which).unwrap(),
        vec![0, 2],
        "any label; not an image equal to its reference"
    );
    for (k, i) in [(0, 0), (1, 2)] {
        let residual = x.get(i) - refs.get(i);
        let moved = worse.get(k) - x.get(i);
        let a = (&moved * &residual).sum(Kind::Double).double_value(&[])
            / residual.square().sum(Kind::Double).double_value(&[]);
        assert!((0.4 - 1e-6..=1.0 + 1e-6).contains(&a), "a = {a}");
        assert!(common::max_abs_diff(&moved, &(&residual * a)) < 1e-5, "along x - ref only");
    }
    assert!(
        pairs.degrade(&x, None, &y, 1.0, &mut Rng::new(5), None).unwrap().is_none(),
        "no references, no pairs"
    );
}

/// `detail` blurs an image's anatomy and keeps its noise, `x - ref + G_sigma ref` with sigma 0.5-1.5,
/// for any label and also for an image equal to its reference; a batch without references is not paired.
#[test]
fn detail_pairs_blur_the_reference_and_keep_the_noise() {
    tch::manual_seed(7);
    let refs = Tensor::rand([2, 1, 24, 24], (Kind::Float, Device::Cpu));
    let noise = Tensor::randn([2, 1, 24, 24], (Kind::Float, Device::Cpu)) * 0.05;
    let x = &refs + &noise * Tensor::from_slice(&[1.0f32, 0.0]).view([2, 1, 1, 1]); // image 1 = its reference
    let y = Tensor::from_slice(&[0.5f32, 4.0]);
    let pairs = OrderPairs { kinds: vec!["detail".parse().unwrap()], weight: 1.0, min_label: 3.0 };
    let (worse, which) = pairs.degrade(&x, Some(&refs), &y, 1.0, &mut Rng::new(8), None).unwrap().unwrap();
    assert_eq!(
        Vec::<i64>::try_from(which).unwrap(),
        vec![0, 1],
        "any label, an image equal to its reference too"
    );
    let lost = |sigma: f64, i: i64| {
        let r = refs.narrow(0, i, 1);
        (&r - filters::gaussian(&r, sigma).unwrap()).square().sum(Kind::Double).double_value(&[])
    };
    for i in 0..2 {
        let kept = worse.get(i) - (x.get(i) - refs.get(i)); // the blurred reference, if the noise is kept
        let removed = (refs.get(i) - &kept).square().sum(Kind::Double).double_value(&[]);
        assert!(lost(0.5, i) < removed && removed < lost(1.5, i), "sigma 0.5-1.5: {removed}");
        let (mut lo, mut hi) = (0.5, 1.5); // the sigma that removes as much, by bisection (monotone)
        for _ in 0..30 {
            let mid = (lo + hi) / 2.0;
            *(if lost(mid, i) < removed { &mut lo } else { &mut hi }) = mid;
        }
        let sigma = lo;
        let blurred = filters::gaussian(&refs.narrow(0, i, 1), sigma).unwrap().get(0);
        assert!(
            common::max_abs_diff(&kept, &blurred) < 2e-3,
            "the reference blurred by one Gaussian, the noise kept"
        );
    }
    assert!(
        pairs.degrade(&x, None, &y, 1.0, &mut Rng::new(8), None).unwrap().is_none(),
        "no references, no pairs"
    );
}

/// `adversarial` takes signed-gradient steps adding up to 0.25-2 % of the range from the image, and
/// pairs it only when the step lands further from the reference: a gradient pointing away from the
/// reference is paired, one pointing towards it (by less than the residual) is not.
#[test]
fn adversarial_pairs_keep_steps_away_from_the_reference() {
    tch::manual_seed(6);
    let refs = Tensor::rand([2, 1, 16, 16], (Kind::Float, Device::Cpu));
    let x = &refs + Tensor::randn([2, 1, 16, 16], (Kind::Float, Device::Cpu)) * 0.1;
    let y = Tensor::from_slice(&[1.0f32, 2.0]);
    let pairs = OrderPairs { kinds: vec!["adversarial".parse().unwrap()], weight: 1.0, min_label: 3.0 };
    let (range, residual) = (100.0, &x - &refs);
    // The "score" rises away from the reference for image 0, towards it for image 1.
    let mut asked = Vec::new();
    let mut grad = |images: &Tensor, at: &[i64]| -> ldctq::Result<Tensor> {
        asked.push((images.size(), at.to_vec()));
        Ok(&residual * Tensor::from_slice(&[1.0f32, -1.0]).view([2, 1, 1, 1]))
    };
    let (x100, refs100) = (&x * range, &refs * range);
    let (worse, which) =
        pairs.degrade(&x100, Some(&refs100), &y, range, &mut Rng::new(6), Some(&mut grad)).unwrap().unwrap();
    let call = (vec![2, 1, 16, 16], vec![0, 1]);
    assert_eq!(asked, vec![call; ldctq::train::ADVERSARIAL_STEPS], "a gradient call per step for the batch");
    assert_eq!(Vec::<i64>::try_from(which).unwrap(), vec![0], "only the step away from the reference");
    let moved = worse.get(0) - x100.get(0);
    let step = moved.abs().max().double_value(&[]);
    assert!((0.25 - 1e-4..=2.0 + 1e-4).contains(&step), "step {step} (0.25-2 % of 100)");
    assert!(common::max_abs_diff(&moved, &(residual.get(0).sign() * step)) < 1e-4, "the gradient's sign");
    let err = pairs.degrade(&x100, Some(&refs100), &y, range, &mut Rng::new(6), None).unwrap_err();
    assert!(err.to_string().contains("no gradient"), "{err}");
}
