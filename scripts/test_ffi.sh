#!/usr/bin/env bash
# Builds libldctq (shared and static) and checks it from C, C++ and Python:
#  1. include/ldctq.h alone as C99/C11 -pedantic -Werror and as C++17; ldctq.hpp included by two
#     C++ translation units (no non-inline definitions);
#  2. an install-like prefix under $TARGET/ffi-test (lib/libldctq.so.1.0.0 + soname links,
#     libldctq.a, include/, lib/pkgconfig/ldctq.pc) that the C++ example finds with pkg-config;
#  3. a few generated images scored by `ldctq score --format csv` (the reference);
#  4. examples/cpp: same scores (1e-6), gradients vs finite differences, gradient ascent;
#  5. examples/python: numpy and DLPack scores (1e-6), torch.autograd.gradcheck;
#  6. tests/c/bad_input.c, linked to the shared library, then under valgrind (definite leaks and
#     memory errors fail; libtorch's "possibly lost" blocks at exit are not counted), and linked
#     to the static library.
# Environment: CARGO_TARGET_DIR (default target/), CARGO, PYTHON (default .venv/bin/python or
# python3), LDCTQ_SKIP_VALGRIND=1 to skip the valgrind run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
CARGO=${CARGO:-cargo}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo "$ROOT/.venv/bin/python" || echo python3)}
OUT=$TARGET/ffi-test
MODEL=$ROOT/tests/fixtures/quality/a_unit_seq
passed=0
failed=0
step() { printf '\n== %s\n' "$*"; }
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

step "build libldctq (cdylib + staticlib) and the ldctq CLI"
"$CARGO" build -p ldctq -p ldctq-ffi
rm -rf "$OUT" && mkdir -p "$OUT"/{lib/pkgconfig,include,bin,images,scratch}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# The soname is libldctq.so.<C ABI major> (ffi/build.rs).
cp "$TARGET/debug/libldctq.so" "$OUT/lib/libldctq.so.1.0.0"
ln -s libldctq.so.1.0.0 "$OUT/lib/libldctq.so.1"
ln -s libldctq.so.1 "$OUT/lib/libldctq.so"
cp "$TARGET/debug/libldctq.a" "$OUT/lib/"
cp include/ldctq.h include/ldctq.hpp include/dlpack.h "$OUT/include/"
TORCH_LIB=$(readelf -d "$OUT/lib/libldctq.so" | sed -n 's/.*RUNPATH.*\[\(.*\)\].*/\1/p')
cat >"$OUT/lib/pkgconfig/ldctq.pc" <<EOF
prefix=$OUT
libdir=\${prefix}/lib
includedir=\${prefix}/include
torchlibdir=$TORCH_LIB

Name: ldctq
Description: Differentiable no-reference quality criterion for low-dose CT (C ABI)
Version: $VERSION
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lldctq
Libs.private: -L\${torchlibdir} -Wl,-rpath,\${torchlibdir} -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed -lstdc++ -lm -ldl -lpthread -lgcc_s
EOF
export PKG_CONFIG_PATH=$OUT/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
readelf -d "$OUT/lib/libldctq.so" | grep -q 'SONAME.*libldctq.so.1' && ok "soname libldctq.so.1" || fail "soname"
[ "$(pkg-config --modversion ldctq)" = "$VERSION" ] && ok "pkg-config finds ldctq $VERSION" || fail "pkg-config"

step "headers compile alone"
STRICT=(-Wall -Wextra -Werror -pedantic)
printf '#include "ldctq.h"\nint main(void) { return LDCTQ_STATUS_OK; }\n' >"$OUT/h.c"
printf '#include "ldctq.h"\n#include "ldctq.h"\n_Static_assert(sizeof(DLTensor) == 48, "DLTensor");\n_Static_assert(sizeof(ldctq_model_options) == 40, "options");\n_Static_assert(sizeof(ldctq_model_info) == 72, "info");\nint main(void) { return 0; }\n' >"$OUT/h11.c"
printf '#include "ldctq.h"\n#include "ldctq.hpp"\nint f();\nint main() { return f() + LDCTQ_STATUS_OK; }\n' >"$OUT/a.cpp"
printf '#include "ldctq.hpp"\nint f() { return ldctq::default_options().dtype; }\n' >"$OUT/b.cpp"
gcc -std=c99 "${STRICT[@]}" -I"$OUT/include" -fsyntax-only "$OUT/h.c" && ok "ldctq.h as C99 -pedantic -Werror" || fail "C99"
gcc -std=c11 "${STRICT[@]}" -I"$OUT/include" -fsyntax-only "$OUT/h11.c" && ok "ldctq.h twice, C11 layout asserts" || fail "C11"
g++ -std=c++17 "${STRICT[@]}" -x c++ -I"$OUT/include" -fsyntax-only "$OUT/h.c" && ok "ldctq.h as C++17" || fail "C++17"
g++ -std=c++17 "${STRICT[@]}" $(pkg-config --cflags ldctq) "$OUT/a.cpp" "$OUT/b.cpp" -o "$OUT/bin/double_include" $(pkg-config --libs ldctq) \
    && "$OUT/bin/double_include" && ok "ldctq.hpp in two translation units" || fail "double include"

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

# compare_csv GOT.csv: every (path, frame) of the reference within 1e-6.
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

step "C++ example (examples/cpp, ldctq.hpp, pkg-config)"
make -s -C examples/cpp OUT="$OUT/bin"
if "$OUT/bin/score_and_ascend" "$MODEL" "${IMAGES[@]}" --steps 5 >"$OUT/cpp.csv"; then
    ok "C++ gradient checks and ascent"
else
    fail "C++ example"
fi
compare_csv "$OUT/cpp.csv" && ok "C++ scores == ldctq score (1e-6)" || fail "C++ scores"

step "Python (examples/python: numpy, ctypes DLPack, autograd)"
if LDCTQ_LIBRARY=$OUT/lib/libldctq.so.1 PYTHONPATH=examples/python \
    "$PYTHON" examples/python/check_ldctq_ffi.py --model "$MODEL" --reference "$OUT/reference.csv" "${IMAGES[@]}"; then
    ok "Python checks"
else
    fail "Python checks"
fi

step "C bad-input program (tests/c/bad_input.c)"
gcc -std=c99 "${STRICT[@]}" -g $(pkg-config --cflags ldctq) tests/c/bad_input.c -o "$OUT/bin/bad_input" $(pkg-config --libs ldctq) -lm
"$OUT/bin/bad_input" "$MODEL" "$OUT/scratch" && ok "bad input (shared library)" || fail "bad input (shared library)"
gcc -std=c99 "${STRICT[@]}" $(pkg-config --cflags ldctq) tests/c/bad_input.c -o "$OUT/bin/bad_input_static" \
    "$OUT/lib/libldctq.a" $(pkg-config --static --libs ldctq | sed "s/-lldctq //") -lm
rm -rf "$OUT/scratch"/*
"$OUT/bin/bad_input_static" "$MODEL" "$OUT/scratch" >/dev/null && ok "bad input (static library)" || fail "bad input (static library)"

if [ "${LDCTQ_SKIP_VALGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
    step "valgrind: bad input, definite leaks and memory errors"
    rm -rf "$OUT/scratch"/*
    # --errors-for-leak-kinds=definite: "possibly lost"/"still reachable" blocks (libtorch's static
    # registries, CUDA/OpenMP thread pools, allocated once and kept until exit) are reported in the
    # summary but are not errors. Invalid reads/writes and definite leaks are.
    if valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
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
