#!/usr/bin/env python3
"""Side-by-side speed of ldctq and Hugging Face transformers on the MedSigLIP-448 vision shape.

Both run on this CPU, in one run, with random weights of the real shape (d=1152, 27 layers, 16
heads, patch 14, 448x448, 1024 tokens; ~0.97 TFLOP per image forward):
  * transformers: SiglipVisionModel (SDPA attention), forward, and forward + gradient with respect
    to the input with frozen weights (the cost of using the model as a loss);
  * ldctq: the whole quality model (vision tower, FiLM, pooling, heads) through `examples/bench_vision`,
    score and score + input gradient.
A "torch.compile" row (forward only: freezing is for inference) runs the same transformers model
through inductor with freezing of the frozen weights and max-autotune, which picks AMX or AVX-512
micro-GEMM templates where the CPU has them (compile time excluded): what a PyTorch user gets from
one line. A further row runs transformers with the same allocator setting ldctq makes (glibc mmap/trim
thresholds at 512 MiB, `ldctq::runtime::tune_allocator`), to separate what the allocator gives from
what ldctq's own forward pass gives; score + gradient rows also run ldctq with activation
checkpointing (one segment per layer). At the end, the accuracy guard: bf16 against f32 scores and
input gradients on procedural CT slices. Each configuration runs in its own process so peak RSS is
measured per configuration. The table
gives seconds per image, images per second, achieved GFLOP/s (model FLOPs: 2 x MACs of the matrix
products of the forward; x2 for forward + backward to the input with frozen weights, counted the same
way for both), the
share of the measured matmul peak, and peak RSS.

Usage: make bench   (or: .venv/bin/python benches/compare_transformers.py [--batches 1 4] [--iters 2])
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
D, I, L, HEADS, P, S = 1152, 4304, 27, 16, 14, 448
N = (S // P) ** 2


def model_flops():
    """Forward FLOPs per image of the vision tower (matrix products only)."""
    per_layer = 2 * N * (4 * D * D + 2 * D * I) + 2 * 2 * N * N * D
    patch = 2 * N * (3 * P * P) * D
    return L * per_layer + patch


def tune_malloc():
    """What `ldctq::runtime::tune_allocator` does: freed large blocks stay in the heap for reuse."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    return libc.mallopt(m_mmap_threshold, 512 << 20) == 1 and libc.mallopt(m_trim_threshold, 512 << 20) == 1


def child(args):
    """Runs one transformers configuration and prints a JSON line (in a fresh process)."""
    if args.malloc_tuned:
        assert tune_malloc()
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel
    torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    cfg = SiglipVisionConfig(hidden_size=D, intermediate_size=I, num_hidden_layers=L, num_attention_heads=HEADS,
                             patch_size=P, image_size=S, attn_implementation="sdpa")
    with torch.device("cpu"):
        model = SiglipVisionModel(cfg).to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if args.compile:
        import torch._inductor.config as inductor
        inductor.freezing = True  # constant-folds the frozen weights (inference only: forward rows)
        model = torch.compile(model, mode="max-autotune")
    x = torch.rand(args.batch, 3, S, S, dtype=dtype)

    def run():
        if args.mode == "grad":
            xi = x.clone().requires_grad_(True)
            out = model(pixel_values=xi).last_hidden_state
            out.float().mean().backward()
        else:
            with torch.no_grad():
                model(pixel_values=x)

    run()
    if args.compile:
        run()  # a second warm-up: inductor may recompile once for the input's dynamic-shape guard
    t = time.perf_counter()
    for _ in range(args.iters):
        run()
    secs = (time.perf_counter() - t) / args.iters
    impl = "torch.compile (inductor)" if args.compile else "transformers + tuned malloc" if args.malloc_tuned else "transformers"
    print(json.dumps({"impl": impl, "dtype": args.dtype, "batch": args.batch, "mode": args.mode,
                      "seconds_per_batch": secs, "seconds_per_image": secs / args.batch}))


def machine():
    """The CPU model and the matrix extensions that decide which kernels oneDNN and inductor pick."""
    info = {"model": "?", "cpu family": "?", "model number": "?", "flags": set()}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["model"] = value.strip()
            elif key.strip() in ("cpu family", "model"):
                info["cpu family" if key.strip() == "cpu family" else "model number"] = value.strip()
            elif key.strip() == "flags":
                info["flags"] = set(value.split())
                break
    except OSError:
        pass
    ext = [f for f in ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"] if f in info["flags"]]
    return (f"{info['model']} (family {info['cpu family']}, model {info['model number']}), {os.cpu_count()} logical "
            f"CPUs, {' '.join(ext) or 'no AVX-512/AMX'}")


def matmul_peak(dtype_name, threads):
    import torch
    torch.set_num_threads(threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(1024, D, dtype=dtype), torch.randn(D, I, dtype=dtype)
    t = time.perf_counter()
    a @ b
    first = time.perf_counter() - t
    if first > 1.0:  # emulated (bf16 without AVX-512-BF16/AMX: ~1 GFLOP/s): one product is enough
        return 2 * 1024 * D * I / first / 1e9
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(5):  # best of 5 rounds of 10 products
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * 1024 * D * I / best / 1e9


def run_child(cmd):
    """Runs `cmd` under /usr/bin/time for its peak RSS; returns its JSON line plus `peak_rss_mb`."""
    out = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *map(str, cmd)], capture_output=True, text=True,
                         cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-2000:]}")
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rss = [l for l in out.stderr.splitlines() if l.startswith("MAXRSS ")]
    rec["peak_rss_mb"] = int(rss[-1].split()[1]) / 1024 if rss else float("nan")
    return rec


