//! The low-dose CT simulator: noise physics, FBP accuracy, view streaks, labels, errors and the
//! `ldctq simulate` command.
mod common;

use ldctq::phantom::{self, Augmentation};
use ldctq::rng::Rng;
use ldctq::simulate::{self, quality_label, reader_label, Filter, ScanParams};
use ldctq::Error;
use std::process::Command;
use tch::{Kind, Tensor};

/// A `side x side` window at the centre of an `(H, W)` image.
fn centre(t: &Tensor, side: i64) -> Tensor {
    let (h, w) = (t.size()[0], t.size()[1]);
    t.narrow(0, (h - side) / 2, side).narrow(1, (w - side) / 2, side)
}

fn std(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).std(true).double_value(&[])
}

fn params(dose: f64, views: i64, seed: u64) -> ScanParams {
    ScanParams { dose, views, pixel_mm: 1.4, seed: Some(seed), ..ScanParams::default() }
}

#[test]
fn noise_std_scales_as_inverse_sqrt_dose() {
    let _g = tch::no_grad_guard();
    // A 18 cm water cylinder (128 px of 1.4 mm); the central 40 x 40 pixels are flat.
    let hu = phantom::cylinder(128, 0.8, 0.0);
    let reference = simulate::reconstruct_reference(&hu, &params(1.0, 720, 0)).unwrap();
    let doses = [1.0, 0.25, 0.0625];
    let sigma: Vec<f64> = doses
        .iter()
        .map(|&dose| {
            let seeds = [11, 12, 13];
            let var: f64 = seeds
                .iter()
                .map(|&s| {
                    let low = simulate::simulate(&hu, &params(dose, 720, s)).unwrap();
                    std(&centre(&(low - &reference), 40)).powi(2)
                })
                .sum();
            (var / seeds.len() as f64).sqrt()
        })
        .collect();
    println!("noise std (HU) at doses {doses:?}: {sigma:?}");
    for (i, &dose) in doses.iter().enumerate().skip(1) {
        let (got, want) = (sigma[i] / sigma[0], (1.0 / dose).sqrt());
        assert!((got / want - 1.0).abs() < 0.1, "dose {dose}: std ratio {got:.3}, expected {want:.3}");
    }
    // The log-transformed Poisson noise is unbiased in the mean to well below the noise.
    let low = simulate::simulate(&hu, &params(0.0625, 720, 5)).unwrap();
    let bias = (centre(&low, 40) - centre(&reference, 40)).mean(Kind::Double).double_value(&[]);
    assert!(bias.abs() < 3.0, "mean shift {bias:.2} HU at dose 1/16");
}

#[test]
fn full_view_fbp_matches_the_phantom() {
    let _g = tch::no_grad_guard();
    for filter in [Filter::RamLak, Filter::Hann] {
        let p = ScanParams { filter, ..params(1.0, 720, 0) };
        // A uniform cylinder: the interior is flat to a few HU.
        let hu = phantom::cylinder(128, 0.8, 40.0);
        let rec = simulate::reconstruct_reference(&hu, &p).unwrap();
        let err = (centre(&rec, 64) - 40.0).abs();
        let (mean, max) = (err.mean(Kind::Double).double_value(&[]), err.max().double_value(&[]));
        println!("{filter:?} cylinder: mean |err| {mean:.2} HU, max {max:.2} HU");
        assert!(mean < 3.0 && max < 10.0, "{filter:?} cylinder: mean {mean}, max {max}");
        // A phantom: away from edges (pixels whose 7 x 7 neighbourhood is flat to 1 HU) within 20 HU.
        let hu = phantom::phantom(3, 128);
        let rec = simulate::reconstruct_reference(&hu, &p).unwrap();
        let x = hu.view([1, 1, 128, 128]);
        let range = x.max_pool2d([7, 7], [1, 1], [3, 3], [1, 1], false)
            + (-&x).max_pool2d([7, 7], [1, 1], [3, 3], [1, 1], false);
        let flat = range.view([128, 128]).le(8.0);
        let err = (rec - &hu).abs().masked_select(&flat);
        let (n, mean) = (err.size()[0], err.mean(Kind::Double).double_value(&[]));
        let p95 = err.quantile_scalar(0.95, None, false, "linear").double_value(&[]);
        println!("{filter:?} phantom: {n} flat pixels, mean |err| {mean:.2} HU, p95 {p95:.2} HU");
        assert!(n > 2000 && mean < 20.0 && p95 < 40.0, "{filter:?} phantom: mean {mean}, p95 {p95}");
    }
}

