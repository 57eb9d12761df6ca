//! Benchmark runs, statistics and reports: per-anatomy windows, unlabelled sets, the trained model's
//! direction on smoothing and noise, and `ldctq bench` (reports, identity == input, identical re-runs).
//!
//! Data: a small simulated set (`ldctq simulate`, 96 x 96, doses 0.25/0.1/0.05). Model: the tiny
//! untrained fixture `tests/fixtures/quality/a_unit_seq` for the plumbing; the direction checks on the
//! *score* need a trained model and run only when `models/default` exists.
mod common;

use common::bench::*;
use ldctq::bench::{self, BenchOptions};
use ldctq::data::Dataset;
use ldctq::denoise::{self, PluginHost};
use ldctq::model::{QualityConfig, QualityModel, Widths};
use ldctq::{Placement, QualityCriterion, Scorer, Window};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Device;

/// ldct-benchmark's per-anatomy windows: with `anatomy` in meta.json and `anatomy_windows`, each image's
/// PSNR and SSIM equal those of a run in its anatomy's window (others keep `window`; VIF does not depend
/// on it); means by anatomy; an anatomy without a window is an error naming it.
/// A copy of the simulated set (`tag`) whose meta.json gives image i the anatomy `anatomy(i)` (`None`:
/// no entry), and a function that rewrites its meta.json.
fn sim_set_with_anatomies(
    tag: &str,
    anatomy: impl Fn(usize) -> Option<&'static str>,
) -> (PathBuf, Vec<serde_json::Value>, impl Fn(&[serde_json::Value])) {
    let dir = common::temp_dir(tag);
    for sub in ["image", "reference"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(sim_set().join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(sim_set().join("train.json"), dir.join("train.json")).unwrap();
    let mut meta: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(sim_set().join("meta.json")).unwrap()).unwrap();
    for (i, e) in meta.iter_mut().enumerate() {
        match anatomy(i) {
            Some(a) => e["anatomy"] = a.into(),
            None => drop(e.as_object_mut().unwrap().remove("anatomy")), // phantoms say abdomen
        }
    }
    let meta_path = dir.join("meta.json");
    let write_meta = move |meta: &[serde_json::Value]| {
        std::fs::write(&meta_path, serde_json::to_string(meta).unwrap()).unwrap()
    };
    write_meta(&meta);
    (dir, meta, write_meta)
}

/// ldct-benchmark's per-anatomy windows: with `anatomy` in meta.json and `anatomy_windows`, each image's
/// PSNR and SSIM equal those of a run in its anatomy's window (others keep `window`; VIF does not depend
/// on it); means by anatomy; an anatomy without a window is an error naming it.
#[test]
fn anatomy_windows_follow_meta_json() {
    // Case and spaces do not matter.
    let (dir, mut meta, write_meta) =
        sim_set_with_anatomies("bench-anatomy", |i| [Some("chest"), Some(" Abdomen"), None][i % 3]);
    let data = Dataset::open(&dir).unwrap();
    let specs = ["median".to_string()];
    let run_with = |data: &Dataset, o: &BenchOptions| {
        let candidates = denoise::load_all(&specs, Device::Cpu, &PluginHost::InProcess);
        bench::run(&fixture_model(), data, candidates, o, Device::Cpu, &mut |_| {})
    };
    let base = BenchOptions { batch: 5, ..opts() };
    let per = run_with(&data, &BenchOptions { anatomy_windows: true, ..base.clone() }).unwrap();
    let chest = run_with(&data, &BenchOptions { window: Window::CHEST, ..base.clone() }).unwrap();
    let abdomen = run_with(&data, &BenchOptions { window: Window::ABDOMEN, ..base.clone() }).unwrap();
    let plain = run_with(&data, &base).unwrap();
    for (i, r) in per.images.iter().enumerate() {
        let same_as = match r.anatomy.as_deref() {
            Some("chest") => &chest,
            Some("abdomen") => &abdomen,
            None => &plain,
            other => panic!("anatomy {other:?}"),
        };
        for (m, e) in per.methods.iter().zip(&same_as.methods) {
            assert_eq!(
                (m.psnr[i], m.ssim[i], m.vif[i]),
                (e.psnr[i], e.ssim[i], e.vif[i]),
                "{} image {i}",
                m.name
            );
        }
        assert_eq!(per.methods[2].vif[i], plain.methods[2].vif[i]);
    }
    assert_ne!(chest.methods[0].psnr, plain.methods[0].psnr, "the windows matter");
    let summary = bench::summarize(&per, &base);
    let rows: Vec<(&str, usize, Window)> =
        summary.by_anatomy.iter().map(|r| (r.anatomy.as_str(), r.n, r.window)).collect();
    assert_eq!(rows, [("abdomen", 4, Window::ABDOMEN), ("chest", 4, Window::CHEST)]);
    let chest_median = summary.by_anatomy[1].methods.iter().find(|m| m.method == "median").unwrap();
    let idx: Vec<usize> = (0..12).filter(|i| i % 3 == 0).collect();
    let expected = idx.iter().map(|&i| per.methods[2].psnr[i].unwrap()).sum::<f64>() / 4.0;
    assert!((chest_median.psnr.unwrap() - expected).abs() < 1e-12); // f64 mean of 4 values ~40: ulps
    assert!(bench::per_image_csv(&per).lines().nth(1).unwrap().contains(",chest,"));
    // Without anatomy_windows, the same rows in the one window.
    let rows = bench::summarize(&plain, &base).by_anatomy;
    assert!(rows.iter().all(|r| r.window == base.window) && rows.len() == 2);
    // An anatomy without a window.
    meta[2]["anatomy"] = "knee".into();
    write_meta(&meta);
    let data = Dataset::open(&dir).unwrap(); // the samples carry meta.json's anatomy
    let e = run_with(&data, &BenchOptions { anatomy_windows: true, ..base.clone() }).unwrap_err().to_string();
    assert!(e.contains("\"knee\"") && e.contains("0002.tif") && e.contains("abdomen, chest, neuro"), "{e}");
}

/// A model with anatomy prompts scores each image (input and reference) on its own anatomy's prompt,
/// exactly as the model set to that anatomy scores it (the prompt alone for images without one); with
/// `anatomy_prompts` off, on its own setting; an anatomy it has no prompt for is an error naming it. A
/// model without anatomy prompts ignores the anatomies.
#[test]
fn anatomy_prompt_models_score_each_image_on_its_anatomy() {
    let (dir, mut meta, write_meta) =
        sim_set_with_anatomies("bench-anatomy-prompts", |i| [Some("chest"), Some("Abdomen"), None][i % 3]);
    let mut config = QualityConfig::new(&common::fixture("siglip/tiny_a").display().to_string(), 16);
    config.anatomies = vec!["abdomen".into(), "chest".into()];
    let widths = Widths { film_hidden: 12, head_hidden: 10, fusion_hidden: 4 };
    let mut model = QualityModel::init(config, widths, 3, Placement::default()).unwrap();
    model.set_film_strength(3.0).unwrap();
    let data = Dataset::open(&dir).unwrap();
    let run = |m: &dyn QualityCriterion, o: &BenchOptions| {
        bench::run(m, &data, vec![], o, Device::Cpu, &mut |_| {})
    };
    let with_maps = BenchOptions { maps: true, ..opts() };
    let per = run(&model, &with_maps).unwrap();
    assert_eq!(per.anatomy_prompts, ["abdomen", "chest"]);
    let fixed = BenchOptions { anatomy_prompts: false, ..with_maps.clone() };
    let mut by_setting = Vec::new();
    for a in [None, Some("abdomen"), Some("chest")] {
        model.set_anatomy(a).unwrap();
        let r = run(&model, &fixed).unwrap();
        assert!(r.anatomy_prompts.is_empty());
        by_setting.push((a, r));
    }
    for (i, r) in per.images.iter().enumerate() {
        let (_, want) = by_setting.iter().find(|(a, _)| *a == r.anatomy.as_deref()).unwrap();
        for (m, w) in per.methods.iter().zip(&want.methods) {
            let (got, want) = (m.scores[i].unwrap(), w.scores[i].unwrap());
            assert!((got - want).abs() < 1e-5, "{} image {i} ({:?}): {got} vs {want}", m.name, r.anatomy);
        }
    }
    // So are the maps of the first images (every method and map method).
    for p in &per.maps.as_ref().unwrap().panels {
        let anatomy = per.images[p.image].anatomy.as_deref();
        let (_, want) = by_setting.iter().find(|(a, _)| *a == anatomy).unwrap();
        let panels = &want.maps.as_ref().unwrap().panels;
        let w = panels.iter().find(|q| (q.image, &q.method, q.map) == (p.image, &p.method, p.map)).unwrap();
        let diff = p.values.iter().zip(&w.values).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-5, "{} {} map of image {} ({anatomy:?}): {diff}", p.method, p.map.name(), p.image);
    }
    // The conditioning matters (f32 scores of a random model, film strength 3).
    let (chest, plain) = (&by_setting[2].1.methods[0].scores, &by_setting[0].1.methods[0].scores);
    assert!(chest.iter().zip(plain).any(|(c, p)| (c.unwrap() - p.unwrap()).abs() > 1e-4));
    let prov = bench::Provenance::new(
        &common::fixture("quality/a_unit_seq"),
        "m",
        &data,
        &[],
        &opts(),
        Placement::default(),
    );
    let report = bench::summary_markdown(&per, &bench::summarize(&per, &opts()), &prov.unwrap());
    assert!(report.contains("anatomy prompts: abdomen, chest"), "{report}");
    // Without anatomy prompts the anatomies are not used.
    let plain_model = fixture_model();
    assert!(run(&plain_model, &opts()).unwrap().anatomy_prompts.is_empty());
    // An anatomy the model has no prompt for: named, unless one setting is used for every image.
    meta[4]["anatomy"] = "head".into();
    write_meta(&meta);
    let data = Dataset::open(&dir).unwrap();
    let e = bench::run(&model, &data, vec![], &opts(), Device::Cpu, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("\"head\"") && e.contains("0004.tif") && e.contains("abdomen, chest"), "{e}");
    assert!(bench::run(&model, &data, vec![], &fixed, Device::Cpu, &mut |_| {}).is_ok());
}

