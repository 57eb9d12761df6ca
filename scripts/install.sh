#!/usr/bin/env bash
# Installs libldctq for C and C++ users (`make install PREFIX=DIR [PROFILE=release|debug]` calls this):
#   bash scripts/install.sh PREFIX [release|debug]      (default release)
# builds the C ABI crate (cargo build -p ldctq-ffi) and installs
#   PREFIX/lib/libldctq.so.M.m.0, libldctq.so.M (its soname), libldctq.so   M.m: the C ABI version
#   PREFIX/lib/libldctq.a
#   PREFIX/include/ldctq.h ldctq.hpp dlpack.h ldctq_denoiser.h
#   PREFIX/lib/pkgconfig/ldctq.pc
#   PREFIX/lib/cmake/ldctq/ldctqConfig.cmake, ldctqConfigVersion.cmake   (ldctq::ldctq, ldctq::ldctq_static)
# The shared library keeps its RUNPATH to the libtorch it was built against (the torch wheel of the
# project's virtualenv), so programs need no LD_LIBRARY_PATH; that libtorch must stay where it is.
# The .pc and CMake files are filled in from ffi/install/*.in.
# Environment: CARGO (default cargo), CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PREFIX=${1:?usage: scripts/install.sh PREFIX [release|debug]}
PROFILE=${2:-release}
CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
case $PREFIX in /*) ;; *) PREFIX=$PWD/$PREFIX ;; esac
case $PROFILE in
    release) BUILD=(--release) ;;
    debug) BUILD=() ;;
    *) echo "install.sh: PROFILE must be release or debug, not '$PROFILE'" >&2; exit 2 ;;
esac
die() { echo "install.sh: $*" >&2; exit 1; }

# The C ABI crate alone: its own feature set of the core crate (no CLI, no plots).
"$CARGO" build -p ldctq-ffi "${BUILD[@]}"
BUILT=$TARGET/$PROFILE

# Versions: the package's (Cargo.toml), the C ABI's (the header, generated from ffi/src/lib.rs).
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ABI_MAJOR=$(sed -n 's/^#define LDCTQ_ABI_VERSION_MAJOR \([0-9]*\)$/\1/p' include/ldctq.h)
ABI_MINOR=$(sed -n 's/^#define LDCTQ_ABI_VERSION_MINOR \([0-9]*\)$/\1/p' include/ldctq.h)
[ -n "$VERSION" ] && [ -n "$ABI_MAJOR" ] && [ -n "$ABI_MINOR" ] || die "no version in Cargo.toml or include/ldctq.h"
SONAME=libldctq.so.$ABI_MAJOR
REALNAME=libldctq.so.$ABI_MAJOR.$ABI_MINOR.0

# What the build recorded: the soname (ffi/build.rs) and the libtorch folder (RUNPATH).
dynamic=$(readelf -d "$BUILT/libldctq.so")
built_soname=$(sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p' <<<"$dynamic")
[ "$built_soname" = "$SONAME" ] || die "$BUILT/libldctq.so has soname '$built_soname', the header's ABI says $SONAME"
TORCH_LIB=$(sed -n 's/.*(RUNPATH).*\[\(.*\)\].*/\1/p' <<<"$dynamic")
[ -f "$TORCH_LIB/libtorch.so" ] || die "RUNPATH '$TORCH_LIB' of $BUILT/libldctq.so has no libtorch.so"
TORCH_CUDA_LIB=
TORCH_CUDA_FLAG=
if [ -f "$TORCH_LIB/libtorch_cuda.so" ]; then
    TORCH_CUDA_LIB=$TORCH_LIB/libtorch_cuda.so
    TORCH_CUDA_FLAG="-ltorch_cuda "
fi

mkdir -p "$PREFIX"/{lib/pkgconfig,lib/cmake/ldctq,include}
install -m 755 "$BUILT/libldctq.so" "$PREFIX/lib/$REALNAME"
ln -sfn "$REALNAME" "$PREFIX/lib/$SONAME"
ln -sfn "$SONAME" "$PREFIX/lib/libldctq.so"
install -m 644 "$BUILT/libldctq.a" "$PREFIX/lib/libldctq.a"
install -m 644 include/ldctq.h include/ldctq.hpp include/dlpack.h include/ldctq_denoiser.h "$PREFIX/include/"

# fill TEMPLATE OUT: @NAME@ replaced by the values above.
fill() {
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" \
        -e "s|@VERSION_MAJOR@|${VERSION%%.*}|g" -e "s|@VERSION_MINOR@|$(cut -d. -f2 <<<"$VERSION")|g" \
        -e "s|@ABI_VERSION@|$ABI_MAJOR.$ABI_MINOR|g" -e "s|@SONAME@|$SONAME|g" -e "s|@REALNAME@|$REALNAME|g" \
        -e "s|@TORCH_LIB@|$TORCH_LIB|g" -e "s|@TORCH_CUDA_LIB@|$TORCH_CUDA_LIB|g" \
        -e "s|@TORCH_CUDA_FLAG@|$TORCH_CUDA_FLAG|g" "$1" >"$2"
    ! grep -n '@[A-Z_]*@' "$2" || die "unfilled placeholder in $2"
}
fill ffi/install/ldctq.pc.in "$PREFIX/lib/pkgconfig/ldctq.pc"
fill ffi/install/ldctqConfig.cmake.in "$PREFIX/lib/cmake/ldctq/ldctqConfig.cmake"
fill ffi/install/ldctqConfigVersion.cmake.in "$PREFIX/lib/cmake/ldctq/ldctqConfigVersion.cmake"

echo "installed ldctq $VERSION (C ABI $ABI_MAJOR.$ABI_MINOR, $PROFILE) into $PREFIX:"
echo "  lib/$REALNAME (soname $SONAME, RUNPATH $TORCH_LIB), lib/libldctq.a, include/ldctq.h ldctq.hpp,"
echo "  lib/pkgconfig/ldctq.pc, lib/cmake/ldctq (find_package(ldctq); ldctq::ldctq, ldctq::ldctq_static)"
