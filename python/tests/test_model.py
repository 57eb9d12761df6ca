"""QualityModel and QualityLoss: parity with the `ldctq score` CLI, gradients (gradcheck, dtypes,
shapes, ensembles), a denoiser trained through the loss, the settings, and memory over many calls."""

import json
import pickle
import resource

import pytest
import torch
from conftest import F32_BATCH_TOL, HU_MODEL, SEQ_MODEL, UNIT_MODEL, run_ldctq, write_tiffs

import ldctq


def test_import_and_info():
    m = ldctq.QualityModel(UNIT_MODEL)
    info = m.info
    assert info.input == "unit" and info.image_size == 16 and info.members == 1
    assert info.score_range == (0.0, 4.0) and info.higher_is_better
    assert info.device == torch.device("cpu") and info.dtype == torch.float32
    assert info.window == (-300.0, 1400.0)
    assert "QualityModel(" in repr(m)
    assert ldctq.__version__ == "0.1.0"


@pytest.mark.parametrize("model", [UNIT_MODEL, HU_MODEL], ids=["unit", "hu"])
def test_scores_equal_the_cli(tmp_path, model):
    """Files read and scored in Python score as `ldctq score` scores them (its JSON has full precision)."""
    paths = write_tiffs(tmp_path, 6, size=30)
    q = ldctq.QualityModel(model)
    cli = json.loads(run_ldctq("score", "--model", model, "--format", "json", *paths).stdout)["scores"]
    assert [(r["path"], r["frame"]) for r in cli] == [(str(p), 0) for p in paths]
    got = q.score(torch.cat([q.read(p) for p in paths]))  # one batch, as the CLI's (--batch 8)
    for row, s in zip(cli, got.tolist()):
        assert abs(s - row["score"]) <= 1e-6, (row, s)


