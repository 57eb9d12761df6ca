//! `ldctq audit`'s pieces: the ascent keeps to its budget and raises the score; the blur and noise
//! curves measure blur and noise (flat for a criterion that ignores the image, falling / rising for
//! toy criteria that reward sharpness / smoothness); bad arguments are typed errors; the command end
//! to end on a tiny random model.
//!
//! Data: the small simulated set of the benchmark's tests (`ldctq simulate`, 96 x 96). Models: toy
//! criteria defined here, and the tiny untrained fixture `tests/fixtures/quality/a_unit_seq`.
mod common;

use common::bench::{fixture_model, random_images, sim_set};
use ldctq::audit::{self, Ascent, AuditError, AuditOptions, Event};
use ldctq::criterion::{CriterionInfo, QualityCriterion};
use ldctq::data::Dataset;
use ldctq::{Error, Space, Window};
use std::process::Command;
use tch::{Device, Kind, Tensor};

/// Toy criteria: `4 sigmoid(gain * (feature - offset))` of one image feature.
enum Toy {
    /// 2 whatever the image.
    Constant,
    /// The mean pixel value.
    Mean,
    /// The mean absolute horizontal and vertical difference (rewards sharpness and noise).
    Sharpness,
    /// Minus that (rewards smoothness).
    Smoothness,
}

impl QualityCriterion for Toy {
    fn info(&self) -> CriterionInfo {
        common::toy_info("toy")
    }

    fn score(&self, images: &Tensor) -> ldctq::Result<Tensor> {
        let n = images.size()[0];
        let x = images.to_kind(Kind::Float).view([n, 1, images.size()[2], images.size()[3]]);
        let tv = || {
            let dx = x.diff(1, -1, None::<Tensor>, None::<Tensor>).abs().mean_dim(
                &[1i64, 2, 3][..],
                false,
                Kind::Float,
            );
            let dy = x.diff(1, -2, None::<Tensor>, None::<Tensor>).abs().mean_dim(
                &[1i64, 2, 3][..],
                false,
                Kind::Float,
            );
            dx + dy
        };
        let logit = match self {
            Toy::Constant => {
                return Ok(x.zeros_like().sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float) + 2.0)
            }
            Toy::Mean => (x.mean_dim(&[1i64, 2, 3][..], false, Kind::Float) - 0.5) * 8.0,
            Toy::Sharpness => (tv() - 0.05) * 40.0,
            Toy::Smoothness => (tv() - 0.05) * -40.0,
        };
        Ok(logit.sigmoid() * 4.0)
    }
}

fn sim_batch(limit: i64) -> (Tensor, Tensor) {
    let data = Dataset::open(&sim_set()).unwrap();
    let read =
        |p: &std::path::Path| ldctq::data::load_frame(p, 0, None, Space::Unit, Window::LDCTIQA).unwrap();
    let mut low = Vec::new();
    let mut refs = Vec::new();
    for s in data.samples.iter().take(limit as usize) {
        low.push(read(&s.path));
        refs.push(read(s.reference.as_ref().unwrap()));
    }
    (Tensor::stack(&low, 0).unsqueeze(1), Tensor::stack(&refs, 0).unsqueeze(1))
}

fn no_steps() -> impl FnMut(usize, &Tensor, &[f64]) -> audit::Result<()> {
    |_, _, _| Ok(())
}

