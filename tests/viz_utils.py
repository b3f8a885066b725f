"""Tiny saved models, a tiny synthetic dataset and tool loading for the predict/visualize tests."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import ModuleType

import torch

from vivit_tl.checkpoint import save_model_file
from vivit_tl.data import DataConfig, build_dataset, dataset_root, prepare_dataset
from vivit_tl.models import create_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, pool="gap")


def load_tool(name: str) -> ModuleType:
    """The module of ``vivit-tl <name>`` (``vivit_tl.cli.<name>``; its ``main(argv)`` is callable in-process)."""
    return importlib.import_module(f"vivit_tl.cli.{name}")


def synthetic_config(cache_dir: Path, **overrides) -> DataConfig:
    """A tiny synthetic dataset (32 px, 8 frames, one video per class and split), 4-frame clips."""
    spec = dict(size=32, frames=8, train_per_class=1, val_per_class=1, workers=0)
    return DataConfig.from_dict({**dict(kind="synthetic", cache_dir=str(cache_dir), synthetic=spec, num_frames=4,
                                        frame_stride=2, image_size=32, short_side=32, hflip=False, num_workers=0),
                                 **overrides})


def synthetic_videos(cfg: DataConfig, split: str = "val") -> list[Path]:
    """Generate the dataset if needed; the paths of one split's videos."""
    prepare_dataset(cfg)
    return [dataset_root(cfg) / name for name in build_dataset(cfg, split, train=False).video_names]


def save_tiny_model(directory: Path, cfg: DataConfig, classes: list[str], seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny model with ``cfg`` as its preprocessing; returns ``directory``."""
    torch.manual_seed(seed)
    model = create_model("vivit_ti16x2", num_classes=len(classes), num_frames=cfg.num_frames,
                         image_size=cfg.image_size, **{**TINY_MODEL, **overrides})
    save_model_file(directory, model, classes=classes, data_config=cfg, step=0, epoch=0)
    return directory


def viewer_page_data(path: Path) -> dict:
    """The JSON payload embedded in an attention viewer page (``vivit_tl.viz.viewer``)."""
    text = Path(path).read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', text, re.S)[1])
