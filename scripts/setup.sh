#!/usr/bin/env bash
# Idempotent set-up: a virtualenv with torch==2.11.0 (libtorch for tch), numpy, pydicom and
# pydicom-data, plus transformers/tokenizers/safetensors/scipy/torchmetrics for fixture generators,
# cmake (builds the C++ example against `make install`'s CMake package in scripts/test_ffi.sh), and
# for the Python package (python/): maturin (its build backend), pytest and Ray Data (ldctq.ray).
# Cached per user, keyed by the torch version, so fresh clones and CI reuse it.
set -euo pipefail
TORCH_VERSION=2.11.0
CACHE="${LDCTQ_CACHE:-$HOME/.cache/ldctq}"
VENV="$CACHE/venv-torch-$TORCH_VERSION"
STAMP="$VENV/.ldctq-setup-v4"
PY="${PYTHON:-python3}"

if [ -f "$STAMP" ]; then
  echo "$VENV"
  exit 0
fi
mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" >&2
fi
"$VENV/bin/python" -m pip install -q --no-cache-dir --upgrade pip >&2
"$VENV/bin/python" -m pip install -q --no-cache-dir "torch==$TORCH_VERSION" >&2
"$VENV/bin/python" -m pip install -q --no-cache-dir numpy scipy pydicom pydicom-data safetensors tokenizers \
  "transformers==5.24.0" "torchmetrics==1.9.0" pillow tifffile cmake \
  maturin pytest "ray[data]" >&2
touch "$STAMP"
echo "$VENV"
