"""benchmarks/bench_models.py: the contenders are the same model as ours, the cost and memory measures are
right, and the smoke preset runs end to end (tiny models, a few seconds plus one memory subprocess)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_models as bench  # noqa: E402

from vivit_tl.models import build_model  # noqa: E402
from vivit_tl.models.flops import count_flops  # noqa: E402

SMOKE = bench.PRESETS["smoke"]


def _smoke_pair(impl: str) -> tuple[bench.Spec, bench.Spec]:
    specs = [s for group in SMOKE.groups.values() for s in group]
    other = next(s for s in specs if s.impl == impl)
    return next(s for s in specs if s.label == other.compare_to), other


@pytest.mark.parametrize("impl", ["transformers", "timm"])
def test_contender_is_the_same_model(impl):
    """Same parameter count and GFLOPs, and after converting its weights into ours, the same logits."""
    pytest.importorskip(impl)
    from vivit_tl.pretrained import convert_hf_vivit, convert_timm_vit

    ours_spec, spec = _smoke_pair(impl)
    assert bench.count_cost(spec) == pytest.approx(bench.count_cost(ours_spec))
    torch.manual_seed(0)
    other = bench.build(spec).eval()
    with torch.no_grad():
        for p in other.parameters():  # move away from the init (zero tables, unit norms) so every tensor matters
            p.add_(0.1 * torch.randn_like(p))
    convert = convert_hf_vivit if impl == "transformers" else convert_timm_vit
    ours = build_model(ours_spec.config()).eval()
    ours.load_state_dict(convert(other.state_dict(), ours_spec.config()).state, strict=True)
    x = bench.make_input(ours_spec)
    x_other = x.transpose(1, 2) if impl == "transformers" else x[:, :, 0]  # [B, F, 3, H, W] / [B, 3, H, W]
    assert bench.make_input(spec).shape == x_other.shape
    with torch.no_grad():
        torch.testing.assert_close(ours(x), bench.logits_of(spec, other, x_other), atol=1e-4, rtol=1e-4)


def test_count_cost_agrees_with_the_flops_tool():
    spec = next(s for s in SMOKE.groups["video"] if s.overrides.get("token_learner_placement") == "fuse")
    with torch.device("meta"):
        model = build_model(spec.config())
    cost = bench.count_cost(spec)
    assert cost["gflops"] == pytest.approx(count_flops(model, spec.frames, spec.size, spec.batch)["gflops"])
    assert 2.5 < cost["train_gflops"] / cost["gflops"] < 3.5  # backward ~ twice the forward


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_cpu_peak_memory_sees_a_64_mib_tensor():
    def allocate():
        torch.ones(16 * 2**20)  # 64 MiB, freed on return: only the peak remembers it

    assert 60 <= bench._peak_cpu(allocate) <= 96
    assert bench._peak_cpu(lambda: None) < 8


def test_comparisons_are_paired_ratios():
    rows = [dict(label="a", impl="vivit-tl", compare_to=None, gflops=10.0, train_gflops=30.0, mem_train_mib=100.0),
            dict(label="b", impl="timm", compare_to="a", target=1.0),
            dict(label="c", impl="vivit-tl", compare_to="a", target=0.9, gflops=5.0, train_gflops=15.0,
                 mem_train_mib=60.0)]
    times = {"a": [1.0, 2.0, 1.0], "b": [1.2, 2.0, 0.9], "c": [0.5, 1.25, 0.5]}
    for row in rows:
        for k in bench.MEASURES:
            row[f"{k}_samples"] = times[row["label"]]
    thr, tl = bench.compare(rows)
    assert thr["infer"] == pytest.approx({"ratio": 1.0, "min": 0.9, "max": 1.2})  # timm time / ours, per repeat
    assert thr["met"] is True
    assert tl["infer"]["flop_reduction"] == 2.0 and tl["infer"]["speedup"]["ratio"] == 2.0
    assert tl["train"]["efficiency"] == 1.0 and tl["mem_train_ratio"] == 0.6 and tl["met"] is True


def test_smoke_preset_end_to_end(tmp_path):
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--preset", "smoke", "--threads", "1", "--repeats", "2", "--profile",
                           "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "results.json").read_text())
    labels = [s.label for group in SMOKE.groups.values() for s in group]
    assert [r["label"] for r in result["rows"]] == labels
    specs = {s.label: s for group in SMOKE.groups.values() for s in group}
    for row in result["rows"]:
        spec = specs[row["label"]]
        assert row["infer_s"] > 0 and row["train_s"] > 0 and len(row["infer_samples"]) == 2
        assert row["gflops"] > 0 and row["params"] > 0
        assert (row["frames"], row["size"], row["batch"], row["dtype"], row["device"]) == (
            spec.frames, spec.size, spec.batch, "fp32", "cpu")
        assert row["mem_train_mib"] is not None and row["mem_train_mib"] > -8
    kinds = [c["kind"] for c in result["comparisons"]]
    assert kinds.count("throughput") == 2 and kinds.count("tokenlearner") == 2
    for c in result["comparisons"]:
        if c["kind"] == "tokenlearner":
            assert c["infer"]["flop_reduction"] > 1 and c["mem_train_ratio"] is not None
    assert result["machine"]["threads"] == 1
    markdown = (tmp_path / "results.md").read_text()
    assert all(f"| {label} |" in markdown for label in labels)
    assert "met**" in markdown and (tmp_path / "speedup_vs_flops.png").stat().st_size > 0
    profiles = (tmp_path / "profiles.md").read_text()
    assert all(f"## {label}\n" in profiles for label in labels) and "aten::addmm" in profiles


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="nope"):
        bench.main(["--preset", "smoke", "--groups", "nope"])
    with pytest.raises(ValueError, match="repeats"):
        bench.main(["--preset", "smoke", "--repeats", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            bench.main(["--preset", "smoke", "--device", "cuda"])
    tl_spec = next(s for s in SMOKE.groups["video"] if "token_learner" in s.overrides)
    with pytest.raises(ValueError, match="class token"):
        bench.transformers_config(tl_spec.config())