/// A CSV manifest of DICOM/TIFF paths with references and no scores: enough to benchmark (the same
/// numbers as the LDCTIQA layout of the same images), while evaluation asks for scores by name.
#[test]
fn unlabelled_manifest_with_references_can_be_benchmarked() {
    let sim = sim_set();
    let dir = common::temp_dir("bench-manifest");
    let rows: String = (0..6)
        .map(|i| {
            format!(
                "{0}/image/{i:04}.tif,{0}/reference/{i:04}.tif,{1}\n",
                sim.display(),
                ["Chest", "head", ""][i % 3]
            )
        })
        .collect();
    std::fs::write(dir.join("manifest.csv"), format!("path,reference,anatomy\n{rows}")).unwrap();
    let data = Dataset::open(&dir).unwrap();
    assert!(data.samples.iter().all(|s| s.label.is_none() && s.reference.is_some()));
    let e = data.labels().unwrap_err().to_string();
    assert!(e.contains("6 image(s) have no score") && e.contains("0000.tif"), "{e}");
    let o = BenchOptions { batch: 8, ..opts() };
    let specs = ["median".to_string()];
    let run = bench::run(
        &fixture_model(),
        &data,
        denoise::load_all(&specs, Device::Cpu, &PluginHost::InProcess),
        &o,
        Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let layout = run_specs(&specs, &PluginHost::InProcess, &BenchOptions { limit: Some(6), ..o.clone() });
    for (a, b) in run.methods.iter().zip(&layout.methods) {
        assert_eq!(
            (&a.name, &a.scores, &a.psnr, &a.ssim, &a.vif),
            (&b.name, &b.scores, &b.psnr, &b.ssim, &b.vif)
        );
    }
    let summary = bench::summarize(&run, &o);
    assert!(summary.srocc_input_label.is_none() && summary.with_reference == 6);
    // The manifest's anatomy column groups the means.
    let groups: Vec<(&str, usize)> = summary.by_anatomy.iter().map(|r| (r.anatomy.as_str(), r.n)).collect();
    assert_eq!(groups, [("chest", 2), ("head", 2)]);
    assert!(bench::per_image_csv(&run).lines().nth(1).unwrap().contains(",0,,"), "an empty label cell");
    // Evaluation needs the scores.
    let out = Command::new(env!("CARGO_BIN_EXE_ldctq"))
        .args(["eval", "--model"])
        .arg(common::fixture("quality/a_unit_seq"))
        .arg("--data")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("have no score"));
    // A reference that does not exist, and a bad score, are errors naming them.
    std::fs::write(
        dir.join("manifest.csv"),
        format!("path,score,reference\n{0}/image/0000.tif,2.5,nope.tif\n", sim.display()),
    )
    .unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(e.contains("nope.tif (reference)"), "{e}");
    std::fs::write(dir.join("manifest.csv"), format!("path,score\n{0}/image/0000.tif,high\n", sim.display()))
        .unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(e.contains("line 2: bad score \"high\""), "{e}");
    std::fs::write(dir.join("manifest.csv"), "file,score\nx.tif,1\n").unwrap();
    assert!(Dataset::open(&dir).unwrap_err().to_string().contains("path column"));
}

