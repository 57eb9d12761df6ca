// Build script of libldctq: the root package's libtorch link flags (../build.rs), then what only the
// C library needs:
// - its soname, `libldctq.so.<LDCTQ_ABI_VERSION_MAJOR>` (the constant is read from src/lib.rs, so the
//   soname changes exactly when the ABI breaks);
// - `-z nodelete`, because libtorch and CUDA register thread-local destructors that must not outlive
//   an unloaded library (a host may dlclose us);
// - the tch version (Cargo.lock) and the libtorch version (the wheel's `version.py` or a libtorch
//   archive's `build-version` beside its lib folder) that `ldctq_version_string()` reports.
// src/lib.rs's tests check all three against the constants and against independent sources.
use std::path::Path;

#[allow(dead_code)] // its `main` is the root package's build script
#[path = "../build.rs"]
mod root;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let torch_lib = root::link_libtorch();

    let soname = format!("libldctq.so.{}", abi_constant("LDCTQ_ABI_VERSION_MAJOR"));
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-env=LDCTQ_SONAME={soname}");
    println!("cargo:rustc-env=LDCTQ_TCH_VERSION={}", locked_version("tch"));
    println!("cargo:rustc-env=LDCTQ_LIBTORCH_VERSION={}", libtorch_version(Path::new(&torch_lib)));
}

/// The value of `pub const NAME: u32 = N;` in src/lib.rs.
fn abi_constant(name: &str) -> u32 {
    let src = std::fs::read_to_string("src/lib.rs").expect("read src/lib.rs");
    let prefix = format!("pub const {name}: u32 = ");
    src.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(';')?.parse().ok())
        .unwrap_or_else(|| panic!("src/lib.rs has no line `{prefix}<number>;`"))
}

/// The version of `krate` in the workspace's Cargo.lock.
fn locked_version(krate: &str) -> String {
    let lock = std::fs::read_to_string("../Cargo.lock").expect("read ../Cargo.lock");
    let name = format!("name = \"{krate}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == name {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")?.strip_suffix('"')) {
                return v.to_string();
            }
        }
    }
    panic!("no {krate} entry in Cargo.lock");
}

/// The version of the libtorch in `lib` (e.g. "2.11.0+cu130"), or "unknown" (with a warning) when
/// neither file that records it is there.
fn libtorch_version(lib: &Path) -> String {
    let root = lib.parent().unwrap_or(lib);
    let (version_py, build_version) = (root.join("version.py"), root.join("build-version"));
    for f in [&version_py, &build_version].into_iter().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", f.display()); // a missing file would rerun every build
    }
    if let Ok(text) = std::fs::read_to_string(&version_py) {
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix("__version__ = ")) {
            return v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
        }
    }
    if let Ok(text) = std::fs::read_to_string(&build_version) {
        return text.trim().to_string();
    }
    println!(
        "cargo:warning=no version.py or build-version beside {}: libtorch version unknown",
        lib.display()
    );
    "unknown".into()
}
