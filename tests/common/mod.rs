//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Tensors of a safetensors file by name.
pub fn load_tensors(path: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// Max |a - b| over all elements, in f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    (a - b).abs().max().double_value(&[])
}

/// llm.c-style check: same shape and max |a - b| <= tol, printing the first values and the max diff.
pub fn assert_close(label: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.size(), want.size(), "{label}: shape");
    let diff = max_abs_diff(got, want);
    let first = |t: &Tensor| -> Vec<f64> {
        let flat = t.to_device(tch::Device::Cpu).to_kind(Kind::Double).flatten(0, -1);
        let n = flat.size()[0].min(5);
        Vec::<f64>::try_from(flat.narrow(0, 0, n)).unwrap()
    };
    println!("{label:<40} maxdiff {diff:.3e}");
    assert!(
        diff <= tol,
        "{label}: max abs diff {diff:.3e} > {tol:e}\n  got  {:?}\n  want {:?}",
        first(got),
        first(want)
    );
}

/// The python of the project's virtualenv (tests call it for pydicom's data files).
pub fn python() -> PathBuf {
    std::env::var_os("LDCTQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// A fresh temporary folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ldctq-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
pub mod bench;