/// Folders without labels: the LDCTIQA layout without its labels json (references kept), and a plain
/// folder of DICOM files (pydicom's CT_small.dcm, in HU): unlabelled sets the benchmark takes.
#[test]
fn unlabelled_folders_can_be_benchmarked() {
    let sim = sim_set();
    let dir = common::temp_dir("bench-unlabelled");
    for sub in ["image", "reference"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for i in 0..5 {
            let name = format!("{i:04}.tif");
            std::fs::copy(sim.join(sub).join(&name), dir.join(sub).join(&name)).unwrap();
        }
    }
    let data = Dataset::open(&dir).unwrap();
    assert_eq!(data.samples.len(), 5);
    assert!(data.samples.iter().all(|s| s.label.is_none() && s.reference.is_some()));
    let o = BenchOptions { batch: 8, ..opts() };
    let specs = ["median".to_string()];
    let candidates = denoise::load_all(&specs, Device::Cpu, &PluginHost::InProcess);
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu, &mut |_| {}).unwrap();
    let layout = run_specs(&specs, &PluginHost::InProcess, &BenchOptions { limit: Some(5), ..o.clone() });
    for (a, b) in run.methods.iter().zip(&layout.methods) {
        assert_eq!((&a.scores, &a.psnr), (&b.scores, &b.psnr), "{}", a.name);
    }

    let code = "from pydicom.data import get_testdata_file; print(get_testdata_file('CT_small.dcm'))";
    let out = Command::new(common::python()).args(["-c", code]).output().unwrap();
    let ct = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let dicoms = common::temp_dir("bench-dicoms");
    for name in ["a.dcm", "b"] {
        std::fs::copy(&ct, dicoms.join(name)).unwrap(); // DICOM files often have no extension
    }
    std::fs::write(dicoms.join("notes.txt"), "not an image").unwrap();
    let data = Dataset::open(&dicoms).unwrap();
    let names: Vec<_> = data.samples.iter().map(|s| s.path.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["a.dcm", "b"]);
    let candidates = denoise::load_all(&specs, Device::Cpu, &PluginHost::InProcess);
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu, &mut |_| {}).unwrap();
    assert!(run.methods.iter().all(|m| m.ok() && m.scores.iter().all(|s| s.is_some())));
    assert_eq!(run.methods[0].scores[0], run.methods[0].scores[1], "the same slice twice");
    let empty = common::temp_dir("bench-empty");
    let e = Dataset::open(&empty).unwrap_err().to_string();
    assert!(e.contains("no images, no labels file"), "{e}");
}