#[test]
fn square_images_reconstruct_like_non_square_ones() {
    // Square images share sampling grids among four views (transposes and flips); an image with
    // two columns of air added takes the direct path, and sees the same rays.
    let _g = tch::no_grad_guard();
    let hu = phantom::phantom(9, 64).narrow(1, 3, 64 - 3); // asymmetric, 64 x 61
    let square = Tensor::cat(&[&hu, &Tensor::full([64, 3], -1000.0, (Kind::Float, tch::Device::Cpu))], 1);
    let wide = Tensor::cat(
        &[
            &Tensor::full([64, 1], -1000.0, (Kind::Float, tch::Device::Cpu)),
            &square,
            &Tensor::full([64, 1], -1000.0, (Kind::Float, tch::Device::Cpu)),
        ],
        1,
    );
    for views in [720, 90, 7] {
        let p = ScanParams { i0: f64::INFINITY, views, ..params(1.0, views, 0) };
        let a = simulate::simulate(&square, &p).unwrap();
        let b = simulate::simulate(&wide, &p).unwrap().narrow(1, 1, 64);
        // The same rays through f32 sampling grids built two ways: positions differ by ~u d pixels,
        // values by that times the image's gradient (up to ~1e3 HU per pixel at edges and streaks),
        // a few 1e-3 HU on any CPU; a wrong ray or flip moves pixels by tens of HU.
        common::assert_close(&format!("square vs direct, {views} views"), &a, &b, 0.05);
    }
}

#[test]
fn sparse_views_add_streaks() {
    let _g = tch::no_grad_guard();
    let hu = phantom::phantom(7, 128);
    let reference = simulate::reconstruct_reference(&hu, &params(1.0, 720, 0)).unwrap();
    let mut last = (0.0, 0.0);
    for views in [360, 180, 90, 45] {
        // Noise-free (streaks only) and at full dose (streaks and noise).
        let clean = ScanParams { i0: f64::INFINITY, ..params(1.0, views, 0) };
        let streaks = std(&(simulate::simulate(&hu, &clean).unwrap() - &reference));
        let noisy = std(&(simulate::simulate(&hu, &params(1.0, views, 1)).unwrap() - &reference));
        println!("{views} views: std of (sparse - reference) {streaks:.2} HU noise-free, {noisy:.2} HU at full dose");
        assert!(streaks > last.0 && noisy > last.1, "{views} views: {streaks}, {noisy} after {last:?}");
        last = (streaks, noisy);
    }
}

#[test]
fn simulate_pair_matches_separate_calls_and_seeds_reproduce() {
    let _g = tch::no_grad_guard();
    let hu = phantom::phantom(1, 64);
    let p = params(0.25, 180, 42);
    let (low, reference) = simulate::simulate_pair(&hu, &p).unwrap();
    // Run together or apart, the f32 reconstructions may take other kernels (batched FFTs, grid
    // samples): within twice the f32 rounding of sums of up to 180 views or 256 filter taps, through
    // projection, filter, back-projection and the log (4 layers), at the HU scale.
    let tol = |t: &Tensor| 2.0 * common::rounding_tol(Kind::Float, 256, 4, common::max_abs(t));
    let separate = simulate::reconstruct_reference(&hu, &p).unwrap();
    common::assert_close("pair reference", &reference, &separate, tol(&separate));
    let separate = simulate::simulate(&hu, &p).unwrap();
    common::assert_close("pair low dose", &low, &separate, tol(&separate));
    let other = simulate::simulate(&hu, &ScanParams { seed: Some(43), ..p.clone() }).unwrap();
    assert!(common::max_abs_diff(&low, &other) > 1.0, "another seed gives other noise");
    // Views that do not divide the full views are projected separately.
    let (low, _) = simulate::simulate_pair(&hu, &ScanParams { views: 100, ..p.clone() }).unwrap();
    let separate = simulate::simulate(&hu, &ScanParams { views: 100, ..p }).unwrap();
    common::assert_close("pair 100 views", &low, &separate, tol(&separate));
}