def ensure_model(work):
    backbone, model = work / "medsiglip-random", work / "model"
    if not (backbone / "model.safetensors").is_file():
        subprocess.run([sys.executable, REPO / "scripts/make_random_checkpoint.py", "--preset", "medsiglip-448",
                        "--out", backbone, "--force"], check=True)
    if not (model / "ldctq.json").is_file():
        subprocess.run([REPO / "target/release/ldctq", "init", "--backbone", backbone, "--out", model], check=True)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--malloc-tuned", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (compiling takes minutes)")
    ap.add_argument("--guard-images", type=int, default=4)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--mode", default="forward")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--dtypes", nargs="+", default=["f32", "bf16"])
    ap.add_argument("--work", type=Path, default=REPO / "target/bench")
    args = ap.parse_args()
    if args.child:
        return child(args)
    args.work.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.work)
    tune_malloc()  # the matmul peak as fast as this process can make it
    flops = model_flops()
    print(f"machine: {machine()}", flush=True)
    rows = []
    f32_peak = matmul_peak("f32", args.threads)
    for dtype in args.dtypes:
        peak = f32_peak if dtype == "f32" else matmul_peak(dtype, args.threads)
        print(f"measured {dtype} matmul peak (1024x{D} @ {D}x{I}): {peak:.0f} GFLOP/s", flush=True)
        # Without bf16 instructions libtorch emulates bf16 products (50x slower than f32 on an AVX2 Zen 3):
        # transformers would take many minutes per image, and ldctq multiplies its bf16 weights in f32
        # (`ldctq::runtime::product_kind`), so its share is of the f32 peak.
        emulated = dtype != "f32" and peak < f32_peak
        if emulated:
            print(f"{dtype} products are slower than f32 on this CPU ({peak:.0f} against {f32_peak:.0f} GFLOP/s): "
                  f"transformers {dtype} rows skipped (about {flops / peak / 1e9 / 60:.0f} min per image); ldctq "
                  f"{dtype} multiplies in f32 here", flush=True)
            peak = f32_peak
        for mode in ["forward", "grad"]:
            for batch in args.batches:
                common = ["--dtype", dtype, "--batch", str(batch), "--mode", mode, "--iters", str(args.iters),
                          "--threads", str(args.threads)]
                ldctq = [REPO / "target/release/examples/bench_vision", model, dtype, str(batch), str(args.iters), mode]
                runs = {"ldctq": ldctq}
                if not emulated:
                    runs["transformers"] = [sys.executable, __file__, "--child", *common]
                    runs["tuned"] = [sys.executable, __file__, "--child", "--malloc-tuned", *common]
                    if mode == "forward" and not args.no_compile:  # freezing is inference-only
                        runs["compile"] = [sys.executable, __file__, "--child", "--compile", *common]
                if mode == "grad":
                    runs["checkpointed"] = [*ldctq, "1"]
                recs = {label: run_child(cmd) for label, cmd in runs.items()}
                for rec in recs.values():
                    f = flops * (2 if mode == "grad" else 1)  # frozen weights: no weight-gradient products
                    rec["gflops"] = f / rec["seconds_per_image"] / 1e9
                    rec["peak_share"] = rec["gflops"] / peak
                    rec["matmul_peak_gflops"] = peak
                    rows.append(rec)
                ours = recs["ldctq"]["seconds_per_image"]
                vs = [f"x{recs[k]['seconds_per_image'] / ours:.2f} vs {name}"
                      for k, name in [("transformers", "transformers"), ("compile", "torch.compile")] if k in recs]
                print(f"{dtype} {mode} batch {batch}: " + ", ".join(
                    f"{r['impl']} {r['seconds_per_image']:.2f} s/image" for r in recs.values())
                    + (f" (ldctq {', '.join(vs)})" if vs else ""), flush=True)
    print()
    print("| impl | dtype | mode | batch | s/image | images/s | GFLOP/s | share of matmul peak | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['dtype']} | {r['mode']} | {r['batch']} | {r['seconds_per_image']:.2f} | "
              f"{1 / r['seconds_per_image']:.2f} | {r['gflops']:.0f} | {100 * r['peak_share']:.0f}% | "
              f"{r['peak_rss_mb']:.0f} |")
    guard = None
    if "bf16" in args.dtypes and args.guard_images > 0:
        out = subprocess.run([REPO / "target/release/examples/bench_vision", model, "guard", str(args.guard_images)],
                             capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            raise SystemExit(f"accuracy guard failed:\n{out.stderr[-2000:]}")
        guard = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\naccuracy guard (bf16 vs f32, {args.guard_images} procedural CT slices): max |score diff| "
              f"{guard['max_score_diff']:.4f} (target <= 0.02), gradient cosines "
              + ", ".join(f"{c:.4f}" for c in guard["gradient_cosines"]) + " (target >= 0.99); f32 with the "
              "weights rounded to bf16 (the floor of any bf16-weight model): "
              + ", ".join(f"{c:.4f}" for c in guard["weight_rounding_cosines"]))
    (args.work / "compare.json").write_text(json.dumps({"machine": machine(), "rows": rows, "guard": guard}, indent=1))


if __name__ == "__main__":
    main()
