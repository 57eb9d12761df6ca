"""ldctq.ray on a local Ray cluster started here (2 CPUs, 2 actors): scores of a few hundred generated
slices, and the benchmark's scoring stage, equal a single-process run image for image (to f32 rounding
across batch compositions, conftest.F32_BATCH_TOL)."""

import json

import pytest
import torch
from conftest import F32_BATCH_TOL, SEQ_MODEL, run_ldctq, write_tiffs

import ldctq

ray = pytest.importorskip("ray")
import ldctq.ray  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


def test_score_dataset_equals_a_single_process(cluster, tmp_path):
    paths = write_tiffs(tmp_path / "slices", 300, size=24)
    df = ldctq.ray.score_dataset(paths, SEQ_MODEL, num_workers=2, batch_size=16)
    assert list(df.columns) == ["path", "frame", "score"] and len(df) == 300
    assert df["path"].tolist() == [str(p) for p in paths], "input order"
    model = ldctq.QualityModel(SEQ_MODEL)
    single = torch.cat([model.score(torch.stack([model.read(p)[0] for p in paths[i : i + 32]])) for i in range(0, 300, 32)])
    diff = (torch.tensor(df["score"].to_numpy()) - single.double()).abs().max().item()
    print(f"max |ray - single| over 300 slices: {diff:.2e}")
    assert diff <= F32_BATCH_TOL
    # A Ray Dataset with a path column, and a folder, give the same.
    ds = ray.data.from_items([{"path": str(p)} for p in paths[:40]])
    df2 = ldctq.ray.score_dataset(ds, SEQ_MODEL, num_workers=1, batch_size=8)
    assert df2["path"].tolist() == [str(p) for p in paths[:40]]
    assert (df2["score"].to_numpy() - df["score"].to_numpy()[:40]).__abs__().max() <= F32_BATCH_TOL
    df3 = ldctq.ray.score_dataset([tmp_path / "slices"], SEQ_MODEL, num_workers=2, batch_size=64)
    assert df3["path"].tolist() == df["path"].tolist()
    with pytest.raises(ldctq.errors.InvalidInputError):
        ldctq.ray.score_dataset(paths, SEQ_MODEL, num_workers=0)


def test_score_benchmark_equals_ldctq_bench(cluster, tmp_path):
    data, out = tmp_path / "sim", tmp_path / "bench"
    run_ldctq("simulate", "--count", "10", "--size", "48", "--doses", "0.25,0.1", "--views", "180", "--seed", "2", "--out", data)
    run_ldctq("bench", "--model", SEQ_MODEL, "--data", data, "--out", out, "--batch", "4", "--bootstrap", "10",
              "--denoiser", 'smooth=gaussian:{"sigma":0.8}', "--save-images")
    summary = json.loads((out / "summary.json").read_text())
    want = {m["name"]: m["scores"] for m in summary["methods"]}
    df = ldctq.ray.score_benchmark(data, SEQ_MODEL, num_workers=2, batch_size=3, outputs={"smooth": out / "images" / "smooth"})
    assert list(df.columns) == ["file", "frame", "label", "score_input", "score_reference", "score_smooth"]
    assert df["file"].tolist() == [r["file"] for r in summary["images"]]
    for method in ["input", "reference", "smooth"]:
        got, ref = df[f"score_{method}"].to_numpy(), want[method]
        assert len(got) == len(ref) == 10
        assert max(abs(g - r) for g, r in zip(got, ref)) <= F32_BATCH_TOL, method
