#!/usr/bin/env python3
"""Export a small TorchScript CNN denoiser for `ldctq bench --denoiser OUT.pt`.

The network is a residual DnCNN-style CNN (3x3 convolutions, ReLU) that predicts the noise:
``denoised = clamp(x - net(x), 0, 1)``, for N x 1 x H x W float32 images in [0, 1] (the LDCTIQA2023
space: HU through the window -300/1400). It is trained for a few hundred steps on the CPU on synthetic
piecewise-smooth "phantoms" (random ellipses of CT-like values) with Gaussian noise of a random level,
so it smooths noise while keeping edges; it is an example, not a state-of-the-art denoiser.
Everything is seeded: the same arguments give the same file contents' numbers.

    .venv/bin/python scripts/export_torchscript_denoiser.py --out cnn.pt [--steps 300] [--trace]

``--trace`` exports with torch.jit.trace instead of torch.jit.script; ``--steps 0`` exports the
untrained (randomly initialised) network.
"""
import argparse
import math
import time

import torch
from torch import nn


class ResidualCNN(nn.Module):
    def __init__(self, width: int = 16, depth: int = 4):
        super().__init__()
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(width, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.net(x)).clamp(0.0, 1.0)


def phantoms(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    """n x 1 x size x size piecewise-constant images in [0, 1]: a body ellipse and inner ellipses."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = torch.zeros(n, 1, size, size)
    for i in range(n):
        img = torch.zeros(size, size)
        k = 1 + int(torch.randint(4, 9, (1,), generator=gen))
        for j in range(k):
            r = torch.rand(6, generator=gen)
            cx, cy = (r[0] - 0.5) * (0.2 if j == 0 else 1.2), (r[1] - 0.5) * (0.2 if j == 0 else 1.2)
            ax, ay = (0.75 + 0.2 * r[2], 0.6 + 0.3 * r[3]) if j == 0 else (0.05 + 0.3 * r[2], 0.05 + 0.3 * r[3])
            th = math.pi * float(r[4])
            c, s = math.cos(th), math.sin(th)
            u, v = (xs - cx) * c + (ys - cy) * s, -(xs - cx) * s + (ys - cy) * c
            inside = (u / ax) ** 2 + (v / ay) ** 2 <= 1
            # body ~ soft tissue (0.7), inner structures between fat (0.65) and bone (0.95+)
            value = 0.7 if j == 0 else 0.55 + 0.45 * float(r[5])
            img = torch.where(inside, torch.tensor(value), img)
        out[i, 0] = img
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output .pt file")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=48, help="training patch size")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trace", action="store_true", help="torch.jit.trace instead of torch.jit.script")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    gen = torch.Generator().manual_seed(args.seed)
    model = ResidualCNN(args.width, args.depth)
    # Start near the identity: a small last layer.
    with torch.no_grad():
        model.net[-1].weight.mul_(0.1)
        model.net[-1].bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    pool = phantoms(gen, 64, args.size)
    start = time.time()
    loss = torch.tensor(float("nan"))
    for step in range(args.steps):
        idx = torch.randint(0, pool.shape[0], (args.batch,), generator=gen)
        clean = pool[idx]
        clean = torch.rot90(clean, int(torch.randint(0, 4, (1,), generator=gen)), dims=(2, 3))
        sigma = 0.01 + 0.07 * torch.rand(args.batch, 1, 1, 1, generator=gen)
        noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
        loss = ((model(noisy) - clean) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    example = torch.rand(2, 1, 32, 32, generator=gen)
    with torch.no_grad():
        ts = torch.jit.trace(model, example) if args.trace else torch.jit.script(model)
        assert ts(example).shape == example.shape
    ts.save(args.out)
    print(
        f"wrote {args.out}: {'traced' if args.trace else 'scripted'} residual CNN "
        f"(width {args.width}, depth {args.depth}), {args.steps} steps, last loss {float(loss.detach()):.2e}, "
        f"{time.time() - start:.1f} s, torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()
