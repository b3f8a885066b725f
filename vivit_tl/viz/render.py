"""Render TokenLearner attention maps over video frames: a PNG grid and an animated GIF.

Inputs are plain arrays, independent of any model:

- ``frames``: ``[F, H, W, 3]`` uint8, the (un-normalised) frames of one clip;
- ``maps``: ``[T, S, Hg, Wg]`` (numpy or torch), one map per learned token per tubelet step, with
  ``T = F / tubelet_size``. Tubelet step ``t`` covers frames ``[t * tubelet_size, (t + 1) * tubelet_size)``.

Maps are upsampled bilinearly to the frame size and each map is rescaled to [0, 1] by its own
minimum and maximum for display (TokenLearner v1 maps are sigmoids in [0, 1], v1.1 maps sum to 1
over space; both are often nearly flat, and min-max scaling shows where each map peaks). Because
that scaling hides how flat a map is, the grid labels every token row with the map's peak-to-mean
ratio averaged over time (1 = uniform attention). The colour is blended in proportion to the
attention, so the frame stays visible where a token does not look.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

COLORMAP = "jet"
OVERLAY_ALPHA = 0.7
MIN_PANEL_PX = 128  # GIF panels are enlarged (by an integer factor) to at least this side
TIMELINE_PX = 6  # height of the GIF's progress bar
LABEL_PX = 11  # font size of the GIF's panel labels
TIMELINE_COLOR = (255, 255, 255)


def check_clip(frames: np.ndarray, maps: np.ndarray | torch.Tensor, tubelet_size: int) -> None:
    """Raise ValueError unless ``frames`` ``[F, H, W, 3]`` and ``maps`` ``[T, S, Hg, Wg]`` fit together."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {tuple(frames.shape)}")
    if maps.ndim != 4:
        raise ValueError(f"maps must be [T, S, Hg, Wg], got shape {tuple(maps.shape)}")
    if frames.shape[0] != maps.shape[0] * tubelet_size:
        raise ValueError(
            f"{frames.shape[0]} frames do not match {maps.shape[0]} map time steps x tubelet size {tubelet_size}"
        )


