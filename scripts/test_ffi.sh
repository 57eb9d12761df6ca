#!/usr/bin/env bash
# Installs libldctq into a test prefix and checks it from C, C++ and Python, as its users get it:
#  1. `make install PREFIX=$TARGET/ffi-test/prefix PROFILE=debug` (scripts/install.sh): the files,
#     the soname libldctq.so.<ABI major> and its links, a RUNPATH that finds libtorch, ldctq.pc;
#  2. include/ldctq.h alone as C99/C11 -pedantic -Werror and as C++17; ldctq.hpp included by two
#     C++ translation units (no non-inline definitions);
#  3. a few generated images scored by `ldctq score --format csv` (the reference);
#  4. tests/c/abi.c: the whole C ABI through the installed header (-Werror), linked to the shared
#     library (statuses, NULLs, outputs untouched on failure, info, prompts, DLPack views, the
#     float64 VJP against central differences, checkpointing, threads);
#  5. examples/cpp built with CMake (find_package(ldctq), ldctq::ldctq) and run: same scores
#     (1e-6), gradients vs finite differences, gradient ascent; again with ldctq::ldctq_static; and
#     built with its Makefile (pkg-config);
#  6. examples/python: numpy and DLPack scores (1e-6), torch.autograd.gradcheck;
#  7. tests/c/bad_input.c, linked to the shared library, then under valgrind (definite leaks and
#     memory errors fail; libtorch's "possibly lost" blocks at exit are not counted), and linked
#     to the static library.
# Every program runs without LD_LIBRARY_PATH.
# Environment: CARGO_TARGET_DIR (default target/), CARGO, PYTHON (default .venv/bin/python or
# python3), CMAKE (default .venv/bin/cmake or cmake), LDCTQ_SKIP_VALGRIND=1 to skip the valgrind run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
CARGO=${CARGO:-cargo}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo "$ROOT/.venv/bin/python" || echo python3)}
CMAKE=${CMAKE:-$([ -x .venv/bin/cmake ] && echo "$ROOT/.venv/bin/cmake" || echo cmake)}
OUT=$TARGET/ffi-test
PREFIX=$OUT/prefix
MODEL=$ROOT/tests/fixtures/quality/a_unit_seq
passed=0
failed=0
step() { printf '\n== %s\n' "$*"; }
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# run PROGRAM ARGS...: as a user's program runs, without LD_LIBRARY_PATH.
run() { env -u LD_LIBRARY_PATH "$@"; }

step "make install PREFIX=$PREFIX PROFILE=debug"
rm -rf "$OUT" && mkdir -p "$OUT"/{bin,images,scratch}
# Every cargo build comes before PKG_CONFIG_PATH changes: build scripts that use pkg-config (bzip2-sys,
# under torch-sys) rerun when it changes, and libtch would be compiled again. The CLI (for the
# reference scores) is built together with the C library, as this script always built it.
"$CARGO" build -p ldctq -p ldctq-ffi
make -s install PREFIX="$PREFIX" PROFILE=debug
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ABI_MAJOR=$(sed -n 's/^#define LDCTQ_ABI_VERSION_MAJOR \([0-9]*\)$/\1/p' "$PREFIX/include/ldctq.h")
ABI_MINOR=$(sed -n 's/^#define LDCTQ_ABI_VERSION_MINOR \([0-9]*\)$/\1/p' "$PREFIX/include/ldctq.h")
SONAME=libldctq.so.$ABI_MAJOR
missing=
for f in "lib/$SONAME.$ABI_MINOR.0" "lib/$SONAME" lib/libldctq.so lib/libldctq.a include/ldctq.h include/ldctq.hpp \
    include/dlpack.h include/ldctq_denoiser.h lib/pkgconfig/ldctq.pc lib/cmake/ldctq/ldctqConfig.cmake \
    lib/cmake/ldctq/ldctqConfigVersion.cmake; do
    [ -e "$PREFIX/$f" ] || missing="$missing $f"
