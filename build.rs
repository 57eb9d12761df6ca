//! Link flags for every binary, test, example and cdylib of this package: an rpath to the libtorch
//! that torch-sys built against (no LD_LIBRARY_PATH needed), and libtorch_cuda kept as a dependency
//! even though no symbol of it is referenced (`--no-as-needed`), so CUDA is found when a GPU exists.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys must be a direct dependency");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-env=LDCTQ_LIBTORCH_LIB={lib}");
}
