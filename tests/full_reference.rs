//! Full-reference metrics (PSNR, SSIM, VIF as ldct-benchmark computes them): parity with torchmetrics on
//! committed fixtures, known values, and their direction on smoothed and noisier denoiser outputs.
mod common;

use common::bench::*;
use ldctq::bench::{self, MethodKind};
use ldctq::denoise::PluginHost;
use tch::{Device, Kind, Tensor};

/// VIF against torchmetrics (`tests/fixtures/vif/gen_vif_fixtures.py`): noise, blur, identity, negative
/// gain, flat patches, a flat image, at 48 x 64 and the minimal 41 x 41; smaller images have none.
#[test]
fn vif_matches_torchmetrics() {
    let cases = Tensor::read_safetensors(common::fixture("vif/vif_cases.safetensors")).unwrap();
    let get = |name: &str| cases.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    for group in ["a", "b"] {
        let (dist, reference) = (get(&format!("{group}_dist")), get(&format!("{group}_ref")));
        let ours = Vec::<f64>::try_from(ldctq::metrics::vif(&dist, &reference, 2.0).unwrap()).unwrap();
        let theirs = Vec::<f64>::try_from(get(&format!("{group}_vif"))).unwrap();
        println!("{group}: ours {ours:?}\n   torchmetrics {theirs:?}");
        // f64 on both sides, but local variances E[x^2] - E[x]^2 of HU + 1024 values (~1e3) cancel
        // ~1e6 down to ~1: rounding ~1e-16 * 1e6 * sqrt(81 window terms) ~ 1e-9 at worst, measured
        // <= 2.1e-12 under every forced kernel choice (docs/testing.md).
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-9, "{group}: {a} vs {b}");
        }
    }
    let identical = get("a_ref");
    let one = ldctq::metrics::vif(&identical, &identical, 2.0).unwrap().double_value(&[0]);
    assert!((one - 1.0).abs() < 1e-9, "{one}"); // as above: the same cancellation
    assert!(ldctq::metrics::vif(&identical.narrow(2, 0, 40), &identical.narrow(2, 0, 40), 2.0).is_none());
}

#[test]
fn psnr_and_ssim_known_values() {
    let x = random_images(2, 32, 40, 4);
    let s = Vec::<f64>::try_from(ldctq::metrics::ssim(&x, &x)).unwrap();
    assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-12), "{s:?}"); // f64 ratio of equal terms
    let p = Vec::<f64>::try_from(ldctq::metrics::psnr(&x, &(&x + 0.01).clamp(-10.0, 10.0))).unwrap();
    // x + 0.01 rounds in f32 (|x| <= 1: <= 6e-8, i.e. 1.2e-5 of the mse): <= 5e-5 dB, IEEE on any CPU.
    assert!(p.iter().all(|v| (v - 40.0).abs() < 1e-3), "mse 1e-4 -> 40 dB: {p:?}");
    // Constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    let (a, b) = (0.3f64, 0.6f64);
    let ia = Tensor::full([1, 1, 16, 16], a, (Kind::Float, Device::Cpu));
    let ib = Tensor::full([1, 1, 16, 16], b, (Kind::Float, Device::Cpu));
    let want = (2.0 * a * b + 1e-4) / (a * a + b * b + 1e-4);
    let got = ldctq::metrics::ssim(&ia, &ib).double_value(&[0]);
    // a and b are f32 images (0.3 and 0.6 round by ~1e-8): SSIM moves by ~1e-8; f64 otherwise.
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    // Against a direct (loop) evaluation of the Gaussian-windowed SSIM over the valid region.
    let (h, w) = (19usize, 23usize);
    let u = random_images(1, h as i64, w as i64, 5);
    let v = (&u * 0.7 + random_images(1, h as i64, w as i64, 6) * 0.3).to_kind(Kind::Float);
    let uu = Vec::<f64>::try_from(u.to_kind(Kind::Double).view(-1)).unwrap();
    let vv = Vec::<f64>::try_from(v.to_kind(Kind::Double).view(-1)).unwrap();
    let g: Vec<f64> = (-5..=5).map(|i: i32| (-(i * i) as f64 / (2.0 * 1.5 * 1.5)).exp()).collect();
    let gs: f64 = g.iter().sum::<f64>().powi(2);
    let (mut total, mut count) = (0.0, 0);
    for y in 5..h - 5 {
        for x in 5..w - 5 {
            let (mut mu, mut mv, mut uu2, mut vv2, mut uv) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..11 {
                for dx in 0..11 {
                    let k = g[dy] * g[dx] / gs;
                    let i = (y + dy - 5) * w + (x + dx - 5);
                    mu += k * uu[i];
                    mv += k * vv[i];
                    uu2 += k * uu[i] * uu[i];
                    vv2 += k * vv[i] * vv[i];
                    uv += k * uu[i] * vv[i];
                }
            }
            let (c1, c2) = (1e-4, 9e-4);
            total += ((2.0 * mu * mv + c1) * (2.0 * (uv - mu * mv) + c2))
                / ((mu * mu + mv * mv + c1) * (uu2 - mu * mu + vv2 - mv * mv + c2));
            count += 1;
        }
    }
    let want = total / count as f64;
    let got = ldctq::metrics::ssim(&u, &v).double_value(&[0]);
    println!("ssim loop {want:.10} conv {got:.10}");
    // f64 windowed sums of 121 terms in other orders; the variance terms cancel ~10x: ~1e-14.
    assert!((got - want).abs() < 1e-9);
}