def upsample_maps(maps: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Upsample maps ``[..., Hg, Wg]`` bilinearly to ``[..., H, W]`` (float32 numpy)."""
    grid = torch.as_tensor(maps, dtype=torch.float32).detach().cpu()
    lead = grid.shape[:-2]
    flat = grid.reshape(-1, 1, *grid.shape[-2:])  # [N, 1, Hg, Wg]
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)  # [N, 1, H, W]
    return up.reshape(*lead, *size).numpy()  # [..., H, W]


def normalize_minmax(maps: np.ndarray) -> np.ndarray:
    """Rescale each map ``[..., H, W]`` to [0, 1] (min -> 0, max -> 1); a constant map becomes all 0."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    return (maps - low) / np.where(span > 0, span, 1.0)


def peak_to_mean(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """How concentrated each map ``[..., Hg, Wg]`` is: its maximum over its mean (1 = uniform)."""
    grid = np.clip(np.asarray(torch.as_tensor(maps, dtype=torch.float32).detach().cpu()), 0.0, None)
    mean = grid.mean(axis=(-2, -1))
    return np.divide(grid.max(axis=(-2, -1)), mean, out=np.ones_like(mean), where=mean > 0)


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend a heat map ``[H, W]`` in [0, 1] (colour map ``COLORMAP``) over a frame ``[H, W, 3]`` uint8.

    The frame is shown in grey, so that all colour is attention; the colour's weight is
    ``alpha * heat``, so the frame shows through where the token does not look.
    """
    grey = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # [H, W]
    colour = colormaps[COLORMAP](heat)[..., :3] * 255.0  # [H, W, 3]
    weight = (alpha * heat)[..., None]  # [H, W, 1]
    blended = (1.0 - weight) * grey[..., None] + weight * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def step_frame_indices(num_steps: int, tubelet_size: int) -> list[int]:
    """The frame shown for each tubelet step: the central frame ``t * tubelet + tubelet // 2``."""
    return [t * tubelet_size + tubelet_size // 2 for t in range(num_steps)]


def token_overlays(
    frames: np.ndarray,
    maps: np.ndarray | torch.Tensor,
    tubelet_size: int,
    tokens: Sequence[int] | None = None,
) -> np.ndarray:
    """Overlay every selected token's map on every frame its tubelet step covers.

    Args:
        frames: ``[F, H, W, 3]`` uint8.
        maps: ``[T, S, Hg, Wg]`` with ``T * tubelet_size == F``.
        tubelet_size: frames per tubelet step.
        tokens: indices of the learned tokens to show (default: all S).

    Returns:
        ``[F, K, H, W, 3]`` uint8, K = number of selected tokens.
    """
    frames = np.asarray(frames)
    check_clip(frames, maps, tubelet_size)
    tokens = list(range(maps.shape[1])) if tokens is None else list(tokens)
    heat = normalize_minmax(upsample_maps(maps[:, tokens], frames.shape[1:3]))  # [T, K, H, W]
    return np.stack(
        [np.stack([overlay(frame, h) for h in heat[f // tubelet_size]]) for f, frame in enumerate(frames)]
    )  # [F, K, H, W, 3]


def render_grid(
    frames: np.ndarray,
    maps: np.ndarray | torch.Tensor,
    tubelet_size: int,
    path: str | Path,
    *,
    tokens: Sequence[int] | None = None,
    title: str = "",
    panel_inches: float = 1.0,
    dpi: int = 100,
) -> Path:
    """Write a PNG grid: the clip on top, then one row per token, one column per tubelet step.

    Each column shows the central frame of its tubelet step (see ``step_frame_indices``); a
    one-frame input (the image model) gives a one-column grid.

    Returns:
        The path written.
    """
    frames = np.asarray(frames)
    tokens = list(range(maps.shape[1])) if tokens is None else list(tokens)
    shown = step_frame_indices(maps.shape[0], tubelet_size)
    panels = token_overlays(frames, maps, tubelet_size, tokens)[shown]  # [T, K, H, W, 3]
    rows, cols = len(tokens) + 1, len(shown)
    height, width = frames.shape[1:3]
    panel_h = panel_inches * height / width
    fig_w = cols * panel_inches + 0.6
    title = textwrap.fill(title, width=max(16, int(fig_w / 0.075)))  # about 0.075 inch per character
    title_inches = 0.3 + 0.17 * (title.count("\n") + 1) if title else 0.25
    fig = Figure(figsize=(fig_w, rows * panel_h + title_inches), dpi=dpi)
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": 0.03})
    for col, frame_index in enumerate(shown):
        axes[0, col].imshow(frames[frame_index])
        first = col * tubelet_size
        frame_range = f"{first}" if tubelet_size == 1 else f"{first}-{first + tubelet_size - 1}"
        axes[0, col].set_title(f"t={col} (f {frame_range})", fontsize=6, pad=2)
        for row in range(len(tokens)):
            axes[row + 1, col].imshow(panels[col, row])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].set_ylabel("frame", fontsize=7)
    concentration = peak_to_mean(maps[:, tokens]).mean(axis=0)  # [K], averaged over time
    for row, token in enumerate(tokens):
        axes[row + 1, 0].set_ylabel(f"token {token}\npeak/mean {concentration[row]:.1f}", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.5 / fig_w, right=0.99, bottom=0.01,
                        top=1 - title_inches / (rows * panel_h + title_inches))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with Image.open(buffer) as image:  # a 256-colour palette PNG: about 3x smaller, visually the same
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def animation_frames(
    frames: np.ndarray,
    maps: np.ndarray | torch.Tensor,
    tubelet_size: int,
    tokens: Sequence[int] | None = None,
) -> np.ndarray:
    """Compose one animation frame per clip frame: the frame, then one panel per token, tiled.

    Panels are laid out on a near-square grid (the plain frame first), each enlarged by an integer
    factor to at least ``MIN_PANEL_PX`` a side, with a 1-pixel black gap, and labelled in their
    top-left corner ("clip", "token i"); a white progress bar under the panels marks the position
    in the clip.

    Returns:
        ``[F, H_out, W_out, 3]`` uint8.
    """
    frames = np.asarray(frames)
    tokens = list(range(maps.shape[1])) if tokens is None else list(tokens)
    overlays = token_overlays(frames, maps, tubelet_size, tokens)  # [F, K, H, W, 3]
    panels = np.concatenate([frames[:, None], overlays], axis=1)  # [F, K+1, H, W, 3]
    num_frames, num_panels, height, width = panels.shape[:4]
    scale = max(1, math.ceil(MIN_PANEL_PX / min(height, width)))
    panels = panels.repeat(scale, axis=2).repeat(scale, axis=3)  # [F, K+1, sH, sW, 3]
    cols = math.ceil(math.sqrt(num_panels))
    rows = math.ceil(num_panels / cols)
    cell_h, cell_w = height * scale + 1, width * scale + 1
    out = np.zeros((num_frames, rows * cell_h - 1 + TIMELINE_PX, cols * cell_w - 1, 3), dtype=np.uint8)
    labels = Image.new("RGBA", (out.shape[2], out.shape[1]), (0, 0, 0, 0))
    draw = ImageDraw.Draw(labels)
    font = ImageFont.load_default(size=LABEL_PX)
    for p, name in enumerate(["clip"] + [f"token {t}" for t in tokens]):
        top, left = (p // cols) * cell_h, (p % cols) * cell_w
        out[:, top : top + height * scale, left : left + width * scale] = panels[:, p]
        draw.text((left + 3, top + 2), name, font=font, fill="white", stroke_width=1, stroke_fill="black")
    label = np.asarray(labels, dtype=np.float32) / 255.0  # [H_out, W_out, 4]
    alpha = label[..., 3:]
    out[:] = np.rint(out * (1.0 - alpha) + 255.0 * label[..., :3] * alpha).astype(np.uint8)
    for f in range(num_frames):
        filled = round(out.shape[2] * (f + 1) / num_frames)
        out[f, -TIMELINE_PX + 1 :, :filled] = TIMELINE_COLOR
    return out


def write_gif(images: np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """Write ``[N, H, W, 3]`` uint8 images as a looping GIF with one shared 256-colour palette.

    A shared palette keeps equal pixels equal across frames (no colour flicker between frames).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W, 3] array, got shape {tuple(images.shape)}")
    step = max(1, len(images) // 16)
    sample = np.concatenate(list(images[::step]), axis=0)  # [n * H, W, 3]
    palette = Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    pil = [Image.fromarray(im).quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=round(1000 / fps), loop=0)
    return path


def render_animation(
    frames: np.ndarray,
    maps: np.ndarray | torch.Tensor,
    tubelet_size: int,
    path: str | Path,
    *,
    tokens: Sequence[int] | None = None,
    fps: float = 8.0,
) -> Path:
    """Write an animated GIF with one frame per clip frame (see ``animation_frames``)."""
    return write_gif(animation_frames(frames, maps, tubelet_size, tokens), path, fps=fps)
