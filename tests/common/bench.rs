//! Shared by the benchmark's tests: the example C plugins compiled once, both plugin hosts, a small
//! simulated set, the tiny fixture model.
use ldctq::bench::{self, BenchOptions};
use ldctq::data::Dataset;
use ldctq::denoise::{self, PluginHost};
use ldctq::{Placement, Scorer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/plugins/<rel>.c` compiled to a shared library (once per test run).
pub fn plugin(rel: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = super::temp_dir("plugins");
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
pub fn hosts() -> [PluginHost; 2] {
    [
        PluginHost::InProcess,
        PluginHost::Isolated { worker: PathBuf::from(env!("CARGO_BIN_EXE_ldctq")), timeout: None },
    ]
}

/// A simulated set: 12 images of 96 x 96 at doses 0.25, 0.1, 0.05, with references and meta.json.
pub fn sim_set() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = super::temp_dir("bench-sim");
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

pub fn fixture_model() -> Scorer {
    Scorer::load(&super::fixture("quality/a_unit_seq"), Placement::default()).unwrap()
}

/// `specs` benchmarked with the fixture model on the simulated set.
pub fn run_specs(specs: &[String], host: &PluginHost, o: &BenchOptions) -> bench::BenchRun {
    let data = Dataset::open(&sim_set()).unwrap();
    bench::run(
        &fixture_model(),
        &data,
        denoise::load_all(specs, Device::Cpu, host),
        o,
        Device::Cpu,
        &mut |_| {},
    )
    .unwrap()
}

pub fn opts() -> BenchOptions {
    BenchOptions { bootstrap: 200, ..BenchOptions::default() }
}

pub fn spec(path: &Path, json: Option<&str>) -> String {
    match json {
        Some(j) => format!("{}:{j}", path.display()),
        None => path.display().to_string(),
    }
}

pub fn random_images(n: i64, h: i64, w: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([n, 1, h, w], (Kind::Float, Device::Cpu))
}
