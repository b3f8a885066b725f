"""Does a learned token look at the moving object? A measurement on the synthetic dataset.

For every val video the ground-truth boxes (`vivit_tl.data.synthetic.load_boxes`, pixels of the
stored frames) are taken at the frames each evaluation view samples, averaged over the frames of
each tubelet step, enlarged by a margin, drawn as masks and sent through the same evaluation
resize/crop as the frames (so masks and model input share one geometry). Then, per TokenLearner
layer, the share of attention mass inside the mask (`attention_in_mask`) is compared with the
share of the frame the mask covers (what uniform attention would put inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vivit_tl.data import DataConfig, read_video_views
from vivit_tl.data.datasets import eval_views
from vivit_tl.data.decoding import probe_size
from vivit_tl.data.sampling import eval_clip_indices
from vivit_tl.data.synthetic import load_boxes
from vivit_tl.viz.boxes import attention_in_mask, box_masks, step_boxes


@dataclass
class LayerShare:
    """Attention inside the object box for one TokenLearner layer, averaged over all maps.

    Attributes:
        layer: TokenLearner layer index (model order).
        mass: mean share of a map's attention mass inside the box (over videos, views, steps, tokens).
        area: mean share of the frame the box covers (the uniform-attention baseline).
        token_mass: ``mass`` per learned token.
    """

    layer: int
    mass: float
    area: float
    token_mass: list[float]

    @property
    def ratio(self) -> float:
        """``mass / area``: 1 is chance, higher means attention concentrates on the object."""
        return self.mass / self.area

    @property
    def best_token(self) -> int:
        return int(np.argmax(self.token_mass))

    def as_dict(self) -> dict:
        return {"layer": self.layer, "mass_in_box": self.mass, "box_area": self.area, "ratio": self.ratio,
                "best_token": self.best_token, "best_token_mass": self.token_mass[self.best_token],
                "best_token_ratio": self.token_mass[self.best_token] / self.area, "token_mass": self.token_mass}


def view_box_masks(path: str | Path, cfg: DataConfig, num_steps: int, margin: float) -> np.ndarray:
    """Object masks of every evaluation view of a synthetic video, one per tubelet step.

    Args:
        path: a synthetic video (its ``.boxes.json`` lies next to it).
        cfg: the data config the views are made with (frames, stride, clips, crops, sizes).
        num_steps: tubelet time steps T of the model (``cfg.num_frames`` must be a multiple).
        margin: pixels of the model input added to every side of every box.

    Returns:
        bool ``[V, T, S, S]`` in the geometry of ``read_video_views(path, cfg)`` (S = image_size).
    """
    boxes = load_boxes(path)  # [N, 4] in stored pixels
    width, height = probe_size(str(path))
    clips = eval_clip_indices(len(boxes), cfg.num_frames, cfg.frame_stride, cfg.num_eval_clips,
                              cfg.short_video)  # [K, F]
    per_step = np.stack([step_boxes(boxes[clip], cfg.num_frames // num_steps) for clip in clips])  # [K, T, 4]
    resized_short = cfg.image_size if cfg.eval_whole_frame else cfg.short_side
    stored_margin = margin * min(width, height) / resized_short
    masks = box_masks(per_step.reshape(-1, 4), (height, width), stored_margin)  # [K * T, H, W]
    frames = np.repeat(masks.reshape(len(clips), num_steps, height, width, 1), 3, axis=-1)  # [K, T, H, W, 3]
    _, raw = eval_views(frames.astype(np.uint8) * 255, cfg)  # [V, T, S, S, 3]
    return raw[..., 0].numpy() >= 128  # [V, T, S, S]


@torch.inference_mode()
def measure_box_attention(
    model: nn.Module,
    cfg: DataConfig,
    videos: Iterable[str | Path],
    margin: float | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[LayerShare]:
    """Per TokenLearner layer, the attention mass inside the moving object's box vs its area.

    Args:
        model: a model with TokenLearner layers (``model(x, return_maps=True)``), in eval mode.
        cfg: the data config of the model's preprocessing.
        videos: synthetic video paths (with box files).
        margin: pixels of the model input added to every box side; default half a token-grid cell
            (a map cannot place mass more precisely than one cell).
        batch_size: views per forward pass.

    Returns:
        One `LayerShare` per TokenLearner layer.
    """
    videos = list(videos)
    if not videos:
        raise ValueError("no videos to measure")
    mass_sum: list[np.ndarray] = []  # per layer: [S] summed over maps
    area_sum = 0.0
    count = 0  # (view, step) pairs
    for path in tqdm(videos, desc="box check", unit="video", disable=not progress):
        views = read_video_views(path, cfg)  # [V, 3, F, S, S]
        outputs = [model(chunk, return_maps=True)[1] for chunk in views.split(batch_size)]
        maps = [torch.cat(layer) for layer in zip(*outputs)]  # per layer [V, T, S, Hg, Wg]
        if not maps:
            raise ValueError("the model has no TokenLearner layer: there are no attention maps to measure")
        num_steps, grid_h = maps[0].shape[1], maps[0].shape[3]
        cell_margin = margin if margin is not None else cfg.image_size / grid_h / 2
        masks = view_box_masks(path, cfg, num_steps, cell_margin)  # [V, T, S, S]
        if not mass_sum:
            mass_sum = [np.zeros(layer.shape[2]) for layer in maps]
        for layer, layer_maps in enumerate(maps):
            for view_maps, view_masks in zip(layer_maps, masks):
                mass, area = attention_in_mask(view_maps, view_masks)  # [T, S], [T]
                mass_sum[layer] += mass.sum(axis=0)
                if layer == 0:
                    area_sum += area.sum()
                    count += len(area)
    return [
        LayerShare(layer, float(sums.mean() / count), area_sum / count, (sums / count).tolist())
        for layer, sums in enumerate(mass_sum)
    ]
