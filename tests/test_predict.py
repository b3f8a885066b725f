"""vivit_tl.predict and tools/predict.py: multi-view top-k, JSON output, unreadable files."""

from __future__ import annotations

import json

import pytest
import torch

from vivit_tl.data.synthetic import CLASSES
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
