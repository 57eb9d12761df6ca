// Build script of the extension: the root package's libtorch link flags (../build.rs): an rpath to
// the libtorch of the virtualenv's torch, which torch-sys built against (LIBTORCH_USE_PYTORCH=1, set
// by build_backend/ldctq_build.py), so `import ldctq` needs no LD_LIBRARY_PATH and the extension
// shares the one libtorch that `import torch` loaded.
#[allow(dead_code)] // its `main` is the root package's build script
#[path = "../build.rs"]
mod root;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    root::link_libtorch();
}
