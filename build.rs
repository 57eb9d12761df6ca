// Link flags of the `ldctq` package and of `ldctq-ffi` (whose build.rs calls `link_libtorch` from
// this file), for every binary, test, example and cdylib: an rpath to the libtorch that torch-sys
// built against (no LD_LIBRARY_PATH needed); libtorch_cuda kept as a dependency although no symbol of
// it is referenced (`--no-as-needed`), so CUDA is found when a GPU exists, also from a C host that
// has not loaded it.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    link_libtorch();
}

/// Prints the link flags above and `LDCTQ_LIBTORCH_LIB` (the libtorch folder, for the benchmark's
/// provenance and the tests), and returns that folder.
pub fn link_libtorch() -> String {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys must be a direct dependency");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-env=LDCTQ_LIBTORCH_LIB={lib}");
    lib
}
