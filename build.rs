// Link flags of the `ldctq` package and of `ldctq-ffi` (whose build.rs includes this one), for every
// binary, test, example and cdylib: an rpath to the libtorch that torch-sys built against (no
// LD_LIBRARY_PATH needed); libtorch_cuda kept as a dependency although no symbol of it is referenced
// (`--no-as-needed`), so CUDA is found when a GPU exists, also from a C host that has not loaded it.
// For libldctq.so only: the soname `libldctq.so.0`, and `-z nodelete` because libtorch and CUDA
// register thread-local destructors that must not outlive an unloaded library (a host may dlclose us).
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
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("ldctq-ffi") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libldctq.so.0");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    // Where libtorch is, for the tests and scripts/test_ffi.sh (pkg-config Libs.private, static link).
    println!("cargo:rustc-env=LDCTQ_LIBTORCH_LIB={lib}");
}
