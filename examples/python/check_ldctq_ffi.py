"""Checks of libldctq from Python (run by scripts/test_ffi.sh), written against ldctq_ffi.py only.

usage: check_ldctq_ffi.py --model DIR --reference scores.csv FILE.npy...

- numpy path (ldctq_score) and torch DLPack path (contiguous, strided + byte_offset, N x 1 x H x W)
  agree with `ldctq score --format csv` to 1e-6 (the same float32 ops on the same values and shapes);
- torch.autograd.gradcheck of QualityScore (finite differences) with a float64 model on float64
  tensors, default tolerances; the float32 model's gradient against the float64 model's, within
  float32 rounding (finite differences of a float32 function are mostly rounding noise);
- loss.backward() equals the library's VJP with upstream -1/N; float16/bfloat16 inputs; errors;
- on CUDA (when torch and the library see a GPU): a CUDA model on CUDA tensors, no copy.
Ends with "N passed, M failed".
"""
import argparse
import csv
import sys
import traceback

import torch  # before ldctq_ffi: one libtorch in the process
import numpy as np

import ldctq_ffi
from ldctq_ffi import LdctqError, Model, quality_score

results = {"passed": 0, "failed": 0}


def case(fn):
    try:
        fn()
        print(f"ok   {fn.__name__}")
        results["passed"] += 1
    except Exception:
        print(f"FAIL {fn.__name__}")
        traceback.print_exc()
        results["failed"] += 1
    return fn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--reference", required=True, help="ldctq score --format csv output")
    p.add_argument("--library")
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    ldctq_ffi.load_library(args.library)
    print(ldctq_ffi.version())
    ref = {(r["path"], int(r["frame"])): float(r["score"]) for r in csv.DictReader(open(args.reference))}
    images = {f: np.load(f).astype(np.float32) for f in args.files}
    images = {f: (a[None] if a.ndim == 2 else a) for f, a in images.items()}
    model = Model(args.model)
    info = model.info()
    print("model info:", info)

    def compare(label, scores_of):
        worst = 0.0
        for f, a in images.items():
            got = np.asarray(scores_of(a), dtype=np.float64)
            want = np.array([ref[(f, i)] for i in range(a.shape[0])])
            worst = max(worst, float(np.abs(got - want).max()))
        print(f"  {label}: max |score - ldctq score| = {worst:.2e}")
        assert worst <= 1e-6, f"{label}: {worst:.2e} > 1e-6"

    def rounding_tol(u, depth, scale):
        """tests/common/mod.rs's bound, 8 u sqrt(k) depth scale, for the test model a_unit_seq (longest
        sum k = 128; 17 layers to the score, 34 to the input gradient): how far a run in precision u
        may land from the exact value on any CPU."""
        return 8.0 * u * 128**0.5 * depth * scale

    @case
    def numpy_scores_match_the_cli():
        compare("numpy ldctq_score", model.score_numpy)

    @case
    def torch_dlpack_scores_match_the_cli():
        compare("torch DLPack contiguous", lambda a: model.score_torch(torch.from_numpy(a)))
        compare("torch DLPack N x 1 x H x W", lambda a: model.score_torch(torch.from_numpy(a)[:, None]))
        # A transposed, offset view: storage (pad + W, H, N) read through strides and byte_offset.
        def strided(a):
            t = torch.from_numpy(a)
            base = torch.zeros(3 + t.numel(), dtype=torch.float32)
            store = base[3:].view(t.shape[2], t.shape[1], t.shape[0])
            store.copy_(t.permute(2, 1, 0))
            view = store.permute(2, 1, 0)
            assert not view.is_contiguous() and view.storage_offset() == 3
            return model.score_torch(view)
        compare("torch DLPack strided + byte_offset", strided)
        compare("torch float64", lambda a: model.score_torch(torch.from_numpy(a).double()))

    x0 = torch.from_numpy(next(iter(images.values()))[:1, :12, :10].copy()).double()

    @case
    def gradcheck_float64_model_strict():
        m64 = Model(args.model, dtype="float64")
        x = x0.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: quality_score(m64, t), (x,))

    @case
    def float32_gradient_matches_the_float64_model():
        m64 = Model(args.model, dtype="float64")
        grads = []
        for m in (model, m64):
            x = x0.clone().requires_grad_(True)
            quality_score(m, x).sum().backward()
            grads.append(x.grad.double())
        g32, g64 = grads
        diff, tol = (g32 - g64).abs().max().item(), rounding_tol(2.0**-24, 34, g64.abs().max().item())
        print(f"  max |float32 - float64 gradient| = {diff:.2e} (bound {tol:.1e})")
        assert diff <= tol

    @case
    def backward_of_a_mean_loss_is_the_vjp():
        a = next(iter(images.values()))
        x = torch.from_numpy(a).clone().requires_grad_(True)
        loss = (4.0 - quality_score(model, x)).mean()
        loss.backward()
        n = a.shape[0]
        _, grad = model.score_grad_numpy(a, upstream=np.full(n, -1.0 / n))
        diff = (x.grad - torch.from_numpy(grad)).abs().max().item()
        print(f"  max |autograd - VJP(-1/N)| = {diff:.2e}")
        # The same float32 ops on the same values (autograd's upstream is -1/N as given): equal on any
        # CPU up to the rounding of -1/N itself.
        assert diff <= 1e-6 * max(1.0, float(np.abs(grad).max()))

    @case
    def half_precision_inputs_are_accepted():
        a = next(iter(images.values()))
        want, grad = model.score_grad_numpy(a)
        for dt, u in ((torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)):
            x = torch.from_numpy(a).to(dt).requires_grad_(True)
            s = quality_score(model, x)
            s.sum().backward()
            assert x.grad.dtype == dt and torch.isfinite(x.grad.float()).all()
            # Rounding the pixels to dt moves each by at most u of itself: the scores by at most
            # sum |grad x| u to first order (twice that covers the second order), plus the float32
            # runs' rounding, plus u |score|: quality_score returns the scores in the images' dtype.
            first_order = np.abs(grad * a).reshape(len(a), -1).sum(1) * u
            bound = 2 * first_order + 2 * rounding_tol(2.0**-24, 17, 4.0) + u * np.abs(want)
            diff = np.abs(s.detach().double().numpy() - want)
            print(f"  {dt}: max |score - float32 score| = {diff.max():.2e} (bound {bound.min():.1e})")
            assert (diff <= bound).all(), (diff, bound)

    @case
    def errors_raise_with_status_and_message():
        a = next(iter(images.values()))
        for call, status in [
            (lambda: model.set_prompt(b"\xff\xfe"), 3),
            (lambda: model.score_torch(torch.zeros(1, 8, 8, dtype=torch.int32)), 4),
            (lambda: model.score_numpy(np.full((1, 8, 8), np.nan, dtype=np.float32)), 2),
            (lambda: model.score_torch(torch.zeros(8, 8)), 7),
            (lambda: Model("/nonexistent/model"), 8),
        ]:
            try:
                call()
                raise AssertionError("no error")
            except LdctqError as e:
                print(f"  {e}")
                assert e.status == status, e
        assert model.score_numpy(a).shape == (a.shape[0],)  # still usable

    @case
    def cuda_tensors_stay_on_the_gpu():
        lib = ldctq_ffi.load_library()
        if not torch.cuda.is_available() or lib.ldctq_cuda_device_count() == 0:
            print("  skipped: no CUDA device")
            return
        mc = Model(args.model, device="cuda")
        assert mc.info()["device_type"] == ldctq_ffi.kDLCUDA
        for f, a in images.items():
            x = torch.from_numpy(a).cuda()
            s = mc.score_torch(x).numpy()
            want = np.array([ref[(f, i)] for i in range(a.shape[0])])
            # Two float32 runs on other kernels (CPU, CUDA): each within rounding_tol of the exact value.
            print(f"  {f}: CUDA vs CPU CLI max diff {np.abs(s - want).max():.2e}")
            assert np.abs(s - want).max() < 2 * rounding_tol(2.0**-24, 17, 4.0)
            xg = x.clone().requires_grad_(True)
            quality_score(mc, xg).sum().backward()
            assert xg.grad.device.type == "cuda"
            _, g_cpu = model.score_grad_numpy(a)
            g_tol = 2 * rounding_tol(2.0**-24, 34, float(np.abs(g_cpu).max()))
            assert (xg.grad.cpu() - torch.from_numpy(g_cpu)).abs().max().item() < g_tol
        # CPU tensors are copied to the CUDA model's device; their gradient comes back on the CPU.
        xc = torch.from_numpy(next(iter(images.values()))).requires_grad_(True)
        quality_score(mc, xc).sum().backward()
        assert xc.grad.device.type == "cpu"
        m64 = Model(args.model, device="cuda", dtype="float64")
        x = x0.cuda().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: quality_score(m64, t), (x,))

    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
