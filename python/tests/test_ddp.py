"""examples/python/ddp_denoiser.py on 2 processes (gloo): the gradients reaching the denoiser after
DDP's all-reduce equal those of one process on the same global batch."""

import socket
import sys
from argparse import Namespace

import torch
from conftest import REPO, SEQ_MODEL

sys.path.insert(0, str(REPO / "examples" / "python"))
import ddp_denoiser  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_a_single_process(tmp_path):
    dump = tmp_path / "grads"
    argv = ["--model", str(SEQ_MODEL), "--world-size", "2", "--steps", "2", "--batch", "6"]
    argv += ["--port", str(free_port()), "--dump-grads", str(dump)]
    ddp_denoiser.main(argv)
    ranks = [torch.load(f"{dump}.rank{r}") for r in range(2)]
    single = ddp_denoiser.single_process_grads(Namespace(model=str(SEQ_MODEL), batch=6, quality_weight=0.1))
    for a, b, want in zip(ranks[0], ranks[1], single):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # all-reduced: the same on every rank
        # Equal to float32 rounding (the sums run in another order), relative to the gradient's size.
        scale = want.abs().max().item()
        print(f"max |ddp - single| {(a - want).abs().max().item():.2e} of max |grad| {scale:.2e}")
        torch.testing.assert_close(a, want, rtol=1e-4, atol=1e-5 * scale)
    assert any(g.abs().sum() > 0 for g in single)
