//! Denoisers for the benchmark: the C plugin host (every failure a clear error naming the plugin),
//! built-ins equal to the C example plugins, the Rust trait, TorchScript modules and spec parsing.
//! The C plugins of `examples/plugins/` are compiled with `cc -shared -fPIC -O2` into a temporary folder.
mod common;

use common::bench::*;
use ldctq::bench::{self, BenchOptions};
use ldctq::data::Dataset;
use ldctq::denoise::{
    self, Candidate, DenoiseError, Denoiser, DenoiserInfo, DenoiserSpec, ErrorKind, SpecKind,
};
use std::process::Command;
use tch::{Device, Kind, Tensor};

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
fn builtins_match_the_c_plugins() {
    let x = random_images(3, 21, 26, 2);
    // Gaussian: two f32 implementations (torch's convolution, the plugin's loops) of 9-tap separable
    // sums (2 passes) on [0, 1] images, each within f32 rounding of the exact value. Median: a
    // selection, exact on any CPU.
    let gaussian_tol = 2.0 * common::rounding_tol(Kind::Float, 9, 2, 1.0);
    for (builtin, lib, cfg, tol) in [
        ("gaussian", "gaussian", r#"{"sigma":1.3}"#, gaussian_tol),
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
    let run = bench::run(&fixture_model(), &data, cands, &o, Device::Cpu, &mut |_| {}).unwrap();
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
    // Every built-in the table runs is a built-in to the parser too.
    for name in ldctq::denoise::builtin::names() {
        assert_eq!(p(name).kind, SpecKind::Builtin { name: name.into(), config: None });
    }
    assert!(ldctq::denoise::builtin::names().count() >= 6);
    for bad in ["", "nlm", "gaussian:{sigma}", "gaussian:[1]", "cnn.pt:{}"] {
        let e = DenoiserSpec::parse(bad).err().unwrap_or_else(|| panic!("{bad:?} should not parse"));
        assert_eq!(e.kind, ErrorKind::Spec, "{bad}: {e}");
    }
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