/// With the trained default model (when present): smoothing scores above the low-dose input, added
/// noise below it.
#[test]
fn trained_model_scores_smoothing_up_and_noise_down() {
    let dir = root().join("models/default");
    if !dir.join("ldctq.json").is_file() && !dir.join("ensemble.json").is_file() {
        println!("skipped: no trained model at {} (train one with `make demo`)", dir.display());
        return;
    }
    let model = Scorer::load(&dir, Placement::default()).unwrap();
    let data = Dataset::open(&sim_set()).unwrap();
    let specs = vec![
        "median".to_string(),
        "gaussian:{\"sigma\":0.8}".into(),
        spec(&plugin("add_noise"), Some(r#"{"sigma":0.05,"seed":3}"#)),
        "identity".into(),
    ];
    let o = opts();
    let run = bench::run(
        &model,
        &data,
        denoise::load_all(&specs, Device::Cpu, &PluginHost::InProcess),
        &o,
        Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let summary = bench::summarize(&run, &o);
    let by = |name: &str| summary.methods.iter().find(|m| m.name == name).unwrap();
    for m in &summary.methods {
        println!(
            "{:<10} score {:?} gain {:?}",
            m.name,
            m.score.as_ref().map(|s| s.mean),
            m.gain.as_ref().map(|g| g.mean)
        );
    }
    assert!(by("median").gain.as_ref().unwrap().mean > 0.0, "median should score above the input");
    assert!(by("gaussian").gain.as_ref().unwrap().mean > 0.0, "gaussian should score above the input");
    assert!(by("add_noise").gain.as_ref().unwrap().mean < 0.0, "added noise should score below the input");
    assert_eq!(by("identity").gain.as_ref().unwrap().mean, 0.0);
}

fn bench_cli(out: &Path, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ldctq"));
    cmd.args(["bench", "--model"])
        .arg(common::fixture("quality/a_unit_seq"))
        .arg("--data")
        .arg(sim_set())
        .args(["--denoiser", "identity", "--denoiser", "smooth=gaussian:{\"sigma\":0.8}", "--denoiser"])
        .arg(spec(&plugin("add_noise"), None))
        .arg("--denoiser")
        .arg(spec(&plugin("fail"), None))
        .args(["--bootstrap", "300", "--batch", "5", "--seed", "11", "--save-images", "--out"])
        .arg(out);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn bench_command_writes_reports_identity_equals_input_and_reruns_are_identical() {
    let (a, b) = (common::temp_dir("bench-a"), common::temp_dir("bench-b"));
    let out = bench_cli(&a, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "a failing plugin does not fail the run: {stderr}");
    assert!(stdout.contains("FAILED") && stdout.contains("libfail.so"), "the failure is reported");
    // The second run draws its plots without a font (text-less fallback).
    let out2 = bench_cli(&b, &[("LDCTQ_PLOT_FONT", "/nonexistent/font.ttf")]);
    assert!(out2.status.success(), "{}", String::from_utf8_lossy(&out2.stderr));
    for f in ["per_image.csv", "summary.csv", "summary.md", "summary.json"] {
        assert!(a.join(f).is_file(), "{f}");
    }
    for f in ["scores", "score_vs_dose", "score_vs_psnr"] {
        for dir in [&a, &b] {
            let png = std::fs::read(dir.join(format!("{f}.png"))).unwrap();
            assert!(png.starts_with(b"\x89PNG") && png.len() > 1000, "{f}.png");
            let svg = std::fs::read_to_string(dir.join(format!("{f}.svg"))).unwrap();
            assert!(svg.contains("<svg"), "{f}.svg");
        }
    }
    // Same inputs, same numbers.
    for f in ["per_image.csv", "summary.csv"] {
        assert_eq!(
            std::fs::read_to_string(a.join(f)).unwrap(),
            std::fs::read_to_string(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // Identity scores exactly like the input, image by image.
    let csv = std::fs::read_to_string(a.join("per_image.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("column {name}"));
    let (ci, cid) = (col("score_input"), col("score_identity"));
    assert!(header.contains(&"score_smooth") && header.contains(&"psnr_smooth") && header.contains(&"dose"));
    assert!(header.contains(&"vif_smooth") && header.contains(&"vif_input"));
    assert!(!header.iter().any(|h| h.contains("fail")), "failed methods have no columns");
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert_eq!(r[ci], r[cid]);
        assert!(!r[col("dose")].is_empty());
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    let run = &json["run"];
    assert_eq!(run["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(run["data_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(run["options"]["seed"], 11);
    assert!(run["libtorch_version"].as_str().unwrap().starts_with('2'), "{}", run["libtorch_version"]);
    assert_eq!(run["ldctq_version"], env!("CARGO_PKG_VERSION"));
    let timing = &json["timing"];
    assert!(timing["images_per_second"].as_f64().unwrap() > 0.0);
    let share = timing["score_share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.0);
    let methods = json["summary"]["methods"].as_array().unwrap();
    let identity = methods.iter().find(|m| m["name"] == "identity").unwrap();
    let input = methods.iter().find(|m| m["name"] == "input").unwrap();
    assert_eq!(identity["score"], input["score"], "same mean and the same (paired) bootstrap interval");
    assert_eq!(identity["gain"]["mean"], 0.0);
    assert_eq!(identity["vs_input"]["p"], 1.0);
    let fail = methods.iter().find(|m| m["name"] == "fail").unwrap();
    assert_eq!(fail["status"], "failed");
    assert!(fail["error"].as_str().unwrap().contains("simulated failure"));
    let md = std::fs::read_to_string(a.join("summary.md")).unwrap();
    assert!(md.contains("images/s") && md.contains("of the time"), "timing in the summary");
    assert!(md.contains("## Failed denoisers") && md.contains("libfail.so"));
    assert!(md.contains("## Mean score by dose") && md.contains("## Pairwise comparisons"));
    // --save-images wrote the denoised images.
    let saved = ldctq::io::read_image(&a.join("images/smooth/0000.tif")).unwrap();
    assert_eq!(saved.pixels.dim(), (1, 96, 96));
    assert!(!a.join("images/fail").exists());
}

/// `maps`: every method's mean map per map method is the mean of its images' maps (resized to the
/// model's size), the panels hold the first 4 images, and the reports draw maps_*.png and
/// mean_map_*.png.
#[test]
fn bench_maps_are_the_mean_of_the_image_maps_and_are_drawn() {
    use ldctq::criterion::{MapMethod, QualityCriterion};
    let o = BenchOptions { limit: Some(6), batch: 4, maps: true, ..opts() };
    let run = run_specs(&["median".to_string()], &PluginHost::InProcess, &o);
    let maps = run.maps.as_ref().expect("maps collected");
    let names: Vec<&str> = run.methods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(maps.means.len(), names.len() * MapMethod::ALL.len());
    let data = Dataset::open(&sim_set()).unwrap();
    let inputs: Vec<tch::Tensor> = data.samples[..6]
        .iter()
        .map(|s| {
            ldctq::data::load_frame(&s.path, s.frame, None, ldctq::Space::Unit, Window::LDCTIQA).unwrap()
        })
        .collect();
    let inputs = tch::Tensor::stack(&inputs, 0).unsqueeze(1); // (6, 1, 96, 96)
    let s = maps.size;
    for map in MapMethod::ALL {
        let mean = maps.means.iter().find(|m| m.method == "input" && m.map == map).unwrap();
        assert_eq!(mean.count, 6);
        let want = fixture_model().quality_map(&inputs, map).unwrap().unsqueeze(1);
        let want = want.to_kind(tch::Kind::Double).upsample_bilinear2d([s, s], false, None, None).mean_dim(
            0,
            false,
            tch::Kind::Double,
        );
        let got = tch::Tensor::from_slice(&mean.sum).view([1, s, s]) / 6.0;
        let diff = common::max_abs_diff(&got, &want);
        assert!(diff <= 1e-6 * (1.0 + common::max_abs(&want)), "{}: mean map differs by {diff}", map.name());
        let panels: Vec<usize> =
            maps.panels.iter().filter(|p| p.map == map && p.method == "input").map(|p| p.image).collect();
        assert_eq!(panels, [0, 1, 2, 3]);
    }
    let dir = common::temp_dir("bench-maps");
    let summary = bench::summarize(&run, &o);
    let prov = bench::Provenance::new(
        &common::fixture("quality/a_unit_seq"),
        "fixture",
        &data,
        &[],
        &o,
        Placement::default(),
    )
    .unwrap();
    let written = bench::write_reports(&dir, &run, &summary, &prov).unwrap();
    assert_eq!(written.plots_error, None);
    for f in ["maps_intrinsic.png", "maps_gradient.png", "mean_map_intrinsic.png", "mean_map_gradient.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}
