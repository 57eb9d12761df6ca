"""Shared by the Python tests: the repository's tiny random model fixtures (tests/fixtures/quality, on
the tiny SigLIP backbones of tests/fixtures/siglip: no network), the `ldctq` binary that `make test`
builds, and small generated images."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

# The models are tiny: one libtorch thread is faster than the pool's overhead.
torch.set_num_threads(1)

#: Two f32 scores of one image computed in different batches (other matrix shapes, so other blockings
#: of the products' reductions) may differ by a few units in the last place; 4 ulps at the top of the
#: score range (4 x 2^-21 = 1.9e-6). Measured: 1.2e-6 on an AMD Zen 4, 0 on a Sapphire Rapids.
F32_BATCH_TOL = 4 * 2.0**-21

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
#: [0, 1] input, FiLM off, 16 x 16; HU input, FiLM 0.7 with its own prompt, 35 x 35.
UNIT_MODEL = FIXTURES / "quality" / "a_unit_s0"
HU_MODEL = FIXTURES / "quality" / "b_hu_grid"
SEQ_MODEL = FIXTURES / "quality" / "a_unit_seq"


def ldctq_bin() -> Path:
    path = Path(os.environ.get("LDCTQ_BIN", REPO / "target" / "debug" / "ldctq"))
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with `cargo build --bin ldctq` (make test does)")
    return path


def run_ldctq(*args) -> subprocess.CompletedProcess:
    """Runs the CLI with one libtorch thread, as the tests' own process: the thread count splits the
    products' reductions, so a 2-thread CLI differs from a 1-thread library in the last bits (measured
    1.2e-6 in a score on an AMD Zen 4), while equal thread counts give equal bits."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(ldctq_bin()), *map(str, args)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out


def write_tiffs(folder: Path, n: int, size: int = 24, seed: int = 0) -> list:
    """`n` float32 TIFF slices in [0, 1] (LDCTIQA-style) with a disc and noise, named 0000.tif..."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2).astype(np.float32)
    paths = []
    for i in range(n):
        img = np.clip(0.3 + 0.4 * disc + rng.normal(0, 0.02 + 0.002 * (i % 50), disc.shape), 0, 1)
        p = folder / f"{i:04d}.tif"
        tifffile.imwrite(p, img.astype(np.float32))
        paths.append(p)
    return paths


@pytest.fixture
def images():
    """A batch (4, 1, 20, 20) in [0, 1], float32."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 20, 20, generator=g) * 0.6 + 0.2
