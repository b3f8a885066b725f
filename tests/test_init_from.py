"""``model.init_from``: the trainer loads pretrained weights (here a vivit-tl model folder) before training."""

from __future__ import annotations

import torch

from test_train import TINY_CONFIG, run_tool, weights
from vivit_tl.config import load_config


def test_init_from_parses_and_round_trips(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(cache=tmp_path / "cache", runs=tmp_path / "runs"))
    cfg = load_config(path, ["model.init_from=timm:vit_tiny_patch16_224"])
    assert cfg.model.init_from == "timm:vit_tiny_patch16_224"
    assert "init_from" not in cfg.model.overrides
    cfg.save(tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml").model.init_from == "timm:vit_tiny_patch16_224"


def test_train_starts_from_init_weights(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(cache=tmp_path / "cache", runs=tmp_path / "runs"))
    source = run_tool("tools/train.py", "--config", str(path), "run.name=source", "optim.epochs=1")
    assert source.returncode == 0, source.stderr[-3000:]
    source_dir = tmp_path / "runs" / "source"
    # lr 0: training leaves the weights as loaded, so the result equals the source model exactly
    # (without init_from it would be the seed's random initialisation, not the trained source)
    frozen = run_tool("tools/train.py", "--config", str(path), "run.name=frozen", "optim.epochs=1", "optim.lr=0",
                      f"model.init_from={source_dir / 'last'}")
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    assert "init_from" in frozen.stdout + frozen.stderr
    a, b = weights(source_dir), weights(tmp_path / "runs" / "frozen")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