#[test]
fn phantoms_are_deterministic_varied_and_plausible() {
    let a = phantom::phantom(5, 96);
    assert_eq!(a.size(), [96, 96]);
    assert_eq!(common::max_abs_diff(&a, &phantom::phantom(5, 96)), 0.0);
    assert!(common::max_abs_diff(&a, &phantom::phantom(6, 96)) > 100.0);
    for seed in 0..20 {
        let p = phantom::phantom(seed, 96);
        let (lo, hi) = (p.min().double_value(&[]), p.max().double_value(&[]));
        assert!((-1000.5..-990.0).contains(&lo) && hi > 400.0 && hi <= 1100.0, "seed {seed}: {lo} .. {hi}");
        let corner = p.narrow(0, 0, 4).narrow(1, 0, 4);
        assert_eq!(corner.max().double_value(&[]), -1000.0, "seed {seed}: air in the corner");
        let soft =
            p.ge(-150.0).logical_and(&p.le(150.0)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        assert!(soft > 0.2, "seed {seed}: {soft} of the pixels are soft tissue or fat");
    }
}

#[test]
fn augmentation_flips_rotates_crops_and_resamples() {
    let hu = Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([3, 4]);
    let aug = Augmentation { flip: true, rot90: 1, crop: (1, 0, 3) };
    // Flipped: [[3,2,1,0],[7,6,5,4],[11,10,9,8]]; a counter-clockwise quarter turn: rows [0,4,8],
    // [1,5,9], [2,6,10], [3,7,11]; crop rows 1..4.
    let out = phantom::augment(&hu, &aug, 3).unwrap();
    let want = Tensor::from_slice(&[1f32, 5., 9., 2., 6., 10., 3., 7., 11.]).view([3, 3]);
    common::assert_close("augment", &out, &want, 0.0);
    assert!(phantom::augment(&hu, &Augmentation { flip: false, rot90: 0, crop: (1, 0, 3) }, 3).is_err());
    let mut rng = Rng::new(1);
    for _ in 0..50 {
        let aug = Augmentation::random(&mut rng, (40, 60), 0.6);
        let (top, left, side) = aug.crop;
        let (h, w) = if aug.rot90 % 2 == 1 { (60, 40) } else { (40, 60) };
        assert!((24..=40).contains(&side) && top + side <= h && left + side <= w, "{aug:?}");
        let big = Tensor::randn([40, 60], (Kind::Float, tch::Device::Cpu)) * 2000.0;
        let out = phantom::augment(&big, &aug, 32).unwrap();
        assert_eq!(out.size(), [32, 32]);
        assert!(out.min().double_value(&[]) >= -1024.0 && out.max().double_value(&[]) <= 3071.0);
    }
}

#[test]
fn labels_are_monotone_quantised_and_deterministic() {
    let doses = [0.02, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 1.0];
    let views = [45, 90, 120, 180, 240, 360, 500, 720];
    for (i, &d) in doses.iter().enumerate() {
        for (j, &v) in views.iter().enumerate() {
            let l = quality_label(d, v, 720);
            assert!((0.0..=4.0).contains(&l));
            if i > 0 {
                assert!(l >= quality_label(doses[i - 1], v, 720), "dose {d}, views {v}");
            }
            if j > 0 {
                assert!(l >= quality_label(d, views[j - 1], 720), "dose {d}, views {v}");
            }
        }
    }
    assert_eq!(quality_label(1.0, 720, 720), 4.0);
    assert_eq!(quality_label(0.05, 90, 720), 0.0);
    assert!((quality_label(0.25, 720, 720) - 2.8).abs() < 1e-12);
    assert!((quality_label(1.0, 180, 720) - 3.0).abs() < 1e-12);
    let mut spread = Vec::new();
    for seed in 0..500u64 {
        let clean =
            quality_label(doses[seed as usize % doses.len()], views[seed as usize % views.len()], 720);
        let l = reader_label(clean, seed);
        assert_eq!(l, reader_label(clean, seed));
        assert!((0.0..=4.0).contains(&l) && ((l * 5.0).round() - l * 5.0).abs() < 1e-9, "{l}");
        assert!(
            serde_json::to_string(&l).unwrap().len() <= 3,
            "{l} prints as one decimal, not negative zero"
        );
        spread.push(l - clean);
    }
    let sd = (spread.iter().map(|d| d * d).sum::<f64>() / spread.len() as f64).sqrt();
    assert!(sd > 0.12 && sd < 0.35, "perturbation rms {sd}");
}

#[test]
fn invalid_inputs_are_refused() {
    let hu = phantom::cylinder(32, 0.8, 0.0);
    let refused = |hu: &Tensor, p: ScanParams, what: &str| match simulate::simulate(hu, &p) {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains(what), "{msg:?} lacks {what:?}"),
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    };
    refused(&hu, params(0.0, 90, 0), "dose 0");
    refused(&hu, params(1.5, 90, 0), "dose 1.5");
    refused(&hu, params(f64::NAN, 90, 0), "dose NaN");
    refused(&hu, params(0.5, 1, 0), "views 1");
    refused(&hu, ScanParams { i0: 0.0, ..params(0.5, 90, 0) }, "i0");
    refused(&hu, ScanParams { pixel_mm: -1.0, ..params(0.5, 90, 0) }, "pixel_mm");
    let nan = hu.copy();
    let _ = nan.narrow(0, 3, 1).narrow(1, 4, 1).fill_(f64::NAN);
    refused(&nan, params(0.5, 90, 0), "NaN");
    refused(&hu.view([1, 32, 32]), params(0.5, 90, 0), "shape [1, 32, 32]");
    refused(&hu.to_kind(Kind::Int), params(0.5, 90, 0), "floating-point");
    assert!(matches!(
        simulate::reconstruct_reference(&hu.view([32 * 32]), &params(1.0, 90, 0)),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn cli_writes_an_ldctiqa_layout() {
    let out = common::temp_dir("simulate");
    let ct = phantom::bundled_ct_slices(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let mut sources = vec!["phantom".to_string()];
    sources.extend(ct.iter().take(1).map(|p| p.display().to_string()));
    let run = |out: &std::path::Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ldctq"))
            .args(["simulate", "--out"])
            .arg(out)
            .args(["--sources", &sources.join(","), "--count", "6", "--size", "64", "--seed", "3"])
            .args(["--doses", "1,0.25,0.05", "--views", "720,180"])
            .args(extra)
            .output()
            .unwrap()
    };
    let result = run(&out, &[]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("train.json")).unwrap()).unwrap();
    let names: Vec<&str> = labels.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["0000.tif", "0001.tif", "0002.tif", "0003.tif", "0004.tif", "0005.tif"]);
    let meta: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta.len(), 6);
    for (entry, (name, label)) in meta.iter().zip(&labels) {
        assert_eq!(entry["file"], name.as_str());
        assert_eq!(&entry["label"], label);
        let (dose, views) = (entry["dose"].as_f64().unwrap(), entry["views"].as_i64().unwrap());
        assert!((entry["clean_label"].as_f64().unwrap() - quality_label(dose, views, 720)).abs() < 1e-9);
        for key in ["source", "seed", "pixel_mm"] {
            assert!(entry.get(key).is_some(), "meta lacks {key}: {entry}");
        }
        for dir in ["image", "reference"] {
            let slices = ldctq::io::read_image(&out.join(dir).join(name)).unwrap();
            assert_eq!(slices.pixels.dim(), (1, 64, 64));
            assert_eq!(slices.space, Some(ldctq::Space::Unit));
            assert!(slices.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(slices.pixels.iter().any(|v| *v > 0.3), "{dir}/{name} has tissue");
        }
    }
    let sources_seen: Vec<&str> = meta.iter().map(|e| e["source"].as_str().unwrap()).collect();
    assert!(sources_seen[0].starts_with("phantom:"));
    if !ct.is_empty() {
        assert!(sources_seen[1].ends_with("#0") && meta[1]["augmentation"].is_object(), "{sources_seen:?}");
    }
    // Same seed, same files; a non-empty folder needs --overwrite; test split writes test.json.
    assert!(!run(&out, &[]).status.success());
    let again = common::temp_dir("simulate");
    assert!(run(&again, &[]).status.success());
    assert_eq!(
        std::fs::read(out.join("train.json")).unwrap(),
        std::fs::read(again.join("train.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("image/0003.tif")).unwrap(),
        std::fs::read(again.join("image/0003.tif")).unwrap()
    );
    assert!(run(&again, &["--overwrite", "--split", "test"]).status.success());
    assert!(again.join("test.json").is_file());
    let refused = common::temp_dir("simulate");
    let bad = run(&refused, &["--doses", "0"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("dose 0"));
    for dir in [out, again, refused] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn cli_localized_confines_one_degradation_to_its_mask() {
    let out = common::temp_dir("simulate-localized");
    let ct = phantom::bundled_ct_slices(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let mut sources = vec!["phantom".to_string()];
    sources.extend(ct.iter().take(1).map(|p| p.display().to_string()));
    let run = |out: &std::path::Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ldctq"))
            .args(["simulate", "--localized", "--out"])
            .arg(out)
            .args(["--sources", &sources.join(","), "--count", "6", "--size", "64", "--seed", "5"])
            .args(extra)
            .output()
            .unwrap()
    };
    let result = run(&out, &[]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let meta: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = meta.iter().map(|e| e["localized"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["noise", "streaks", "blur", "noise", "streaks", "blur"]);
    for entry in &meta {
        let local = &entry["localized"];
        let strength = match local["kind"].as_str().unwrap() {
            "noise" => "dose",
            "streaks" => "views",
            _ => "sigma",
        };
        assert!(local[strength].as_f64().is_some(), "no {strength}: {local}");
        assert_eq!((entry["dose"].as_f64(), entry["views"].as_i64()), (Some(1.0), Some(720)));
        let (centre, radii) = (&local["region"]["centre"], &local["region"]["radii"]);
        assert!(centre[0].as_f64().is_some() && centre[1].as_f64().is_some(), "{local}");
        assert!(
            radii.as_array().unwrap().iter().all(|r| (3.0..8.0).contains(&r.as_f64().unwrap())),
            "{local}"
        );
        // The label is area-weighted: 4 - body_fraction (4 - full_label).
        let (f, full) = (local["body_fraction"].as_f64().unwrap(), local["full_label"].as_f64().unwrap());
        assert!(f > 0.0 && f < 0.5 && full < 4.0, "{local}");
        assert!((entry["clean_label"].as_f64().unwrap() - (4.0 - f * (4.0 - full))).abs() < 1e-9);

        let name = entry["file"].as_str().unwrap();
        let read = |rel: &std::path::Path| ldctq::io::read_image(&out.join(rel)).unwrap().pixels;
        let mask_file = local["mask"].as_str().unwrap();
        assert_eq!(mask_file, format!("mask/{}.png", name.trim_end_matches(".tif")));
        let mask = read(mask_file.as_ref());
        let (image, full) = (
            read(&std::path::Path::new("image").join(name)),
            read(&std::path::Path::new("reference").join(name)),
        );
        assert_eq!(mask.dim(), (1, 64, 64));
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0), "{mask_file} is not binary");
        let (mut inside, mut changed) = (0, 0);
        for ((m, x), y) in mask.iter().zip(&image).zip(&full) {
            if *m == 0.0 {
                assert_eq!(x.to_bits(), y.to_bits(), "{name}: a pixel outside the mask changed");
            } else if *y > 0.0 && *y < 1.0 {
                // Inside the window (the TIFFs clamp air and bone to 0 and 1).
                inside += 1;
                changed += usize::from(x != y);
            }
        }
        assert!(
            inside >= 20 && changed * 10 >= inside * 9,
            "{name}: {changed} of {inside} mask pixels changed"
        );
    }
    // The flags of the dose grid, the families and the series do not combine with --localized.
    for extra in [&["--series"][..], &["--families", "blur"], &["--doses", "0.5"], &["--views", "180"]] {
        let refused = common::temp_dir("simulate-localized");
        let bad = run(&refused, extra);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && stderr.contains("cannot be used with"), "{extra:?}: {stderr}");
        let _ = std::fs::remove_dir_all(refused);
    }
    let _ = std::fs::remove_dir_all(out);
}
