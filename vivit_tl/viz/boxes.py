"""How much TokenLearner attention falls inside a ground-truth box, against uniform attention.

For each map (one learned token at one tubelet step) the map is upsampled bilinearly to the frame
size and read as a distribution over pixels (v1 sigmoid maps are divided by their sum, v1.1 maps
already sum to 1). Its *mass share* is the part of that distribution inside the object's box; the
*area share* is the part of the frame the box covers, i.e. the mass share of uniform attention.
A ratio mass / area above 1 means the token looks at the object more than chance.
"""

from __future__ import annotations

import numpy as np
import torch

from vivit_tl.viz.render import upsample_maps


def step_boxes(frame_boxes: np.ndarray, tubelet_size: int) -> np.ndarray:
    """Average per-frame boxes ``[F, 4]`` over the frames of each tubelet step -> ``[F / tubelet, 4]``."""
    frame_boxes = np.asarray(frame_boxes, dtype=np.float64)
    if frame_boxes.ndim != 2 or frame_boxes.shape[1] != 4 or len(frame_boxes) % tubelet_size:
        raise ValueError(
            f"boxes must be [F, 4] with F divisible by the tubelet size {tubelet_size}, got {frame_boxes.shape}"
        )
    return frame_boxes.reshape(-1, tubelet_size, 4).mean(axis=1)  # [T, 4]


def box_masks(boxes: np.ndarray, size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """Boolean pixel masks ``[N, H, W]`` of boxes ``[N, 4]`` (x0, y0, x1, y1 in pixels).

    A pixel is inside when its centre is; every side is moved out by ``margin`` pixels.
    """
    height, width = size
    boxes = np.asarray(boxes, dtype=np.float64)
    x0, y0, x1, y1 = (boxes[:, i, None] for i in range(4))  # each [N, 1]
    xs = np.arange(width) + 0.5  # pixel centres
    ys = np.arange(height) + 0.5
    inside_x = (xs >= x0 - margin) & (xs <= x1 + margin)  # [N, W]
    inside_y = (ys >= y0 - margin) & (ys <= y1 + margin)  # [N, H]
    return inside_y[:, :, None] & inside_x[:, None, :]  # [N, H, W]


def attention_in_mask(maps: np.ndarray | torch.Tensor, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of each map's attention mass inside its step's mask, and the share of the frame the mask covers.

    Args:
        maps: ``[T, S, Hg, Wg]`` non-negative attention maps of one clip.
        masks: ``[T, H, W]`` boolean object masks in frame pixels, one per tubelet step.

    Returns:
        ``mass`` ``[T, S]`` in [0, 1] (0 for a map without mass) and ``area`` ``[T]`` in [0, 1]
        (the mass share of uniform attention).
    """
    if maps.ndim != 4 or masks.ndim != 3 or len(masks) != maps.shape[0]:
        raise ValueError(f"need maps [T, S, Hg, Wg] and masks [T, H, W], got {tuple(maps.shape)} and {masks.shape}")
    heat = np.clip(upsample_maps(maps, masks.shape[-2:]), 0.0, None)  # [T, S, H, W]
    total = heat.sum(axis=(-2, -1))  # [T, S]
    inside = (heat * masks[:, None]).sum(axis=(-2, -1))  # [T, S]
    mass = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return mass, masks.mean(axis=(-2, -1))


def attention_in_box(
    maps: np.ndarray | torch.Tensor,
    boxes: np.ndarray,
    size: tuple[int, int],
    margin: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """`attention_in_mask` for boxes ``[T, 4]`` (x0, y0, x1, y1 in pixels of frames of ``size``),
    each side moved out by ``margin`` pixels."""
    return attention_in_mask(maps, box_masks(boxes, size, margin))
