#!/usr/bin/env python3
"""Where ldctq's CPU time goes: `perf record` of `examples/bench_vision` in steady state, samples
grouped by kind of work. Needs Linux `perf` (Debian: linux-perf) and the release example built
(`make bench` builds it; the MedSigLIP-size model folder is the one `make bench` makes).

Usage: .venv/bin/python benches/profile_cpu.py MODEL_DIR [bf16|f32] [forward|grad] [--delay-ms 9000]
"""
import argparse
import re
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, pattern on the symbol or object name); the first match wins.
GROUPS = [
    ("matrix products (oneDNN JIT kernels, MKL)", r"\[JIT\]|dnnl|mkl_|gemm|brgemm"),
    ("softmax", r"softmax"),
    ("GELU (tanh)", r"gelu|tanh"),
    ("layer norm", r"layer_norm|LayerNorm"),
    ("dtype casts and copies", r"copy_kernel|float_copy|memmove|memcpy|direct_copy"),
    ("additions, scaling", r"add_kernel|mul_kernel|AddBackward|binary"),
    ("kernel (page faults, scheduling)", r"\[k\]"),
    ("OpenMP threads waiting", r"libgomp|gomp"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dtype", nargs="?", default="bf16")
    ap.add_argument("mode", nargs="?", default="forward")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--delay-ms", type=int, default=9000, help="skip loading and warm-up")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        subprocess.run(["perf", "record", "-q", "-D", str(args.delay_ms), "-o", data,
                        REPO / "target/release/examples/bench_vision", args.model, args.dtype, "1",
                        str(args.iters), args.mode], check=True)
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso,sym"],
                                capture_output=True, text=True, check=True).stdout
    shares = defaultdict(float)
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)", line)
        if not m:
            continue
        pct, rest = float(m.group(1)), m.group(2)
        label = next((g for g, pat in GROUPS if re.search(pat, rest)), "other")
        shares[label] += pct
    print(f"ldctq {args.dtype} {args.mode}, batch 1, steady state (perf samples after {args.delay_ms} ms):")
    print("| work | share of CPU samples |\n|---|---|")
    for label, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {pct:.1f}% |")


if __name__ == "__main__":
    main()
