//! The committed `include/ldctq.h` is exactly what the pinned cbindgen makes of this crate, and it
//! (with `dlpack.h` and `ldctq.hpp`) compiles alone as strict C99 and C++17.
//! `LDCTQ_BLESS=1 cargo test -p ldctq-ffi --test header` rewrites the header instead of failing.
use std::path::{Path, PathBuf};
use std::process::Command;

fn ffi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn include_dir() -> PathBuf {
    ffi_dir().join("../include")
}

#[test]
fn committed_header_matches_cbindgen() {
    let config = cbindgen::Config::from_file(ffi_dir().join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::generate_with_config(ffi_dir(), config).expect("cbindgen generates");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8 header");
    let path = include_dir().join("ldctq.h");
    if std::env::var_os("LDCTQ_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/ldctq.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        panic!(
            "include/ldctq.h is out of date (first differing line: {:?}); regenerate it with \
             LDCTQ_BLESS=1 cargo test -p ldctq-ffi --test header",
            first.map(|i| i + 1)
        );
    }
}

/// Compiles `source` (a file name and text) with `compiler` and `args`; panics with its output.
fn compile(compiler: &str, name: &str, source: &str, args: &[&str]) {
    let dir = std::env::temp_dir().join(format!("ldctq-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, source).unwrap();
    let out = Command::new(compiler)
        .args(args)
        .arg(format!("-I{}", include_dir().display()))
        .arg("-fsyntax-only")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(out.status.success(), "{compiler} {name}:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn have(compiler: &str) -> bool {
    Command::new(compiler).arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn header_compiles_alone_as_c99_and_cpp17() {
    assert!(Path::new(&include_dir().join("dlpack.h")).is_file());
    if !have("gcc") || !have("g++") {
        eprintln!("skipped: no gcc/g++");
        return;
    }
    let strict = ["-Wall", "-Wextra", "-Werror", "-pedantic"];
    let c = "#include \"ldctq.h\"\n#include \"ldctq.h\"\n\
             _Static_assert(sizeof(DLTensor) == 48, \"DLTensor layout\");\n\
             _Static_assert(sizeof(ldctq_model_options) == 40, \"options layout\");\n\
             _Static_assert(sizeof(ldctq_model_info) == 72, \"info layout\");\n\
             _Static_assert(sizeof(ldctq_status) == 4, \"status width\");\n\
             int main(void) { return LDCTQ_STATUS_OK; }\n";
    compile("gcc", "c99.c", c, &[&["-std=c11"], &strict[..]].concat());
    compile(
        "gcc",
        "c99only.c",
        "#include \"ldctq.h\"\nint main(void) { return 0; }\n",
        &[&["-std=c99"], &strict[..]].concat(),
    );
    let cpp = "#include \"ldctq.h\"\n#include \"ldctq.hpp\"\n#include \"ldctq.hpp\"\n\
               static_assert(sizeof(ldctq_status) == 4, \"status width\");\n\
               int main() { return 0; }\n";
    compile("g++", "cpp17.cpp", cpp, &[&["-std=c++17"], &strict[..]].concat());
}
