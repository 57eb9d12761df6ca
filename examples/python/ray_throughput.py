"""Throughput of ldctq.ray.score_dataset with 1 and 2 Ray workers against one process.

    .venv/bin/python examples/python/ray_throughput.py --model models/default --slices 512 --size 128

Generates --slices float32 [0, 1] TIFF slices, scores them in this process (one libtorch thread, and
all threads), then on a local Ray cluster with 1 and 2 actors of one CPU each; prints images/s. The Ray
figures are end to end (actors starting and loading the model included); "steady" discounts the time of
a run over one batch per worker (mostly that start-up).
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch

import ldctq


def write_slices(folder, n, size):
    import tifffile

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = os.path.join(folder, f"{i:05d}.tif")
        tifffile.imwrite(p, rng.uniform(0.2, 0.8, (size, size)).astype(np.float32))
        paths.append(p)
    return paths


def single_process(model, paths, batch, threads):
    torch.set_num_threads(threads)
    start = time.perf_counter()
    m = ldctq.QualityModel(model)
    scores = []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            scores.append(m.score(torch.stack([m.read(p)[0] for p in paths[i : i + batch]])))
    end = time.perf_counter()
    return torch.cat(scores).double().numpy(), end - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--slices", type=int, default=512)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", default="1,2")
    args = p.parse_args()
    import ray

    import ldctq.ray

    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_slices(tmp, args.slices, args.size)
        rows = []
        ref, t = single_process(args.model, paths, args.batch, 1)
        rows.append(("single process, 1 thread", t, None, 0.0))
        threads = os.cpu_count() or 1
        _, t = single_process(args.model, paths, args.batch, threads)
        rows.append((f"single process, {threads} threads", t, None, 0.0))
        ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
        try:
            for w in workers:
                start = time.perf_counter()
                ldctq.ray.score_dataset(paths[: w * args.batch], args.model, num_workers=w, batch_size=args.batch)
                startup = time.perf_counter() - start
                start = time.perf_counter()
                df = ldctq.ray.score_dataset(paths, args.model, num_workers=w, batch_size=args.batch)
                t = time.perf_counter() - start
                diff = float(np.abs(df["score"].to_numpy() - ref).max())
                rows.append((f"ray, {w} worker(s) x 1 thread", t, startup, diff))
        finally:
            ray.shutdown()
    print(f"{args.slices} slices of {args.size} x {args.size}, batch {args.batch}, model {args.model}")
    print(f"{'run':<32} {'seconds':>8} {'images/s':>9} {'steady':>8} {'max |diff|':>11}")
    for name, t, startup, diff in rows:
        steady = "" if startup is None else f"{args.slices / max(t - startup, 1e-9):.1f}"
        print(f"{name:<32} {t:>8.2f} {args.slices / t:>9.1f} {steady:>8} {diff:>11.1e}")


if __name__ == "__main__":
    main()