/// Every iterate stays within epsilon of the start and inside [0, 1] (the start has pixels at 0 and 1
/// and near them), and the result scores higher than the start on every image of a tiny random model.
#[test]
fn ascent_respects_the_budget_and_raises_the_score() {
    let model = fixture_model();
    let x = random_images(3, 24, 24, 11);
    let _ = x.narrow(2, 0, 4).fill_(0.0);
    let _ = x.narrow(2, 4, 4).fill_(0.995);
    let _ = x.narrow(2, 8, 2).fill_(1.0);
    let a = Ascent { epsilon: 0.03, steps: 6, step_size: 0.0125 };
    let mut seen = 0;
    let mut check = |k: usize, xk: &Tensor, scores: &[f64]| -> audit::Result<()> {
        let linf = (xk - &x).abs().max().double_value(&[]);
        assert!(linf <= 0.03 + 1e-6, "step {k}: |x - x0| = {linf}");
        assert!(xk.min().double_value(&[]) >= 0.0 && xk.max().double_value(&[]) <= 1.0, "step {k}");
        assert_eq!(scores.len(), 3);
        seen += 1;
        Ok(())
    };
    let out = audit::ascend(&model, &x, &a, &mut check).unwrap();
    assert_eq!(seen, 7, "steps 0..=6");
    let linf = (&out.images - &x).abs().max().double_value(&[]);
    assert!(linf <= 0.03 + 1e-6 && linf > 0.01, "{linf}");
    let rescored = Vec::<f64>::try_from(model.score(&out.images).unwrap().to_kind(Kind::Double)).unwrap();
    for (i, ((&again, &score), &start)) in rescored.iter().zip(&out.scores).zip(&out.start_scores).enumerate()
    {
        assert!((again - score).abs() < 1e-5, "image {i}: {again} vs {score}");
        assert!(score > start, "image {i}: {start} -> {score}");
    }
}

/// A score that grows with the mean pixel is pushed up by raising every pixel: the ascent ends exactly
/// at the upper edge of the box, `min(x0 + epsilon, 1)`.
#[test]
fn ascent_on_the_mean_ends_at_the_upper_edge_of_the_box() {
    let x = random_images(2, 16, 16, 3);
    let a = Ascent { epsilon: 0.05, steps: 4, step_size: 0.02 };
    let out = audit::ascend(&Toy::Mean, &x, &a, &mut no_steps()).unwrap();
    let want = (&x + 0.05).clamp_max(1.0);
    assert_eq!((&out.images - &want).abs().max().double_value(&[]), 0.0);
    assert!(out.scores.iter().zip(&out.start_scores).all(|(b, a)| b > a));
}

/// On the simulated references: a criterion that ignores the image has a flat blur curve and a flat
/// noise curve; one that rewards sharpness falls with blur and rises with noise; one that rewards
/// smoothness rises with blur. Sigma 0 and noise level 0 are the reference itself.
#[test]
fn blur_and_noise_curves_measure_blur_and_noise() {
    let (low, reference) = sim_batch(4);
    let sigmas = [0.0, 0.5, 1.0, 2.0, 4.0];
    let levels = [0.0, 0.5, 1.0, 2.0];
    let seeds = [1, 2, 3, 4];
    let flat = audit::blur_curve(&Toy::Constant, &reference, &sigmas).unwrap();
    assert!(flat.iter().flatten().all(|&s| s == 2.0), "{flat:?}");
    let flat = audit::noise_curve(&Toy::Constant, &low, &reference, &levels, &seeds).unwrap();
    assert!(flat.scores.iter().flatten().all(|&s| s == 2.0));
    assert!(flat.noise_hu.iter().all(|&h| h > 1.0), "low-dose noise rms in HU: {:?}", flat.noise_hu);

    let sharp = audit::blur_curve(&Toy::Sharpness, &reference, &sigmas).unwrap();
    let smooth = audit::blur_curve(&Toy::Smoothness, &reference, &sigmas).unwrap();
    let noisy = audit::noise_curve(&Toy::Sharpness, &low, &reference, &levels, &seeds).unwrap();
    let own = Vec::<f64>::try_from(Toy::Sharpness.score(&reference).unwrap().to_kind(Kind::Double)).unwrap();
    for i in 0..4 {
        assert!(sharp[i].windows(2).all(|w| w[1] < w[0]), "sharpness vs blur, image {i}: {:?}", sharp[i]);
        assert!(smooth[i].windows(2).all(|w| w[1] > w[0]), "smoothness vs blur, image {i}: {:?}", smooth[i]);
        assert!(
            noisy.scores[i].windows(2).all(|w| w[1] > w[0]),
            "sharpness vs noise {i}: {:?}",
            noisy.scores[i]
        );
        assert!((sharp[i][0] - own[i]).abs() < 1e-6 && (noisy.scores[i][0] - own[i]).abs() < 1e-6);
    }
}

