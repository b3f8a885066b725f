"""Run a saved model on files: multi-view class probabilities and the top-k labels.

    from vivit_tl.predict import Predictor
    predictor = Predictor.load("runs/demo/best")
    result = predictor.predict_file("clip.mp4")   # {"file", "views", "top": [{"label", "prob"}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vivit_tl.checkpoint import load_model_file
from vivit_tl.data import DataConfig, read_video_views


@dataclass
class Predictor:
    """A model in eval mode together with what it needs to read files the way it was trained."""

    model: nn.Module
    classes: list[str]
    data_config: DataConfig
    info: dict[str, Any]

    @classmethod
    def load(cls, checkpoint: str | Path) -> Predictor:
        """Load a model folder, its model file, a run directory or ``hf:<repo id>`` (see ``load_model_file``)."""
        model, info = load_model_file(checkpoint)
        return cls(model, list(info["classes"]), DataConfig.from_dict(info["data_config"]), info)

    def read(self, path: str | Path, return_frames: bool = False):
        """The evaluation views of one file, ``[V, 3, F, H, W]`` (and the uint8 frames ``[V, F, H, W, 3]``)."""
        return read_video_views(path, self.data_config, return_frames=return_frames)

    @torch.inference_mode()
    def view_logits(self, views: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Logits ``[V, K]`` of views ``[V, 3, F, H, W]``, run ``batch_size`` views at a time."""
        return torch.cat([self.model(chunk) for chunk in views.split(batch_size)])

    def probabilities(self, views: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Class probabilities ``[K]`` of one file: softmax of the view-averaged logits.

        Averaging logits over the views (then one softmax) is the multi-view protocol of the ViViT
        evaluation (SPEC §2), so the top-1 here is the evaluator's prediction.
        """
        return self.view_logits(views, batch_size).float().mean(dim=0).softmax(dim=-1)

    def top_k(self, probs: torch.Tensor, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` most probable labels (fewer when there are fewer classes), most probable first."""
        values, indices = probs.topk(min(k, len(probs)))
        return [{"label": self.classes[i], "prob": round(float(p), 6)} for p, i in zip(values, indices.tolist())]

    def predict_file(self, path: str | Path, k: int = 5, batch_size: int = 8) -> dict[str, Any]:
        """Top-k prediction for one file: ``{"file", "views", "top": [{"label", "prob"}, ...]}``."""
        views = self.read(path)
        return {"file": str(path), "views": len(views), "top": self.top_k(self.probabilities(views, batch_size), k)}
