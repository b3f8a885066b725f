"""vivit_tl.predict and vivit-tl predict: multi-view top-k, JSON output, unreadable files, devices, batching."""

from __future__ import annotations

import json

import pytest
import torch

from vivit_tl.data.synthetic import CLASSES
from vivit_tl.errors import UserError
from vivit_tl.predict import Predictor

from viz_utils import load_tool, save_tiny_model, synthetic_config, synthetic_videos


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    cfg = synthetic_config(root / "cache", eval_clips=2, eval_crops=3)  # 6 views per video
    videos = synthetic_videos(cfg)
    model = save_tiny_model(root / "model", cfg, list(CLASSES), token_learner="v1.1", num_tokens=2)
    return dict(root=root, cfg=cfg, videos=videos, model=model)


def test_probabilities_average_the_view_logits(run):
    predictor = Predictor.load(run["model"])
    views = predictor.read(run["videos"][0])
    assert views.shape[0] == 6
    with torch.inference_mode():
        expected = predictor.model(views).mean(dim=0).softmax(dim=-1)
    probs = predictor.probabilities(views, batch_size=4)  # two forward passes
    assert torch.allclose(probs, expected, atol=1e-6)
    top = predictor.top_k(probs, k=20)
    assert [t["label"] for t in top] == [CLASSES[i] for i in expected.argsort(descending=True)]  # all 8


def test_predict_json(run, capsys):
    videos = [str(v) for v in run["videos"][:2]]
    assert load_tool("predict").main([str(run["model"]), *videos, "--json", "--top-k", "3"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == videos
    for result in results:
        assert result["views"] == 6 and len(result["top"]) == 3
        probs = [t["prob"] for t in result["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert {t["label"] for t in result["top"]} <= set(CLASSES)


def test_predict_text_and_unreadable_file(run, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    status = load_tool("predict").main([str(run["model"]), str(broken), str(run["videos"][1])])
    out, err = capsys.readouterr()
    assert status == 2  # a file failed, the others were still predicted
    assert f"{run['videos'][1]} (6 views)" in out and "  1. " in out and "  5. " in out and "  6. " not in out
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 2
    assert error_lines[0].startswith(f"error: {broken}: not a video")  # the path once, then the reason
    assert error_lines[1] == "error: 1 of 2 file(s) could not be read"


def test_predict_json_reports_errors_per_file(run, tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    assert load_tool("predict").main([str(run["model"]), str(missing), "--json"]) == 2
    (result,) = json.loads(capsys.readouterr().out)
    assert result["file"] == str(missing) and "missing" in result["error"]


def predict_json(capsys, *args: str) -> tuple[int, list[dict]]:
    status = load_tool("predict").main([*args, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_device_cpu_and_auto_give_the_same_top1(run, capsys):
    videos = [str(v) for v in run["videos"][:3]]
    _, on_cpu = predict_json(capsys, str(run["model"]), *videos, "--device", "cpu")
    _, on_auto = predict_json(capsys, str(run["model"]), *videos, "--device", "auto")  # the GPU where there is one
    assert [r["top"][0]["label"] for r in on_cpu] == [r["top"][0]["label"] for r in on_auto]
    for a, b in zip(on_cpu, on_auto):
        assert [t["prob"] for t in a["top"]] == pytest.approx([t["prob"] for t in b["top"]], abs=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_device_cuda_matches_cpu(run, dtype):
    video = run["videos"][0]
    on_cpu = Predictor.load(run["model"], device="cpu")
    views = on_cpu.read(video)
    predictor = Predictor.load(run["model"], device="cuda", dtype=dtype)
    assert next(predictor.model.parameters()).is_cuda
    reference, probs = on_cpu.probabilities(views), predictor.probabilities(views)
    assert probs.device.type == "cpu" and probs.dtype == torch.float32
    assert torch.allclose(probs, reference, atol=1e-4 if dtype == "float32" else 2e-2)


def test_cpu_dtypes(run):
    """bfloat16 autocast runs on the CPU (close to float32); float16 and CUDA-less cuda are one-line errors."""
    video = run["videos"][0]
    full = Predictor.load(run["model"], device="cpu")
    half = Predictor.load(run["model"], device="cpu", dtype="bfloat16")
    views = full.read(video)
    assert half.dtype == torch.bfloat16 and half.forward(views[:1]).dtype == torch.bfloat16  # autocast is on
    assert torch.allclose(half.probabilities(views), full.probabilities(views), atol=2e-2)
    with pytest.raises(UserError, match="float16 needs a CUDA device"):
        Predictor.load(run["model"], device="cpu", dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            Predictor.load(run["model"], device="cuda")


def test_batches_across_files_match_one_file_at_a_time(run, tmp_path):
    """6 views per file in passes of 4: passes span files; readers in 2 worker processes; a bad file in between."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    good = [str(v) for v in run["videos"][:3]]
    paths = [good[0], str(broken), good[1], good[2], str(tmp_path / "missing.mp4")]
    predictor = Predictor.load(run["model"])
    results = list(predictor.predict_files(paths, k=8, batch_size=4, workers=2))
    assert [r["file"] for r in results] == paths
    assert results[1]["error"].startswith(f"{broken}: not a video") and "missing.mp4" in results[4]["error"]
    for result in (results[0], results[2], results[3]):
        alone = predictor.predict_file(result["file"], k=8, batch_size=6)
        assert result["views"] == 6 and [t["label"] for t in result["top"]] == [t["label"] for t in alone["top"]]
        assert [t["prob"] for t in result["top"]] == pytest.approx([t["prob"] for t in alone["top"]], abs=1e-5)


def test_bad_file_among_good_ones_with_workers(run, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    videos = [str(v) for v in run["videos"][:2]]
    status, results = predict_json(capsys, str(run["model"]), videos[0], str(broken), videos[1], "--workers", "2",
                                   "--batch-size", "5")
    assert status == 2 and [r["file"] for r in results] == [videos[0], str(broken), videos[1]]
    assert "error" in results[1] and all(len(results[i]["top"]) == 5 for i in (0, 2))
