"""A self-contained HTML page to explore TokenLearner attention maps over a clip in a browser.

The page (template ``viewer.html`` next to this module) needs no server and no network: the clip's
frames are embedded as lossless WebP data URIs at model resolution, and every layer's maps as base64 uint8
arrays (each map min-max scaled to 0..255, as the PNG grid and GIF show them, see
`vivit_tl.viz.render`). In the browser, a time slider and play/pause move through the frames, a
layer and a token selector (or all tokens as a grid) choose the maps, an opacity slider sets the
overlay's strength; the page shows the predicted labels and, per map, its peak/mean ratio
(1 = uniform attention; computed from the unscaled maps). The overlay is drawn as
`vivit_tl.viz.render.overlay` does: bilinear upsampling, the frame in grey, the colour map blended
in proportion to the attention.
"""

from __future__ import annotations

import base64
import html
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from vivit_tl.viz.render import COLORMAP, check_clip, normalize_minmax, peak_to_mean

TEMPLATE = "viewer.html"


def encode_frame(image: np.ndarray) -> str:
    """A ``data:image/webp;base64,...`` URI of an ``[H, W, 3]`` uint8 image, lossless WebP
    (about a third smaller than an optimised PNG on the synthetic clips)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="webp", lossless=True)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def quantize_maps(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """Maps ``[..., Hg, Wg]`` as uint8: each map min-max scaled to 0..255 (a constant map becomes 0)."""
    grid = np.asarray(torch.as_tensor(maps, dtype=torch.float32).detach().cpu())
    return np.rint(normalize_minmax(grid) * 255.0).astype(np.uint8)


def colormap_bytes() -> bytes:
    """The display colour map ``COLORMAP`` as 256 RGB uint8 triplets (768 bytes)."""
    return (colormaps[COLORMAP](np.arange(256) / 255.0)[:, :3] * 255.0).round().astype(np.uint8).tobytes()


def viewer_data(
    frames: np.ndarray,
    maps: Sequence[np.ndarray | torch.Tensor],
    tubelet_size: int,
    *,
    layer_names: Sequence[str] | None = None,
    tokens: Sequence[int] | None = None,
    top: Sequence[dict[str, Any]] = (),
    title: str = "",
    fps: float = 8.0,
) -> dict[str, Any]:
    """The JSON payload of the viewer page of one clip (`write_attention_html` embeds it).

    Args:
        frames: ``[F, H, W, 3]`` uint8, the un-normalised frames of the clip (model resolution).
        maps: one ``[T, S, Hg, Wg]`` array per TokenLearner layer, ``T * tubelet_size == F``.
        tubelet_size: frames per tubelet step (step ``t`` covers frames ``t * tubelet .. (t + 1) * tubelet - 1``).
        layer_names: the layer selector's entries (default ``layer 0``, ``layer 1``, ...).
        tokens: learned tokens to include (default: all S); the page keeps their indices.
        top: the prediction, most probable first: ``[{"label", "prob"}, ...]`` (as `Predictor.top_k`).
        title: page heading.
        fps: playback frame rate.

    Returns:
        ``{"title", "fps", "tubelet", "width", "height", "frames": [WebP data URI per frame],
        "top": [{"label", "prob"}], "colormap": base64 768 bytes, "layers": [{"name", "steps",
        "tokens", "grid_h", "grid_w", "token_ids", "maps": base64 uint8 [T, K, Hg, Wg],
        "peak_mean": [K][T]}]}``.
    """
    frames = np.asarray(frames)
    if not maps:
        raise ValueError("no attention maps to show")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    names = list(layer_names) if layer_names is not None else [f"layer {i}" for i in range(len(maps))]
    if len(names) != len(maps):
        raise ValueError(f"{len(names)} layer names for {len(maps)} layers")
    layers = []
    for name, layer_maps in zip(names, maps):
        check_clip(frames, layer_maps, tubelet_size)
        chosen = list(range(layer_maps.shape[1])) if tokens is None else list(tokens)
        shown = layer_maps[:, chosen]  # [T, K, Hg, Wg]
        steps, _, grid_h, grid_w = shown.shape
        layers.append({
            "name": name, "steps": steps, "tokens": len(chosen), "grid_h": grid_h, "grid_w": grid_w,
            "token_ids": chosen,
            "maps": base64.b64encode(quantize_maps(shown).tobytes()).decode("ascii"),
            "peak_mean": np.round(peak_to_mean(shown).T, 3).tolist(),  # [K, T]
        })
    return {
        "title": title, "fps": fps, "tubelet": tubelet_size,
        "width": int(frames.shape[2]), "height": int(frames.shape[1]),
        "frames": [encode_frame(frame) for frame in frames],
        "top": [{"label": str(entry["label"]), "prob": float(entry["prob"])} for entry in top],
        "colormap": base64.b64encode(colormap_bytes()).decode("ascii"),
        "layers": layers,
    }


def write_attention_html(
    path: str | Path,
    frames: np.ndarray,
    maps: Sequence[np.ndarray | torch.Tensor],
    tubelet_size: int,
    **options: Any,
) -> Path:
    """Write the self-contained attention viewer page of one clip to ``path`` (an ``.html`` file).

    ``frames``, ``maps``, ``tubelet_size`` and the keyword ``options`` (``layer_names``, ``tokens``,
    ``top``, ``title``, ``fps``) are those of `viewer_data`. Returns the path written.
    """
    data = viewer_data(frames, maps, tubelet_size, **options)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # no "</script>" in the JSON
    template = resources.files("vivit_tl.viz").joinpath(TEMPLATE).read_text(encoding="utf-8")
    page = template.replace("__TITLE__", html.escape(data["title"] or "attention viewer")).replace("__DATA__", payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