/// Bad options are typed errors, from the options, from each piece and from a run; so is a set
/// without references.
#[test]
fn bad_arguments_are_typed_errors() {
    let bad = |o: AuditOptions| o.validate().unwrap_err();
    for e in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(bad(AuditOptions { epsilon: e, ..Default::default() }), AuditError::Epsilon(_)),
            "{e}"
        );
    }
    assert!(matches!(bad(AuditOptions { steps: 0, ..Default::default() }), AuditError::Steps));
    assert!(matches!(
        bad(AuditOptions { step_size: Some(0.0), ..Default::default() }),
        AuditError::StepSize(_)
    ));
    assert!(matches!(bad(AuditOptions { batch: 0, ..Default::default() }), AuditError::Batch));
    for s in [vec![], vec![1.0, 0.5], vec![1.0, 1.0], vec![-1.0], vec![60.0], vec![f64::NAN]] {
        assert!(
            matches!(bad(AuditOptions { sigmas: s.clone(), ..Default::default() }), AuditError::Sigmas(_)),
            "{s:?}"
        );
    }
    for l in [vec![], vec![2.0, 1.0], vec![-0.5], vec![f64::INFINITY]] {
        let e = bad(AuditOptions { noise_levels: l.clone(), ..Default::default() });
        assert!(matches!(e, AuditError::NoiseLevels(_)), "{l:?}");
    }
    assert!(AuditOptions::default().validate().is_ok());

    let x = random_images(1, 16, 16, 1);
    let e =
        audit::ascend(&Toy::Mean, &x, &Ascent { epsilon: 0.0, steps: 1, step_size: 0.1 }, &mut no_steps());
    assert!(matches!(e, Err(AuditError::Epsilon(_))));
    let e = audit::blur_curve(&Toy::Mean, &x, &[2.0, 1.0]);
    assert!(matches!(e, Err(AuditError::Sigmas(_))));
    let e = audit::blur_curve(&Toy::Mean, &x.view([1, 16, 16]), &[1.0]);
    assert!(matches!(e, Err(AuditError::Run(Error::InvalidInput(_)))), "(N, H, W) is not (N, 1, H, W)");

    // A set without reference/: every image lacks its reference.
    let dir = common::temp_dir("audit-norefs");
    std::fs::create_dir_all(dir.join("image")).unwrap();
    for e in std::fs::read_dir(sim_set().join("image")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("image").join(e.file_name())).unwrap();
    }
    let data = Dataset::open(&dir).unwrap();
    let e = audit::run(&Toy::Mean, &data, &AuditOptions::default(), Device::Cpu, &mut |_| {}).unwrap_err();
    assert!(matches!(e, AuditError::MissingReference { missing: 12, .. }), "{e}");
    let o = AuditOptions { steps: 0, ..Default::default() };
    let e = audit::run(&Toy::Mean, &Dataset::open(&sim_set()).unwrap(), &o, Device::Cpu, &mut |_| {});
    assert!(matches!(e, Err(AuditError::Steps)));
}