/// PSNR and SSIM against the full-dose reference rise for smoothing and fall for added noise: checks
/// the benchmark's direction without a trained model.
#[test]
fn smoothing_raises_psnr_and_ssim_and_noise_lowers_them() {
    let specs = vec![
        "gaussian:{\"sigma\":0.8}".to_string(),
        "median".into(),
        spec(&plugin("gaussian"), Some(r#"{"sigma":0.8}"#)),
        spec(&plugin("add_noise"), Some(r#"{"sigma":0.05,"seed":3}"#)),
    ];
    let o = opts();
    let run = run_specs(&specs, &PluginHost::InProcess, &o);
    let summary = bench::summarize(&run, &o);
    assert_eq!(summary.with_reference, 12);
    let by = |name: &str| summary.methods.iter().find(|m| m.name == name).unwrap();
    for m in &summary.methods {
        println!(
            "{:<12} score {:.3} psnr {:?} ssim {:?} vif {:?} psnr_gain {:?} ssim_gain {:?} vif_gain {:?}",
            m.name,
            m.score.as_ref().map_or(f64::NAN, |s| s.mean),
            m.psnr.as_ref().map(|e| e.mean),
            m.ssim.as_ref().map(|e| e.mean),
            m.vif.as_ref().map(|e| e.mean),
            m.psnr_gain,
            m.ssim_gain,
            m.vif_gain
        );
    }
    for smooth in ["gaussian", "median", "gaussian#2"] {
        assert!(by(smooth).psnr_gain.unwrap() > 0.5, "{smooth}: PSNR should rise");
        assert!(by(smooth).ssim_gain.unwrap() > 0.02, "{smooth}: SSIM should rise");
    }
    assert!(by("add_noise").psnr_gain.unwrap() < -2.0, "noise: PSNR should fall");
    assert!(by("add_noise").ssim_gain.unwrap() < -0.1, "noise: SSIM should fall");
    // VIF (on HU + 1024, every image of 96 x 96 has one): in (0, 1] here, and lowered by added noise.
    assert!(run
        .methods
        .iter()
        .filter(|m| m.kind != MethodKind::Reference)
        .all(|m| m.vif.iter().all(|v| v.is_some_and(|v| v > 0.0 && v <= 1.0))));
    assert!(by("add_noise").vif_gain.unwrap() < -0.05, "noise: VIF should fall");
    assert!(summary.pooled_srocc_score_vif.is_some());
    // Per image too: smoothing raises PSNR on most images, added noise lowers it on every one.
    let input = &run.methods[0];
    let rises = |name: &str| {
        let m = run.methods.iter().find(|m| m.name == name).unwrap();
        m.psnr.iter().zip(&input.psnr).filter(|(a, b)| a.unwrap() > b.unwrap()).count()
    };
    println!("PSNR rises on {} (median), {} (add_noise) of 12 images", rises("median"), rises("add_noise"));
    assert!(rises("median") >= 9);
    assert_eq!(rises("add_noise"), 0);
    assert_eq!(by("reference").kind, MethodKind::Reference);
    assert!(by("reference").psnr.is_none());
    assert!(summary.pooled_srocc_score_psnr.is_some());
}
