//! Link flags of libldctq.so (and of this package's tests): the soname `libldctq.so.0`, an rpath to
//! the libtorch that torch-sys built against, libtorch_cuda kept as a dependency although no symbol
//! of it is referenced (`--no-as-needed`, so CUDA works from a C host that has not loaded it), and
//! `-z nodelete` because libtorch and CUDA register thread-local destructors that must not outlive
//! an unloaded library (a host may dlclose us).
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
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libldctq.so.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // For scripts/test_ffi.sh and the tests: where libtorch is (pkg-config Libs.private, static link).
    println!("cargo:rustc-env=LDCTQ_LIBTORCH_LIB={lib}");
}
