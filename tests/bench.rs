//! The denoiser benchmark: the C plugin host (every failure a clear error naming the plugin, the others
//! going on), built-ins, TorchScript, the Rust trait, PSNR/SSIM, statistics, reports and `ldctq bench`.
//!
//! The C plugins of `examples/plugins/` are compiled here with `cc -shared -fPIC -O2` into a temporary
//! folder. Data: a small simulated set (`ldctq simulate`, 96 x 96, doses 0.25/0.1/0.05). Model: the tiny
//! untrained fixture `tests/fixtures/quality/a_unit_seq` for the plumbing (identity == input, errors,
//! reports, determinism); the direction checks on the *score* (smoothing up, noise down) need a trained
//! model and run only when `models/default` exists; the same directions are always checked on PSNR/SSIM
//! against the reference.
mod common;

use ldctq::bench::{self, BenchOptions, MethodKind};
use ldctq::data::Dataset;
use ldctq::denoise::{
    self, Candidate, DenoiseError, Denoiser, DenoiserInfo, DenoiserSpec, ErrorKind, PluginHost, SpecKind,
};
use ldctq::ensemble::Scorer;
use ldctq::siglip::Placement;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/plugins/<rel>.c` compiled to a shared library (once per test run).
fn plugin(rel: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = common::temp_dir("plugins");
        let sources = [
            "gaussian",
            "median",
            "add_noise",
            "fail",
            "bad/wrong_abi",
            "bad/missing_symbol",
            "bad/nan_output",
            "bad/wrong_size",
            "bad/crash",
        ];
        for name in sources {
            let src = root().join("examples/plugins").join(format!("{name}.c"));
            let out = dir.join(format!("lib{}.so", name.replace('/', "_")));
            let status = Command::new("cc")
                .args(["-shared", "-fPIC", "-O2", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"])
                .arg("-I")
                .arg(root().join("include"))
                .arg("-I")
                .arg(root().join("examples/plugins"))
                .arg(&src)
                .arg("-o")
                .arg(&out)
                .arg("-lm")
                .status()
                .expect("a C compiler (cc) is needed to build the example plugins");
            assert!(status.success(), "compiling {}", src.display());
        }
        dir
    });
    dir.join(format!("lib{}.so", rel.replace('/', "_")))
}

/// The two plugin hosts: this process, and a worker process per denoiser (`ldctq denoiser-worker`).
fn hosts() -> [PluginHost; 2] {
    [
        PluginHost::InProcess,
        PluginHost::Isolated { worker: PathBuf::from(env!("CARGO_BIN_EXE_ldctq")), timeout: None },
    ]
}

/// A simulated set: 12 images of 96 x 96 at doses 0.25, 0.1, 0.05, with references and meta.json.
fn sim_set() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::temp_dir("bench-sim");
        let out = Command::new(env!("CARGO_BIN_EXE_ldctq"))
            .args(["simulate", "--count", "12", "--size", "96", "--doses", "0.25,0.1,0.05", "--views", "360"])
            .args(["--seed", "5", "--i0", "2e4", "--overwrite", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "ldctq simulate: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
    .clone()
}

fn fixture_model() -> Scorer {
    Scorer::load(&common::fixture("quality/a_unit_seq"), Placement::default()).unwrap()
}

/// `specs` benchmarked with the fixture model on the simulated set.
fn run_specs(specs: &[String], host: &PluginHost, o: &BenchOptions) -> bench::BenchRun {
    let data = Dataset::open(&sim_set()).unwrap();
    bench::run(&fixture_model(), &data, denoise::load_all(specs, Device::Cpu, host), o, Device::Cpu).unwrap()
}

fn opts() -> BenchOptions {
    BenchOptions { bootstrap: 200, ..BenchOptions::default() }
}

fn spec(path: &Path, json: Option<&str>) -> String {
    match json {
        Some(j) => format!("{}:{j}", path.display()),
        None => path.display().to_string(),
    }
}

fn random_images(n: i64, h: i64, w: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([n, 1, h, w], (Kind::Float, Device::Cpu))
}

#[test]
fn header_and_plugins_are_c99_pedantic_clean() {
    let dir = common::temp_dir("header");
    let src = dir.join("main.c");
    std::fs::write(
        &src,
        "#include \"ldctq_denoiser.h\"\nint main(void) { return LDCTQ_DENOISER_ABI_MAJOR - 1; }\n",
    )
    .unwrap();
    let out = Command::new("cc")
        .args(["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(dir.join("main"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every plugin compiled with -std=c99 -pedantic -Wall -Wextra -Werror.
    assert!(plugin("gaussian").is_file());
}

#[test]
fn plugin_failures_are_clear_errors_naming_the_plugin() {
    let cases: Vec<(String, ErrorKind, &str)> = vec![
        (spec(&plugin("bad/wrong_abi"), None), ErrorKind::Abi, "ABI 2.0"),
        (spec(&plugin("bad/missing_symbol"), None), ErrorKind::MissingSymbol, "ldctq_denoiser_get_api"),
        (spec(&plugin("fail"), Some(r#"{"fail_in":"create"}"#)), ErrorKind::Create, "refusing to start"),
        (spec(&plugin("gaussian"), Some(r#"{"sigma":-1}"#)), ErrorKind::Create, "sigma must be in (0, 20]"),
        ("/no/such/libplugin.so".into(), ErrorKind::Load, "cannot open"),
    ];
    for ((text, kind, needle), host) in cases.iter().flat_map(|c| hosts().map(|h| (c, h))) {
        let c = denoise::load_all(std::slice::from_ref(text), Device::Cpu, &host).remove(0);
        let e = c.denoiser.err().unwrap_or_else(|| panic!("{text} should fail to load"));
        println!("{host:?} {text}: {e}");
        assert_eq!(e.kind, *kind, "{text}: {e}");
        let path = text.split(':').next().unwrap();
        assert!(e.to_string().contains(path), "{e} does not name {path}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    }
}

#[test]
fn failing_plugins_are_reported_and_the_others_go_on() {
    let [in_process, isolated] = hosts().map(|host| failing_plugins_run(&host));
    // The worker runs the same plugin code on the same values: the same scores and errors, bit for bit.
    for (a, b) in in_process.methods.iter().zip(&isolated.methods) {
        assert_eq!((&a.name, &a.scores, &a.error), (&b.name, &b.scores, &b.error));
    }
}

fn failing_plugins_run(host: &PluginHost) -> bench::BenchRun {
    let data = Dataset::open(&sim_set()).unwrap();
    let specs = vec![
        spec(&plugin("gaussian"), None),
        spec(&plugin("bad/wrong_abi"), None),
        spec(&plugin("fail"), None),
        spec(&plugin("fail"), Some(r#"{"after":1}"#)),
        spec(&plugin("bad/nan_output"), None),
        spec(&plugin("bad/nan_output"), Some(r#"{"inf":1}"#)),
        spec(&plugin("bad/wrong_size"), Some(r#"{"mode":"short"}"#)),
        spec(&plugin("bad/wrong_size"), Some(r#"{"mode":"long"}"#)),
        spec(&plugin("bad/missing_symbol"), None),
        spec(&plugin("median"), None),
        "identity".into(),
    ];
    let candidates = denoise::load_all(&specs, Device::Cpu, host);
    let names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        names,
        [
            "gaussian",
            "bad_wrong_abi", // a plugin that fails to load is named after its file
            "fail",
            "fail#2",
            "nan_output",
            "nan_output#2",
            "wrong_size",
            "wrong_size#2",
            "bad_missing_symbol",
            "median",
            "identity"
        ]
    );
    let o = BenchOptions { batch: 4, limit: Some(8), ..opts() };
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu).unwrap();
    let by = |name: &str| run.methods.iter().find(|m| m.name == name).unwrap();
    for ok in ["input", "reference", "gaussian", "median", "identity"] {
        let m = by(ok);
        assert!(m.ok(), "{ok}: {:?}", m.error);
        assert!(m.scores.iter().all(|s| s.is_some()), "{ok} has every score");
    }
    let expect = [
        ("bad_wrong_abi", ErrorKind::Abi, "wrong_abi", 0),
        ("fail", ErrorKind::Denoise, "simulated failure on call 1", 0),
        ("fail#2", ErrorKind::Denoise, "simulated failure on call 2", 4),
        ("nan_output", ErrorKind::NonFinite, "NaN", 0),
        ("nan_output#2", ErrorKind::NonFinite, "inf", 0),
        ("wrong_size", ErrorKind::WrongSize, "unwritten", 0),
        ("wrong_size#2", ErrorKind::WrongSize, "past the end", 0),
        ("bad_missing_symbol", ErrorKind::MissingSymbol, "missing_symbol", 0),
    ];
    for (name, kind, needle, at) in expect {
        let m = by(name);
        let e = m.error.as_ref().unwrap_or_else(|| panic!("{name} should have failed"));
        println!("{name}: {e}");
        assert_eq!(e.kind, kind, "{name}: {e}");
        assert!(e.denoiser.contains("plugin ") && e.denoiser.contains(".so"), "{name}: {e} names no plugin");
        assert!(
            e.to_string().to_lowercase().contains(&needle.to_lowercase()),
            "{name}: {e} lacks {needle:?}"
        );
        assert_eq!(m.failed_at, Some(at), "{name}");
    }
    // "fail#2" denoised the first batch before failing: its scores stop there.
    assert!(by("fail#2").scores[..4].iter().all(|s| s.is_some()));
    assert!(by("fail#2").scores[4..].iter().all(|s| s.is_none()));
    let summary = bench::summarize(&run, &o);
    let failed: Vec<&str> =
        summary.methods.iter().filter(|m| m.status == "failed").map(|m| m.name.as_str()).collect();
    assert_eq!(failed.len(), 8);
    assert!(summary.methods.iter().filter(|m| m.status == "failed").all(|m| m.score.is_none()));
    run
}

#[test]
fn the_same_plugin_loaded_twice_works() {
    let path = plugin("gaussian");
    let mut a = denoise::PluginDenoiser::load(&path, Some(r#"{"sigma":1.0}"#)).unwrap();
    let mut b = denoise::PluginDenoiser::load(&path, Some(r#"{"sigma":2.0}"#)).unwrap();
    let x = random_images(2, 20, 24, 1);
    let ya = denoise::denoise_checked(&mut a, &x).unwrap();
    let yb = denoise::denoise_checked(&mut b, &x).unwrap();
    assert!(common::max_abs_diff(&ya, &yb) > 1e-3, "two states, two configs");
    assert_eq!(a.info().sha256, b.info().sha256);
    drop(a); // destroys a's state only; the library stays loaded
    let yb2 = denoise::denoise_checked(&mut b, &x).unwrap();
    assert_eq!(common::max_abs_diff(&yb, &yb2), 0.0);
    let mut c = denoise::PluginDenoiser::load(&path, None).unwrap();
    assert!(
        common::max_abs_diff(&denoise::denoise_checked(&mut c, &x).unwrap(), &ya) == 0.0,
        "sigma 1 default"
    );
    assert_eq!(c.abi_minor(), 0);
}

#[test]
fn crashing_plugins_are_errors_in_a_worker_and_the_others_go_on() {
    let [in_process, isolated] = hosts();
    let crash = |json: &str| spec(&plugin("bad/crash"), Some(json));
    let specs = vec![
        crash(r#"{"how":"segv","after":1}"#),
        crash(r#"{"how":"abort"}"#),
        crash(r#"{"how":"exit"}"#),
        crash(r#"{"how":"segv","in":"create"}"#),
        crash(r#"{"how":"none"}"#), // prints to stdout on every call: the replies must not suffer
        spec(&plugin("gaussian"), None),
        "identity".into(),
    ];
    let candidates = denoise::load_all(&specs, Device::Cpu, &isolated);
    let names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
    let e = candidates[3].denoiser.as_ref().err().expect("a crash in create is a load error");
    assert_eq!(e.kind, ErrorKind::Crashed, "{e}");
    assert!(e.message.contains("SIGSEGV") && e.message.contains("while loading"), "{e}");
    let data = Dataset::open(&sim_set()).unwrap();
    let o = BenchOptions { batch: 4, limit: Some(8), ..opts() };
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu).unwrap();
    let by = |name: &str| run.methods.iter().find(|m| m.name == name).unwrap();
    for (i, needle, at) in [
        (0, "died of signal 11 (SIGSEGV) while denoising a batch of 4 x 96 x 96", 4),
        (1, "(SIGABRT)", 0),
        (2, "exited with status 3", 0),
        (3, "SIGSEGV", 0),
    ] {
        let m = by(&names[i]);
        let e = m.error.as_ref().unwrap_or_else(|| panic!("{} should have failed", names[i]));
        println!("{}: {e}", names[i]);
        assert_eq!(e.kind, ErrorKind::Crashed, "{e}");
        assert!(e.to_string().contains(needle) && e.to_string().contains("libbad_crash.so"), "{e}");
        assert_eq!(m.failed_at, Some(at), "{}", names[i]);
    }
    assert_eq!(by(&names[4]).scores, by("input").scores, "a copying plugin that prints scores as the input");
    // The survivors score as they do in this process.
    let reference = run_specs(&specs[5..6], &in_process, &o);
    assert_eq!(
        by("gaussian").scores,
        reference.methods.iter().find(|m| m.name == "gaussian").unwrap().scores
    );
    assert!(by("identity").ok());

    // A plugin that hangs, in create or in a batch, is killed after the timeout.
    let worker = PathBuf::from(env!("CARGO_BIN_EXE_ldctq"));
    let timed = PluginHost::Isolated { worker, timeout: Some(std::time::Duration::from_secs(4)) };
    let hangs = [crash(r#"{"how":"hang","after":1}"#), crash(r#"{"how":"hang","in":"create"}"#), crash("{}")];
    let hangs = [&hangs[..2], &[crash(r#"{"how":"none"}"#)]].concat();
    let run = run_specs(&hangs, &timed, &o);
    let failed: Vec<_> =
        run.methods.iter().filter_map(|m| Some((m.name.as_str(), m.error.as_ref()?))).collect();
    println!("{failed:?}");
    assert_eq!(failed.len(), 2);
    for (_, e) in &failed {
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("within the timeout of 4 s"), "{e}");
    }
    assert_eq!(run.methods.iter().find(|m| m.name == "crash").unwrap().failed_at, Some(4));
    assert!(run.methods.iter().find(|m| m.name == "crash#2").unwrap().ok());

    // `ldctq bench` isolates plugins by default: a segfault is a reported failure (an error exit only
    // with --strict); with --in-process-plugins it takes the process down.
    let cli = |extra: &[&str]| {
        let out = common::temp_dir("bench-crash");
        Command::new(env!("CARGO_BIN_EXE_ldctq"))
            .args(["bench", "--model"])
            .arg(common::fixture("quality/a_unit_seq"))
            .arg("--data")
            .arg(sim_set())
            .arg("--denoiser")
            .arg(&specs[0])
            .args(["--denoiser", "identity", "--limit", "8", "--batch", "4", "--bootstrap", "50", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = cli(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("FAILED") && stdout.contains("SIGSEGV"), "{stdout}");
    assert!(!stdout.contains("crash plugin:"), "the plugin's prints go to stderr: {stdout}");
    assert!(!cli(&["--strict"]).status.success());
    let bad = cli(&["--plugin-timeout", "0"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--plugin-timeout 0"), "{bad:?}");
    let out = cli(&["--in-process-plugins"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(11), "in process, the segfault is ldctq's: {:?}", out.status);
}

/// The worker's protocol without a process: a request answered like the in-process call, a failing call
/// answered with its error, EOF a clean end, an absurd request size an I/O error.
#[test]
fn denoiser_worker_protocol() {
    use denoise::isolated::serve;
    let request = |dims: [u64; 3], values: &[f32]| {
        let mut bytes: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes
    };
    let x: Vec<f32> = (0..2 * 5 * 7).map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5).collect();
    let path = plugin("gaussian");
    let mut input = request([2, 5, 7], &x);
    input.extend(request([1, 2, 2], &[0.5, f32::NAN, 0.5, 0.5]));
    let mut output = Vec::new();
    serve(&spec(&path, Some(r#"{"sigma":1.3}"#)), Device::Cpu, &mut input.as_slice(), &mut output).unwrap();
    // Hello: tag 0, u32 length, the info as JSON.
    assert_eq!(output[0], 0);
    let len = u32::from_le_bytes(output[1..5].try_into().unwrap()) as usize;
    let info: DenoiserInfo = serde_json::from_slice(&output[5..5 + len]).unwrap();
    assert_eq!((info.name.as_str(), info.config.as_deref()), ("gaussian", Some(r#"{"sigma":1.3}"#)));
    // First reply: tag 0 and the values of the in-process call, bit for bit.
    let rest = &output[5 + len..];
    assert_eq!(rest[0], 0);
    let got: Vec<f32> =
        rest[1..1 + 4 * x.len()].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let mut direct = denoise::PluginDenoiser::load(&path, Some(r#"{"sigma":1.3}"#)).unwrap();
    assert_eq!(got, direct.denoise_raw(&x, [2, 5, 7]).unwrap());
    // The gaussian plugin passes NaN through: the worker's checks (those of the in-process host) make
    // the second reply an error; the stream then ends cleanly at EOF.
    let second = &rest[1 + 4 * x.len()..];
    let len = u32::from_le_bytes(second[1..5].try_into().unwrap()) as usize;
    let e: DenoiseError = serde_json::from_slice(&second[5..5 + len]).unwrap();
    assert_eq!((second[0], e.kind, second.len()), (1, ErrorKind::NonFinite, 5 + len));
    // A request of 2^40 x 2^40 values is refused before any allocation.
    let mut out = Vec::new();
    let huge = request([1 << 40, 1 << 40, 1], &[]);
    let e = serve(&spec(&path, None), Device::Cpu, &mut huge.as_slice(), &mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    // A plugin that fails to load: the hello is its error.
    let mut out = Vec::new();
    serve(&spec(&plugin("bad/wrong_abi"), None), Device::Cpu, &mut [].as_slice(), &mut out).unwrap();
    let len = u32::from_le_bytes(out[1..5].try_into().unwrap()) as usize;
    let e: DenoiseError = serde_json::from_slice(&out[5..5 + len]).unwrap();
    assert_eq!((out[0], e.kind), (1, ErrorKind::Abi));
}

/// ldct-benchmark's per-anatomy windows: with `anatomy` in meta.json and `anatomy_windows`, each image's
/// PSNR and SSIM equal those of a run in its anatomy's window (others keep `window`; VIF does not depend
/// on it); means by anatomy; an anatomy without a window is an error naming it.
#[test]
fn anatomy_windows_follow_meta_json() {
    let dir = common::temp_dir("bench-anatomy");
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
        match i % 3 {
            0 => e["anatomy"] = "chest".into(),
            1 => e["anatomy"] = " Abdomen".into(), // case and spaces do not matter
            _ => {}
        }
    }
    let write_meta = |meta: &[serde_json::Value]| {
        std::fs::write(dir.join("meta.json"), serde_json::to_string(meta).unwrap()).unwrap()
    };
    write_meta(&meta);
    let data = Dataset::open(&dir).unwrap();
    let specs = ["median".to_string()];
    let run_with = |o: &BenchOptions| {
        let candidates = denoise::load_all(&specs, Device::Cpu, &PluginHost::InProcess);
        bench::run(&fixture_model(), &data, candidates, o, Device::Cpu)
    };
    let base = BenchOptions { batch: 5, ..opts() };
    let per = run_with(&BenchOptions { anatomy_windows: true, ..base.clone() }).unwrap();
    let chest = run_with(&BenchOptions { window: (-600.0, 1500.0), ..base.clone() }).unwrap();
    let abdomen = run_with(&BenchOptions { window: (50.0, 400.0), ..base.clone() }).unwrap();
    let plain = run_with(&base).unwrap();
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
    let rows: Vec<(&str, usize, (f64, f64))> =
        summary.by_anatomy.iter().map(|r| (r.anatomy.as_str(), r.n, r.window)).collect();
    assert_eq!(rows, [("abdomen", 4, (50.0, 400.0)), ("chest", 4, (-600.0, 1500.0))]);
    let chest_median = summary.by_anatomy[1].methods.iter().find(|m| m.method == "median").unwrap();
    let idx: Vec<usize> = (0..12).filter(|i| i % 3 == 0).collect();
    let expected = idx.iter().map(|&i| per.methods[2].psnr[i].unwrap()).sum::<f64>() / 4.0;
    assert!((chest_median.psnr.unwrap() - expected).abs() < 1e-12);
    assert!(bench::per_image_csv(&per).lines().nth(1).unwrap().contains(",chest,"));
    // Without anatomy_windows, the same rows in the one window.
    let rows = bench::summarize(&plain, &base).by_anatomy;
    assert!(rows.iter().all(|r| r.window == base.window) && rows.len() == 2);
    // An anatomy without a window.
    meta[2]["anatomy"] = "knee".into();
    write_meta(&meta);
    let e = run_with(&BenchOptions { anatomy_windows: true, ..base.clone() }).unwrap_err().to_string();
    assert!(e.contains("\"knee\"") && e.contains("0002.tif") && e.contains("abdomen, chest, neuro"), "{e}");
}

/// A CSV manifest of DICOM/TIFF paths with references and no scores: enough to benchmark (the same
/// numbers as the LDCTIQA layout of the same images), while evaluation asks for scores by name.
#[test]
fn unlabelled_manifest_with_references_can_be_benchmarked() {
    let sim = sim_set();
    let dir = common::temp_dir("bench-manifest");
    let rows: String =
        (0..6).map(|i| format!("{0}/image/{i:04}.tif,{0}/reference/{i:04}.tif\n", sim.display())).collect();
    std::fs::write(dir.join("manifest.csv"), format!("path,reference\n{rows}")).unwrap();
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
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu).unwrap();
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
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu).unwrap();
    assert!(run.methods.iter().all(|m| m.ok() && m.scores.iter().all(|s| s.is_some())));
    assert_eq!(run.methods[0].scores[0], run.methods[0].scores[1], "the same slice twice");
    let empty = common::temp_dir("bench-empty");
    let e = Dataset::open(&empty).unwrap_err().to_string();
    assert!(e.contains("no images, no labels file"), "{e}");
}

#[test]
fn builtins_match_the_c_plugins() {
    let x = random_images(3, 21, 26, 2);
    for (builtin, lib, cfg, tol) in [
        ("gaussian", "gaussian", r#"{"sigma":1.3}"#, 1e-5),
        ("median", "median", r#"{"size":3}"#, 0.0),
        ("median", "median", r#"{"size":5}"#, 0.0),
    ] {
        let mut ours = denoise::builtin::from_name(builtin, Some(cfg)).unwrap();
        let mut theirs = denoise::PluginDenoiser::load(&plugin(lib), Some(cfg)).unwrap();
        let a = denoise::denoise_checked(ours.as_mut(), &x).unwrap();
        let b = denoise::denoise_checked(&mut theirs, &x).unwrap();
        let diff = common::max_abs_diff(&a, &b);
        println!("{builtin} {cfg}: max diff {diff:.2e}");
        assert!(diff <= tol, "{builtin} {cfg}: builtin and plugin differ by {diff}");
    }
    let mut id = denoise::builtin::from_name("identity", None).unwrap();
    assert_eq!(common::max_abs_diff(&denoise::denoise_checked(id.as_mut(), &x).unwrap(), &x), 0.0);
    let e = denoise::builtin::from_name("median", Some(r#"{"size":4}"#)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Config);
    let e = denoise::builtin::from_name("gaussian", Some(r#"{"sigmaa":1}"#)).err().unwrap();
    assert!(e.message.contains("unknown key"), "{e}");
}

/// Rust denoisers that break the contract in every way the host checks.
struct Broken(&'static str);

impl Denoiser for Broken {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo::rust(self.0)
    }
    fn denoise(&mut self, x: &Tensor) -> Result<Tensor, DenoiseError> {
        match self.0 {
            "shape" => Ok(x.narrow(2, 0, x.size()[2] - 1)),
            "nan" => Ok(x / 0.0 * 0.0),
            "error" => Err(DenoiseError::new("rust error", ErrorKind::Denoise, "out of ideas")),
            "panic" => panic!("index out of bounds in my filter"),
            "int" => Ok(x.to_kind(Kind::Int64)),
            _ => Ok(x.to_kind(Kind::Double) * 0.5), // fine: converted to f32
        }
    }
}

#[test]
fn rust_denoisers_are_checked_like_plugins() {
    let x = random_images(2, 16, 16, 3);
    for (what, kind) in [
        ("shape", Some(ErrorKind::WrongSize)),
        ("nan", Some(ErrorKind::NonFinite)),
        ("error", Some(ErrorKind::Denoise)),
        ("panic", Some(ErrorKind::Denoise)),
        ("int", Some(ErrorKind::WrongSize)),
        ("ok", None),
    ] {
        let mut d = Broken(what);
        match (denoise::denoise_checked(&mut d, &x), kind) {
            (Ok(y), None) => assert_eq!(y.kind(), Kind::Float),
            (Err(e), Some(k)) => {
                println!("{what}: {e}");
                assert_eq!(e.kind, k, "{what}: {e}");
            }
            (r, k) => panic!("{what}: got {:?}, expected {k:?}", r.map(|t| t.size())),
        }
    }
    // In a benchmark: the panicking one is dropped, the fine one goes on.
    let data = Dataset::open(&sim_set()).unwrap();
    let mut cands = vec![Candidate::new(Box::new(Broken("panic"))), Candidate::new(Box::new(Broken("ok")))];
    denoise::unique_names(&mut cands);
    let o = BenchOptions { limit: Some(3), ..opts() };
    let run = bench::run(&fixture_model(), &data, cands, &o, Device::Cpu).unwrap();
    assert!(run
        .methods
        .iter()
        .find(|m| m.name == "panic")
        .unwrap()
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("panicked"));
    assert!(run.methods.iter().find(|m| m.name == "ok").unwrap().ok());
}

#[test]
fn spec_parsing() {
    let p = |s: &str| DenoiserSpec::parse(s).unwrap();
    assert_eq!(p("identity").kind, SpecKind::Builtin { name: "identity".into(), config: None });
    assert_eq!(
        p(r#"gaussian:{"sigma":2}"#).kind,
        SpecKind::Builtin { name: "gaussian".into(), config: Some(r#"{"sigma":2}"#.into()) }
    );
    let s = p(r#"smooth=./libg.so:{"sigma": 1.5}"#);
    assert_eq!(s.label.as_deref(), Some("smooth"));
    assert_eq!(
        s.kind,
        SpecKind::Plugin { path: "./libg.so".into(), config: Some(r#"{"sigma": 1.5}"#.into()) }
    );
    assert_eq!(p("libg.so").default_name(), "g");
    assert_eq!(p("models/cnn.pt").kind, SpecKind::TorchScript { path: "models/cnn.pt".into() });
    for bad in ["", "bilateral", "gaussian:{sigma}", "gaussian:[1]", "cnn.pt:{}"] {
        let e = DenoiserSpec::parse(bad).err().unwrap_or_else(|| panic!("{bad:?} should not parse"));
        assert_eq!(e.kind, ErrorKind::Spec, "{bad}: {e}");
    }
}

/// VIF against torchmetrics (`tests/fixtures/vif/gen_vif_fixtures.py`): noise, blur, identity, negative
/// gain, flat patches, a flat image, at 48 x 64 and the minimal 41 x 41; smaller images have none.
#[test]
fn vif_matches_torchmetrics() {
    let cases = Tensor::read_safetensors(common::fixture("vif/vif_cases.safetensors")).unwrap();
    let get = |name: &str| cases.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    for group in ["a", "b"] {
        let (dist, reference) = (get(&format!("{group}_dist")), get(&format!("{group}_ref")));
        let ours = Vec::<f64>::try_from(bench::vif(&dist, &reference, 2.0).unwrap()).unwrap();
        let theirs = Vec::<f64>::try_from(get(&format!("{group}_vif"))).unwrap();
        println!("{group}: ours {ours:?}\n   torchmetrics {theirs:?}");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-9, "{group}: {a} vs {b}");
        }
    }
    let identical = get("a_ref");
    let one = bench::vif(&identical, &identical, 2.0).unwrap().double_value(&[0]);
    assert!((one - 1.0).abs() < 1e-9, "{one}");
    assert!(bench::vif(&identical.narrow(2, 0, 40), &identical.narrow(2, 0, 40), 2.0).is_none());
}

#[test]
fn psnr_and_ssim_known_values() {
    let x = random_images(2, 32, 40, 4);
    let s = Vec::<f64>::try_from(bench::ssim(&x, &x)).unwrap();
    assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-12), "{s:?}");
    let p = Vec::<f64>::try_from(bench::psnr(&x, &(&x + 0.01).clamp(-10.0, 10.0))).unwrap();
    assert!(p.iter().all(|v| (v - 40.0).abs() < 1e-3), "mse 1e-4 -> 40 dB: {p:?}");
    // Constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    let (a, b) = (0.3f64, 0.6f64);
    let ia = Tensor::full([1, 1, 16, 16], a, (Kind::Float, Device::Cpu));
    let ib = Tensor::full([1, 1, 16, 16], b, (Kind::Float, Device::Cpu));
    let want = (2.0 * a * b + 1e-4) / (a * a + b * b + 1e-4);
    let got = bench::ssim(&ia, &ib).double_value(&[0]);
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
    let got = bench::ssim(&u, &v).double_value(&[0]);
    println!("ssim loop {want:.10} conv {got:.10}");
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

#[test]
fn torchscript_denoisers_run_and_wrong_shapes_are_errors() {
    let python = common::python();
    if !python.exists() {
        println!("skipped: no python at {} (make setup)", python.display());
        return;
    }
    let dir = common::temp_dir("torchscript");
    let (scripted, traced, bad) = (dir.join("cnn.pt"), dir.join("cnn_traced.pt"), dir.join("crop.pt"));
    for (out, extra) in [(&scripted, None), (&traced, Some("--trace"))] {
        let mut cmd = Command::new(&python);
        cmd.arg(root().join("scripts/export_torchscript_denoiser.py"))
            .args(["--steps", "20", "--size", "32", "--batch", "4", "--out"])
            .arg(out);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "export: {}", String::from_utf8_lossy(&o.stderr));
    }
    let code = format!(
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return x[:, :, 1:, :]\n\
         torch.jit.script(M()).save({:?})\n",
        bad.display().to_string()
    );
    let script = dir.join("crop.py"); // TorchScript needs the source in a file
    std::fs::write(&script, code).unwrap();
    let o = Command::new(&python).arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let x = random_images(2, 40, 36, 7);
    let mut a = denoise::TorchScriptDenoiser::load(&scripted, Device::Cpu).unwrap();
    let mut b = denoise::TorchScriptDenoiser::load(&traced, Device::Cpu).unwrap();
    for d in [&mut a as &mut dyn Denoiser, &mut b] {
        let y = denoise::denoise_checked(d, &x).unwrap();
        assert_eq!(y.size(), x.size());
        assert_eq!(d.info().kind, "torchscript");
        assert_eq!(d.info().sha256.unwrap().len(), 64);
    }
    let mut c = denoise::TorchScriptDenoiser::load(&bad, Device::Cpu).unwrap();
    let e = denoise::denoise_checked(&mut c, &x).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongSize);
    assert!(e.to_string().contains("crop.pt"), "{e}");
    let e = denoise::TorchScriptDenoiser::load(&dir.join("missing.pt"), Device::Cpu).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Load);
    std::fs::write(dir.join("junk.pt"), b"not a module").unwrap();
    let e = denoise::TorchScriptDenoiser::load(&dir.join("junk.pt"), Device::Cpu).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Load);
    assert!(e.to_string().contains("junk.pt"), "{e}");

    // In a benchmark, in this process and in worker processes: the same scores and errors.
    let specs = vec![spec(&scripted, None), spec(&bad, None), spec(&dir.join("junk.pt"), None)];
    let o = BenchOptions { limit: Some(4), ..opts() };
    let [here, isolated] = hosts().map(|host| run_specs(&specs, &host, &o));
    for run in [&here, &isolated] {
        assert!(run.methods.iter().find(|m| m.name == "cnn").unwrap().ok());
        let error = |name: &str| run.methods.iter().find(|m| m.name == name).unwrap().error.clone().unwrap();
        assert_eq!(error("crop").kind, ErrorKind::WrongSize);
        assert_eq!(error("junk").kind, ErrorKind::Load);
        assert!(!error("junk").message.contains("frame #"), "libtorch's backtrace is cut");
    }
    for (a, b) in here.methods.iter().zip(&isolated.methods) {
        assert_eq!((&a.name, &a.scores, &a.error), (&b.name, &b.scores, &b.error));
    }
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
