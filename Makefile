# ldctq: `make demo` runs the main job, `make test` the test suite, `make install PREFIX=DIR` installs
# the C library. All set up what they need: a cached virtualenv with torch==2.11.0 (libtorch for
# tch) under ~/.cache/ldctq, linked as .venv.
SHELL := /bin/bash
export VIRTUAL_ENV := $(CURDIR)/.venv
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export LDCTQ_PYTHON := $(CURDIR)/.venv/bin/python
CARGO ?= cargo
LDCTQ := target/debug/ldctq

.PHONY: setup build test demo fixtures bench lint install python

setup:
	@venv=$$(bash scripts/setup.sh) && ln -sfn "$$venv" .venv

build: setup
	$(CARGO) build --workspace

test: setup
	$(CARGO) test --workspace
	bash scripts/test_ffi.sh
	$(MAKE) python
	.venv/bin/python -m pytest -q -p no:cacheprovider python/tests

# The Python package `ldctq` (PyO3 extension over the library, built by maturin) into .venv, whose
# torch it links against; its own Cargo workspace (python/Cargo.toml), sharing target/.
python: setup
	.venv/bin/pip install -q --no-build-isolation ./python

# The gates CI runs before the tests: formatting, clippy (default features and the lean library that
# libldctq links; the Python extension's own workspace), rustdoc, all with warnings denied.
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p ldctq --no-default-features --lib -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p ldctq
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p ldctq-ffi
	cd python && $(CARGO) fmt -- --check && $(CARGO) clippy --all-targets -- -D warnings

# libldctq for C and C++ users (scripts/install.sh): the shared and static library, the headers,
# ldctq.pc and the CMake package (find_package(ldctq); ldctq::ldctq, ldctq::ldctq_static).
PROFILE ?= release
install: setup
	@[ -n "$(PREFIX)" ] || { echo "usage: make install PREFIX=DIR [PROFILE=release|debug]" >&2; exit 2; }
	bash scripts/install.sh "$(PREFIX)" "$(PROFILE)"

demo: build
	bash scripts/demo.sh

# Regenerate every committed fixture (needs transformers, pydicom, scipy, torchmetrics: the set-up has
# them). SigLIP first: the quality models use its backbones. Each generator pins numpy's, torch's, MKL's,
# oneDNN's and OpenBLAS's kernels and one thread (tests/fixtures/fixture_env.py), so the files come out
# the same bytes on any x86-64 CPU with AVX2; `git status` shows what a change of library versions moved.
fixtures: setup
	.venv/bin/python tests/fixtures/siglip/gen_siglip_fixtures.py
	.venv/bin/python tests/fixtures/quality/gen_quality_fixtures.py
	.venv/bin/python tests/fixtures/io/gen_io_fixtures.py
	.venv/bin/python tests/fixtures/metrics/gen_metrics_fixtures.py
	.venv/bin/python tests/fixtures/vif/gen_vif_fixtures.py

# Side-by-side speed against transformers on the MedSigLIP-448 shape (minutes; not part of `make test`).
bench: setup
	$(CARGO) build --release --bin ldctq --example bench_vision
	.venv/bin/python benches/compare_transformers.py