done
[ -z "$missing" ] && ok "installed files" || fail "missing from the prefix:$missing"
[ "$(readlink "$PREFIX/lib/libldctq.so")" = "$SONAME" ] && [ "$(readlink "$PREFIX/lib/$SONAME")" = "$SONAME.$ABI_MINOR.0" ] \
    && ok "links libldctq.so -> $SONAME -> $SONAME.$ABI_MINOR.0" || fail "soname links"
readelf -d "$PREFIX/lib/$SONAME" | grep -q "(SONAME).*\[$SONAME\]" && ok "soname $SONAME (C ABI $ABI_MAJOR.$ABI_MINOR)" || fail "soname"
TORCH_LIB=$(readelf -d "$PREFIX/lib/$SONAME" | sed -n 's/.*(RUNPATH).*\[\(.*\)\].*/\1/p')
if [ -f "$TORCH_LIB/libtorch.so" ] && ! run ldd "$PREFIX/lib/$SONAME" | grep -q "not found"; then
    ok "RUNPATH $TORCH_LIB: every dependency found without LD_LIBRARY_PATH"
else
    fail "RUNPATH '$TORCH_LIB'"; run ldd "$PREFIX/lib/$SONAME" | grep "not found" || true
fi
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
[ "$(pkg-config --modversion ldctq)" = "$VERSION" ] && ok "pkg-config finds ldctq $VERSION" || fail "pkg-config"

step "headers compile alone"
STRICT=(-Wall -Wextra -Werror -pedantic)
printf '#include "ldctq.h"\nint main(void) { return LDCTQ_STATUS_OK; }\n' >"$OUT/h.c"
printf '#include "ldctq.h"\n#include "ldctq.h"\n_Static_assert(sizeof(DLTensor) == 48, "DLTensor");\n_Static_assert(sizeof(ldctq_model_options) == 40, "options");\n_Static_assert(sizeof(ldctq_model_info) == 72, "info");\nint main(void) { return 0; }\n' >"$OUT/h11.c"
printf '#include "ldctq.h"\n#include "ldctq.hpp"\nint f();\nint main() { return f() + LDCTQ_STATUS_OK; }\n' >"$OUT/a.cpp"
printf '#include "ldctq.hpp"\nint f() { return ldctq::default_options().dtype; }\n' >"$OUT/b.cpp"
gcc -std=c99 "${STRICT[@]}" -I"$PREFIX/include" -fsyntax-only "$OUT/h.c" && ok "ldctq.h as C99 -pedantic -Werror" || fail "C99"
gcc -std=c11 "${STRICT[@]}" -I"$PREFIX/include" -fsyntax-only "$OUT/h11.c" && ok "ldctq.h twice, C11 layout asserts" || fail "C11"
g++ -std=c++17 "${STRICT[@]}" -x c++ -I"$PREFIX/include" -fsyntax-only "$OUT/h.c" && ok "ldctq.h as C++17" || fail "C++17"
g++ -std=c++17 "${STRICT[@]}" $(pkg-config --cflags ldctq) "$OUT/a.cpp" "$OUT/b.cpp" -o "$OUT/bin/double_include" $(pkg-config --libs ldctq) \
    && run "$OUT/bin/double_include" && ok "ldctq.hpp in two translation units" || fail "double include"

