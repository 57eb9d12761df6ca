"""maturin as the PEP 517 backend, with the environment that tch's build needs.

torch-sys finds libtorch through the Python interpreter on PATH (LIBTORCH_USE_PYTORCH=1, set for
cargo by the repository's .cargo/config.toml): here, the interpreter that runs the build (the
project's virtualenv, so the extension links the torch that `import torch` loads), whether or not the
virtualenv is activated. maturin itself is run from PATH too.
"""
import os
import sys
from pathlib import Path

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("VIRTUAL_ENV", sys.prefix)

from maturin import (  # noqa: E402,F401
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)
