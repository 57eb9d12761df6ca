"""Train a small denoiser with ldctq.QualityLoss under DistributedDataParallel (torch.distributed).

Each rank holds its own frozen criterion (an ldctq.QualityModel: no parameters, nothing to
synchronise) and its share of every global batch; DDP averages the denoiser's gradients over the
ranks, so with the mean reduction they equal those of one process on the whole global batch.

    .venv/bin/python examples/python/ddp_denoiser.py --model tests/fixtures/quality/a_unit_seq \\
        --world-size 2 --steps 20

Ranks are started here with torch.multiprocessing on one machine (gloo, CPU); under torchrun or
Slurm, call `train(rank, world_size, args)` from each started process instead, with MASTER_ADDR and
MASTER_PORT set. Data: synthetic [0, 1] slices (a disc, noise added), so it runs anywhere.
"""

import argparse
import gc
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import ldctq


def denoiser() -> torch.nn.Module:
    """A tiny residual CNN; seeded so that every rank (and a single process) starts from the same weights."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1)
    )


def global_batch(step: int, size: int, image: int = 32):
    """Step `step`'s global batch: (noisy, clean), (size, 1, image, image), the same on every rank."""
    g = torch.Generator().manual_seed(1000 + step)
    yy, xx = torch.meshgrid(torch.arange(image), torch.arange(image), indexing="ij")
    r = image / 4 + image / 8 * torch.rand(size, 1, 1, generator=g)
    clean = 0.3 + 0.4 * (((yy - image / 2) ** 2 + (xx - image / 2) ** 2) < r**2).float()
    noisy = (clean + 0.05 * torch.randn(size, image, image, generator=g)).clamp(0, 1)
    return noisy.unsqueeze(1), clean.unsqueeze(1)


def loss_fn(net, quality, noisy, clean, weight: float):
    out = noisy + net(noisy)
    return torch.nn.functional.mse_loss(out, clean) + weight * quality(out)


def train(rank: int, world_size: int, args) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(args.threads)
    quality = ldctq.QualityLoss(ldctq.QualityModel(args.model))  # this rank's own frozen criterion
    net = DistributedDataParallel(denoiser())
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    per_rank = args.batch // world_size
    for step in range(args.steps):
        noisy, clean = global_batch(step, args.batch)
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        loss = loss_fn(net, quality, noisy[mine], clean[mine], args.quality_weight)
        opt.zero_grad()
        loss.backward()  # DDP all-reduces (averages) the gradients here
        if step == 0 and args.dump_grads:
            torch.save([p.grad.clone() for p in net.parameters()], f"{args.dump_grads}.rank{rank}")
        opt.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0 and (step % 5 == 0 or step == args.steps - 1):
            print(f"step {step}: loss {total.item() / world_size:.4f}", flush=True)
    # DDP holds the process group: free it first, so that destroying the group joins gloo's worker
    # threads now. Left to the interpreter's exit, a worker still releasing the last all-reduce's
    # tensor cannot take the GIL and the process aborts ("terminate called without an active exception").
    del net, opt, total
    gc.collect()
    dist.destroy_process_group()


def single_process_grads(args):
    """The first step's gradients of one process on the whole global batch (what DDP must reproduce)."""
    quality = ldctq.QualityLoss(ldctq.QualityModel(args.model))
    net = denoiser()
    noisy, clean = global_batch(0, args.batch)
    loss_fn(net, quality, noisy, clean, args.quality_weight).backward()
    return [p.grad.clone() for p in net.parameters()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="ldctq model or ensemble folder")
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8, help="global batch (divisible by the world size)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--quality-weight", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1, help="libtorch threads per rank")
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--dump-grads", help="write each rank's first-step gradients to PATH.rank<i>")
    args = p.parse_args(argv)
    if args.batch % args.world_size:
        p.error("--batch must be divisible by --world-size")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    mp.spawn(train, args=(args.world_size, args), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