step "reference scores: ldctq score --format csv"
"$PYTHON" - "$OUT/images" <<'EOF'
import sys
import numpy as np
out = sys.argv[1]
rng = np.random.default_rng(2024)
yy, xx = np.mgrid[0:1:40j, 0:1:32j]
phantom = 0.2 + 0.6 * (((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.16) + 0.1 * np.sin(12 * xx)
np.save(f"{out}/phantom_40x32.npy", np.clip(phantom + rng.normal(0, 0.03, phantom.shape), 0, 1).astype(np.float32))
np.save(f"{out}/noise_16x16.npy", rng.uniform(0.1, 0.9, (16, 16)).astype(np.float32))
np.save(f"{out}/stack_3x24x20.npy", rng.uniform(0, 1, (3, 24, 20)).astype(np.float32))
EOF
IMAGES=("$OUT"/images/*.npy)
"$TARGET/debug/ldctq" score --model "$MODEL" --input unit --format csv "${IMAGES[@]}" >"$OUT/reference.csv"
cat "$OUT/reference.csv"

# compare_csv GOT.csv: every (path, frame) of the reference within 1e-6: the CLI prints 6 decimals
# (+-5e-7). Beyond that printing, the CLI and the library run the same float32 ops on the same values
# and batch shapes (one file per call: the files differ in size), on the same CPU with the same thread
# count, so they agree to the bit whatever kernels that CPU picks.
compare_csv() {
    "$PYTHON" - "$OUT/reference.csv" "$1" <<'EOF'
import csv, sys
ref = {(r["path"], r["frame"]): float(r["score"]) for r in csv.DictReader(open(sys.argv[1]))}
got = {(r["path"], r["frame"]): float(r["score"]) for r in csv.DictReader(open(sys.argv[2]))}
assert got.keys() == ref.keys(), (sorted(got), sorted(ref))
worst = max(abs(got[k] - ref[k]) for k in ref)
print(f"max |score - ldctq score| = {worst:.2e} over {len(ref)} images")
sys.exit(0 if worst <= 1e-6 else 1)
EOF
}

step "C ABI through the installed header (tests/c/abi.c)"
if gcc -std=c11 "${STRICT[@]}" -g -pthread $(pkg-config --cflags ldctq) tests/c/abi.c -o "$OUT/bin/abi" \
    $(pkg-config --libs ldctq) -lm; then
    mkdir -p "$OUT/scratch/abi"
    run "$OUT/bin/abi" "$MODEL" "$OUT/scratch/abi" "$VERSION" >"$OUT/abi.log" 2>&1 && ok "C ABI: $(tail -n1 "$OUT/abi.log")" \
        || { grep -E "^FAIL|passed" "$OUT/abi.log"; fail "C ABI (see $OUT/abi.log)"; }
else
    fail "tests/c/abi.c does not compile against the installed ldctq.h"
fi
# The maps abi.c computed (2 images of 20 x 24) against `ldctq map` on the same images.
"$PYTHON" -c 'import numpy as np, sys; np.save(sys.argv[2], np.fromfile(sys.argv[1], np.float32).reshape(2, 20, 24))' \
    "$OUT/scratch/abi/map_images.f32" "$OUT/scratch/abi/maps.npy" \
    && "$TARGET/debug/ldctq" map --model "$MODEL" --input unit --out "$OUT/scratch/abi/cli" "$OUT/scratch/abi/maps.npy" >/dev/null \
    && "$PYTHON" - "$OUT/scratch/abi" <<'EOF' && ok "C maps equal ldctq map (1e-5)" || fail "C maps vs ldctq map"
import sys
import numpy as np
d = sys.argv[1]
for method in ("intrinsic", "gradient", "occlusion", "smoothing"):
    c = np.fromfile(f"{d}/map_{method}.f32", np.float32).reshape(2, 20, 24)
    cli = np.stack([np.load(f"{d}/cli/maps-{i}.{method}.npy") for i in range(2)])
    worst = float(np.abs(c - cli).max())
    print(f"{method}: max |C map - ldctq map| = {worst:.2e}")
    assert worst <= 1e-5, worst
EOF

step "C++ example with CMake (find_package(ldctq): ldctq::ldctq, ldctq::ldctq_static)"
# cmake_example DIR EXTRA_ARGS...: configure and build examples/cpp against the prefix, -Werror.
cmake_example() {
    local dir=$1
    shift
    "$CMAKE" -S examples/cpp -B "$dir" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_CXX_FLAGS=-Werror \
        -DCMAKE_BUILD_TYPE=Release "$@" >"$dir.log" 2>&1 && "$CMAKE" --build "$dir" >>"$dir.log" 2>&1 \
        || { tail -n 30 "$dir.log"; return 1; }
}
if cmake_example "$OUT/cmake-shared"; then
    ok "CMake: ldctq::ldctq"
    readelf -d "$OUT/cmake-shared/score_and_ascend" | grep -q "(NEEDED).*\[$SONAME\]" \
        && ok "the example needs $SONAME" || fail "the example does not need $SONAME"
    if run "$OUT/cmake-shared/score_and_ascend" "$MODEL" "${IMAGES[@]}" --steps 5 >"$OUT/cpp.csv"; then
        ok "C++ gradient checks and ascent"
    else
        fail "C++ example"
    fi
    compare_csv "$OUT/cpp.csv" && ok "C++ scores == ldctq score (1e-6)" || fail "C++ scores"
else
    fail "CMake: ldctq::ldctq"
fi
if cmake_example "$OUT/cmake-static" -DLDCTQ_STATIC=ON; then
    ok "CMake: ldctq::ldctq_static"
    needed=$(readelf -d "$OUT/cmake-static/score_and_ascend")
    grep -q "\[$SONAME\]" <<<"$needed" && fail "the static example needs $SONAME" || ok "the static example does not need libldctq.so"
    if [ -f "$TORCH_LIB/libtorch_cuda.so" ]; then
        grep -q "(NEEDED).*\[libtorch_cuda.so\]" <<<"$needed" && ok "static: libtorch_cuda kept (--no-as-needed)" \
            || fail "static: libtorch_cuda dropped"
    fi
    run "$OUT/cmake-static/score_and_ascend" "$MODEL" "${IMAGES[@]}" --steps 1 >"$OUT/cpp_static.csv" \
        && compare_csv "$OUT/cpp_static.csv" && ok "static C++ example: checks pass, scores == ldctq score" \
        || fail "static C++ example"
else
    fail "CMake: ldctq::ldctq_static"
fi
make -s -C examples/cpp OUT="$OUT/bin" && ok "C++ example with its Makefile (pkg-config)" || fail "C++ example, Makefile"

step "Python (examples/python: numpy, ctypes DLPack, autograd)"
if LDCTQ_LIBRARY=$PREFIX/lib/$SONAME PYTHONPATH=examples/python \
    run "$PYTHON" examples/python/check_ldctq_ffi.py --model "$MODEL" --reference "$OUT/reference.csv" "${IMAGES[@]}"; then
    ok "Python checks"
else
    fail "Python checks"
fi

step "C bad-input program (tests/c/bad_input.c)"
gcc -std=c99 "${STRICT[@]}" -g $(pkg-config --cflags ldctq) tests/c/bad_input.c -o "$OUT/bin/bad_input" $(pkg-config --libs ldctq) -lm
run "$OUT/bin/bad_input" "$MODEL" "$OUT/scratch" && ok "bad input (shared library)" || fail "bad input (shared library)"
gcc -std=c99 "${STRICT[@]}" $(pkg-config --cflags ldctq) tests/c/bad_input.c -o "$OUT/bin/bad_input_static" \
    "$PREFIX/lib/libldctq.a" $(pkg-config --static --libs ldctq | sed "s/-lldctq //") -lm
rm -rf "$OUT/scratch"/*
run "$OUT/bin/bad_input_static" "$MODEL" "$OUT/scratch" >/dev/null && ok "bad input (static library)" || fail "bad input (static library)"

if [ "${LDCTQ_SKIP_VALGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
    step "valgrind: bad input, definite leaks and memory errors"
    rm -rf "$OUT/scratch"/*
    # --errors-for-leak-kinds=definite: "possibly lost"/"still reachable" blocks (libtorch's static
    # registries, CUDA/OpenMP thread pools, allocated once and kept until exit) are reported in the
    # summary but are not errors. Invalid reads/writes and definite leaks are.
    if run valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --suppressions=tests/c/valgrind.supp --num-callers=30 --log-file="$OUT/valgrind.log" \
        "$OUT/bin/bad_input" "$MODEL" "$OUT/scratch" >"$OUT/valgrind.out"; then
        ok "valgrind: no memory errors, no definite leaks"
    else
        fail "valgrind (see $OUT/valgrind.log)"
    fi
    grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:" "$OUT/valgrind.log" || true
fi

echo
echo "test_ffi: $passed passed, $failed failed"
[ "$failed" = 0 ]