def test_score_shapes_dtypes_and_devices(images):
    m = ldctq.QualityModel(UNIT_MODEL)
    s = m.score(images)
    assert s.shape == (4,) and s.dtype == torch.float32 and not s.requires_grad
    assert ((s >= 0) & (s <= 4)).all()
    torch.testing.assert_close(m.score(images[:, 0]), s, rtol=0, atol=0)  # (N, H, W) == (N, 1, H, W)
    for dtype, tol in [(torch.float64, 1e-6), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)]:
        torch.testing.assert_close(m.score(images.to(dtype)), s, rtol=0, atol=tol)
    assert m.score(images.to(torch.float64)).dtype == torch.float32
    # The score is per image: a batch scores as its images one by one.
    one_by_one = torch.cat([m.score(images[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(one_by_one, s, rtol=0, atol=F32_BATCH_TOL)


def test_gradcheck_float64_model():
    """The autograd node (the library's vector-Jacobian product) against finite differences: the full
    Jacobian of a batch of 2 (so a score depending on another image would fail) for the [0, 1] fixture,
    and random projections (fast mode) for the HU fixture (FiLM with a prompt, grid pooling) and the loss."""
    g = torch.Generator().manual_seed(1)
    unit = ldctq.QualityModel(UNIT_MODEL, dtype=torch.float64)
    x = (torch.rand(2, 1, 5, 6, generator=g, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(unit.score, (x,))
    hu = ldctq.QualityModel(HU_MODEL, dtype=torch.float64)
    x = (torch.rand(3, 9, 7, generator=g, dtype=torch.float64) * 1000 - 800).requires_grad_()  # inside the window
    assert torch.autograd.gradcheck(hu.score, (x,), fast_mode=True)
    assert torch.autograd.gradcheck(ldctq.QualityLoss(hu, reduction="sum"), (x,), fast_mode=True)


def test_loss_reductions_and_gradient_dtypes(images):
    m = ldctq.QualityModel(HU_MODEL)
    hu = images * 1400 - 1000
    s = m.score(hu)
    per = ldctq.QualityLoss(m, reduction="none")(hu)
    torch.testing.assert_close(per, 4 - s)
    torch.testing.assert_close(ldctq.QualityLoss(m)(hu), (4 - s).mean())
    torch.testing.assert_close(ldctq.QualityLoss(m, reduction="sum")(hu), (4 - s).sum())
    # Gradients in the images' dtype and shape, equal to the library's VJP with the upstream weights.
    u = torch.tensor([1.0, -2.0, 0.5, 3.0])
    _, want = m.score_and_grad(hu, u)
    for dtype in [torch.float32, torch.float64, torch.bfloat16]:
        x = hu.to(dtype).clone().requires_grad_()
        (m.score(x) * u.to(dtype)).sum().backward()
        assert x.grad.dtype == dtype and x.grad.shape == x.shape
        if dtype != torch.bfloat16:
            torch.testing.assert_close(x.grad.float(), want, rtol=1e-4, atol=1e-7)
    x = hu[:, 0].clone().requires_grad_()  # (N, H, W)
    ldctq.QualityLoss(m)(x).backward()
    assert x.grad.shape == (4, 20, 20) and x.grad.abs().sum() > 0


def test_ensemble_folder_scores_the_members_mean(tmp_path, images):
    ldctq.write_ensemble(tmp_path / "ens", [UNIT_MODEL, SEQ_MODEL])
    ens = ldctq.QualityModel(tmp_path / "ens")
    assert ens.info.members == 2 and ens.info.name.startswith("ldctq-film-ensemble")
    a, b = ldctq.QualityModel(UNIT_MODEL), ldctq.QualityModel(SEQ_MODEL)
    torch.testing.assert_close(ens.score(images), (a.score(images) + b.score(images)) / 2)
    x = images.clone().requires_grad_()
    ens.score(x).sum().backward()
    want = (a.score_and_grad(images)[1] + b.score_and_grad(images)[1]) / 2
    torch.testing.assert_close(x.grad, want)


def test_prompt_and_film_strength(images):
    m = ldctq.QualityModel(HU_MODEL)
    hu = images * 1400 - 1000
    assert m.prompt.startswith("Describe the visual beauty") and m.film_strength == pytest.approx(0.7)
    before = m.score(hu)
    m.prompt = "Rate this low-dose CT."
    assert m.prompt == "Rate this low-dose CT."
    changed = m.score(hu)
    assert (changed - before).abs().max() > 1e-6, "the prompt conditions the score"
    m.film_strength = 0.0
    off = m.score(hu)
    m.prompt = "Anything else"
    torch.testing.assert_close(m.score(hu), off, rtol=0, atol=0)  # s = 0: the prompt has no effect
    m.set_activation_checkpointing(1)
    x = hu.clone().requires_grad_()
    m.score(x).sum().backward()
    m.set_activation_checkpointing(0)
    torch.testing.assert_close(x.grad, m.score_and_grad(hu)[1], rtol=1e-5, atol=1e-8)


def test_pickled_models_reload_with_their_settings(images):
    m = ldctq.QualityModel(HU_MODEL, dtype=torch.float64)
    m.prompt, m.film_strength = "Rate this low-dose CT.", 0.3
    copy = pickle.loads(pickle.dumps(ldctq.QualityLoss(m, reduction="none")))
    assert (copy.model.prompt, copy.model.film_strength, copy.model.info.dtype) == (m.prompt, 0.3, torch.float64)
    hu = images * 1400 - 1000
    torch.testing.assert_close(copy(hu), 4 - m.score(hu), rtol=0, atol=0)


def test_a_denoiser_trains_with_the_loss():
    """A tiny residual CNN trained a few steps on the quality loss (plus fidelity) raises the score of its
    outputs; the criterion itself is frozen and gets no gradient."""
    torch.manual_seed(0)
    m = ldctq.QualityModel(SEQ_MODEL)
    quality = ldctq.QualityLoss(m)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
    noisy = (torch.rand(6, 1, 24, 24) * 0.5 + 0.25).clamp(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = noisy + net(noisy)
        loss = quality(out) + 0.1 * torch.nn.functional.mse_loss(out, noisy)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
        opt.step()
        losses.append(loss.item())
    print("losses", [round(v, 4) for v in losses])
    assert losses[-1] < losses[0] - 1e-3, losses
    assert list(quality.parameters()) == []


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_no_leak_over_1000_calls():
    """1,000 forward and backward passes through QualityLoss: resident memory stays bounded (an image
    batch kept per call would add 256 MB)."""
    loss_fn = ldctq.QualityLoss(ldctq.QualityModel(UNIT_MODEL))
    x = (torch.rand(4, 1, 128, 128) * 0.6 + 0.2).requires_grad_()

    def calls(n):
        for _ in range(n):
            loss_fn(x).backward()
        x.grad = None

    calls(100)  # warm-up: allocator pools and caches settle
    start = _rss_mb()
    calls(1000)
    grown = _rss_mb() - start
    print(f"RSS {start:.0f} MB, +{grown:.1f} MB over 1000 calls")
    assert grown < 20, f"RSS grew by {grown:.1f} MB over 1000 calls"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_scores_and_grads_match_cpu(images):
    """Untested here (no GPU on the development machine): a CUDA model reads CUDA tensors in place."""
    cpu, gpu = ldctq.QualityModel(UNIT_MODEL), ldctq.QualityModel(UNIT_MODEL, device="cuda")
    assert gpu.info.device == torch.device("cuda:0")
    x = images.cuda().requires_grad_()
    s = gpu.score(x)
    s.sum().backward()
    assert s.device.type == "cuda" and x.grad.device.type == "cuda"
    torch.testing.assert_close(s.cpu(), cpu.score(images), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad.cpu(), cpu.score_and_grad(images)[1], rtol=1e-3, atol=1e-5)


def test_quality_maps_equal_the_cli(tmp_path):
    """`QualityModel.quality_map` gives the maps `ldctq map` writes (npy), for every method; a bad
    method is an error naming it."""
    import numpy as np

    paths = write_tiffs(tmp_path, 2, size=30)
    q = ldctq.QualityModel(UNIT_MODEL)
    run_ldctq("map", "--model", UNIT_MODEL, "--out", tmp_path / "maps", "--method", "all", *paths)
    for p in paths:
        image = q.read(p)
        for method in ["intrinsic", "gradient", "occlusion", "smoothing"]:
            got = q.quality_map(image, method)
            assert got.shape == (1, 30, 30) and got.dtype == torch.float32
            want = torch.from_numpy(np.load(tmp_path / "maps" / f"{p.stem}.{method}.npy"))
            scale = want.abs().max().item()
            assert scale > 0, f"{method} map is all zero"
            torch.testing.assert_close(got[0], want, rtol=0, atol=F32_BATCH_TOL * max(scale, 1.0))
    with pytest.raises(ldctq.errors.InvalidInputError, match="map method"):
        q.quality_map(q.read(paths[0]), "saliency")


def _copy_model(src, dst, **changes):
    """A copy of a fixture model folder with its backbone made absolute and `changes` in ldctq.json."""
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "ldctq.json").read_text())
    cfg["backbone"] = str((src / cfg["backbone"]).resolve())
    cfg.update(changes)
    (dst / "ldctq.json").write_text(json.dumps(cfg))
    return dst


def test_anatomy_prompts(tmp_path):
    """A model with anatomy prompts scores with the anatomy chosen, as `ldctq score --anatomy`; the
    anatomy survives pickling; an unknown word is an error listing the known ones."""
    model = _copy_model(SEQ_MODEL, tmp_path / "anatomy", anatomies=["abdomen", "head"])
    paths = write_tiffs(tmp_path / "img", 3, size=20)
    m = ldctq.QualityModel(model)
    assert (m.info.anatomies, m.info.prompt_mode, m.anatomy) == (["abdomen", "head"], "text", None)
    x = torch.cat([m.read(p) for p in paths])
    plain = m.score(x)
    m.anatomy = "head"
    head = m.score(x)
    assert (head - plain).abs().max() > 1e-6, "the anatomy word changes the conditioning"
    cli = json.loads(run_ldctq("score", "--model", model, "--anatomy", "head", "--format", "json", *paths).stdout)
    for row, s in zip(cli["scores"], head.tolist()):
        assert abs(s - row["score"]) <= 1e-6, (row, s)
    assert pickle.loads(pickle.dumps(m)).anatomy == "head"
    with pytest.raises(ldctq.errors.InvalidInputError, match="abdomen, head"):
        m.anatomy = "chest"
    m.anatomy = None
    torch.testing.assert_close(m.score(x), plain, rtol=0, atol=0)
    with pytest.raises(ldctq.errors.InvalidInputError, match="no anatomy prompts"):
        ldctq.QualityModel(SEQ_MODEL).anatomy = "head"


def test_learned_prompt_model(tmp_path):
    """A folder with a learned prompt (prompt.safetensors) loads and scores as the CLI scores it; a
    text prompt replaces it; a missing prompt file is an error naming it."""
    from safetensors.torch import save_file

    model = _copy_model(SEQ_MODEL, tmp_path / "learned", prompt_mode="learned", prompt="")
    g = torch.Generator().manual_seed(0)
    save_file({"prompt.context": 0.02 * torch.randn(4, 32, generator=g)}, model / "prompt.safetensors")
    paths = write_tiffs(tmp_path / "img", 2, size=20)
    m = ldctq.QualityModel(model)
    assert m.info.prompt_mode == "learned" and m.prompt == ""
    x = torch.cat([m.read(p) for p in paths])
    learned = m.score(x)
    cli = json.loads(run_ldctq("score", "--model", model, "--format", "json", *paths).stdout)["scores"]
    for row, s in zip(cli, learned.tolist()):
        assert abs(s - row["score"]) <= 1e-6, (row, s)
    m.prompt = ldctq.QualityModel(SEQ_MODEL).prompt
    assert m.info.prompt_mode == "text"
    torch.testing.assert_close(m.score(x), ldctq.QualityModel(SEQ_MODEL).score(x), rtol=0, atol=0)
    assert (m.score(x) - learned).abs().max() > 1e-6
    (model / "prompt.safetensors").unlink()
    with pytest.raises(ldctq.errors.NotFoundError, match="prompt.safetensors"):
        ldctq.QualityModel(model)