/// A run on the simulated set: every record agrees with its pieces (budget, best iterate, sigma 0 and
/// noise 0 are the reference, PSNR at step 0 is the input's), doses come from meta.json, and the
/// summary's means are the records' means.
#[test]
fn run_records_agree_with_their_pieces() {
    let data = Dataset::open(&sim_set()).unwrap();
    let opts = AuditOptions {
        epsilon: 0.02,
        steps: 3,
        sigmas: vec![0.0, 1.0, 3.0],
        noise_levels: vec![0.0, 1.0],
        batch: 3,
        limit: Some(5),
        ..Default::default()
    };
    let mut events = Vec::new();
    let run = audit::run(&Toy::Sharpness, &data, &opts, Device::Cpu, &mut |e| events.push(e)).unwrap();
    assert_eq!(run.images.len(), 5);
    assert!(matches!(events.last(), Some(Event::Progress { done: 5, total: 5 })));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Step { .. })).count(), 2 * 3, "two batches");
    for r in &run.images {
        assert!(r.linf <= 0.02 + 1e-6, "{}", r.linf);
        assert!(r.score_ascent >= r.score_input && r.score_ascent > r.score_input - 1e-9);
        assert_eq!(r.score_by_step.len(), 4);
        assert_eq!(r.score_by_step[0], r.score_input);
        assert!(r.score_by_step.iter().all(|&s| s <= r.score_ascent + 1e-9), "the best iterate is kept");
        assert!((r.psnr_by_step[0] - r.psnr_input).abs() < 1e-9);
        assert!(r.psnr_ceiling >= r.psnr_ascent && r.psnr_ceiling > r.psnr_input, "{r:?}");
        assert!((r.blur_scores[0] - r.score_reference).abs() < 1e-6);
        assert!((r.noise_scores[0] - r.score_reference).abs() < 1e-6);
        assert!(r.blur_scores[2] < r.blur_scores[0], "a sharpness score falls with blur");
        assert!([0.25, 0.1, 0.05].contains(&r.dose.unwrap()));
        assert!(r.vif_input.is_some() && r.vif_ascent.is_some(), "96 x 96 has a VIF");
    }
    let s = audit::summarize(&run);
    let mean = |f: &dyn Fn(&audit::ImageAudit) -> f64| run.images.iter().map(f).sum::<f64>() / 5.0;
    assert!((s.psnr_change.mean - mean(&|r| r.psnr_ascent - r.psnr_input)).abs() < 1e-12);
    assert!((s.score_gain.mean - mean(&|r| r.score_ascent - r.score_input)).abs() < 1e-12);
    assert!((s.blur[1].mean - mean(&|r| r.blur_scores[1])).abs() < 1e-12);
    assert_eq!(s.by_dose.iter().map(|d| d.n).sum::<usize>(), 5);
    assert!(!s.blur_rewarded() && s.noise_rewarded(), "sharpness: blur lowers it, noise raises it");
    let md = audit::summary_markdown(&run, &s, "toy", "sim");
    assert!(md.contains("| sigma | mean score") && md.contains("PSNR change"), "{md}");
    // The gradient's direction: a sharpness score points at more noise (away from the reference), a
    // smoothness score towards the reference.
    assert!((s.gradient_cosine.mean - mean(&|r| r.gradient_cosine)).abs() < 1e-12);
    assert!(run.images.iter().all(|r| (-1.0..0.0).contains(&r.gradient_cosine)), "{:?}", run.images);
    let smooth = audit::run(&Toy::Smoothness, &data, &opts, Device::Cpu, &mut |_| {}).unwrap();
    assert!(smooth.images.iter().all(|r| (0.0..=1.0).contains(&r.gradient_cosine)), "{:?}", smooth.images);
    assert!(md.contains("cosine of the gradient"), "{md}");
}

fn ldctq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ldctq")).args(args).output().unwrap()
}

/// `ldctq audit` end to end with the tiny random fixture model: reports written, `--strict` fails
/// exactly when the ascent lowered PSNR on average, and bad arguments are refused with their name.
#[test]
fn cli_audit_writes_reports_and_strict_follows_the_psnr() {
    let out = common::temp_dir("audit-cli");
    let model = common::fixture("quality/a_unit_seq");
    let (m, d, o) = (model.to_str().unwrap(), sim_set(), out.to_str().unwrap().to_string());
    let base = ["audit", "--model", m, "--data", d.to_str().unwrap(), "--out", &o, "--limit", "4"];
    let args = |extra: &[&'static str]| [&base[..], extra].concat();
    let r = ldctq(&args(&["--steps", "2", "--sigmas", "0,1,2", "--noise-levels", "0,1", "--strict"]));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("audit.json")).unwrap()).unwrap();
    assert_eq!(json["images"].as_array().unwrap().len(), 4);
    assert_eq!(json["summary"]["blur"].as_array().unwrap().len(), 3);
    let lowered = json["findings"]["ascent_lowers_psnr"].as_bool().unwrap();
    assert_eq!(lowered, json["summary"]["psnr_change"]["mean"].as_f64().unwrap() < 0.0);
    assert_eq!(r.status.success(), !lowered, "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("score vs blur sigma: 0: "), "{stdout}");
    for f in ["summary.md", "audit.json", "audit.png", "audit.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    for (bad, word) in [
        (&["--epsilon", "0"][..], "epsilon"),
        (&["--steps", "0"][..], "steps"),
        (&["--sigmas", "2,1"][..], "sigmas"),
        (&["--sigmas", "a"][..], "sigmas"),
    ] {
        let r = ldctq(&[&base[..], bad].concat());
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(word), "{bad:?}: {err}");
    }
}
