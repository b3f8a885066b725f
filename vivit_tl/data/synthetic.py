"""The embedded synthetic Kinetics-style dataset: moving shapes on a textured background.

Eight classes, every one defined by motion, so no single frame tells a class from its twin:

| class | motion of the object |
|---|---|
| move_left / move_right / move_up / move_down | straight line at constant speed |
| grow / shrink | size changes linearly, centre fixed |
| rotate_cw / rotate_ccw | spins about its centre (clockwise as seen on screen) |

Each video has a random object (square, triangle, bar or cross; random colour, size, speed,
start, angle), a static random disc as a distractor and a smooth random background texture.
The object is always brighter than the (dark) background. With random contrast polarity (v1 of
this dataset) the small ViViT of the main job stayed at chance for 1,000+ steps, even on
left-vs-right only; with one polarity it learns all eight classes in a few hundred steps.
Frames are H.264 ``.mp4`` written with PyAV into ``OUT/{train,val}/<class>/<class>_NNNN.mp4``;
next to each video ``<class>_NNNN.boxes.json`` holds the moving object's box per frame (pixels of
the stored frames), read back with `load_boxes`. ``OUT/meta.json`` is written last and marks a
complete dataset. Everything is a pure function of the `SyntheticSpec` (seed included).
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from vivit_tl.errors import reject_unknown_keys
from .writer import write_video

VERSION = 2
CLASSES = ("grow", "move_down", "move_left", "move_right", "move_up", "rotate_ccw", "rotate_cw", "shrink")
SHAPES = ("square", "triangle", "bar", "cross")
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down (anti-aliasing for sub-pixel motion)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic dataset (the defaults are the demo's dataset).

    Args:
        seed: master seed; video i of class c in split s is a function of (seed, s, c, i) only.
        size: frame side in pixels (square frames).
        frames: frames per video.
        fps: stored frame rate.
        train_per_class: videos per class in the train split.
        val_per_class: videos per class in the val split.
        crf: x264 quality (lower = better).
        workers: generator processes (0 = in this process).
    """

    seed: int = 0
    size: int = 96
    frames: int = 32
    fps: int = 16
    train_per_class: int = 200
    val_per_class: int = 25
    crf: int = 18
    workers: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SyntheticSpec":
        reject_unknown_keys(cls, d, "synthetic option")
        spec = cls(**d)
        if spec.size < 32 or spec.size % 2 or spec.frames < 2 or min(spec.train_per_class, spec.val_per_class) < 1:
            raise ValueError(f"synthetic options {d} need an even size >= 32, frames >= 2 and >= 1 video per class")
        return spec

    def content(self) -> dict[str, Any]:
        """The fields that change the generated files (``workers`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("workers")
        return {"version": VERSION, **d}

    def dirname(self) -> str:
        """Cache folder name: ``synthetic-v{VERSION}-seed0`` for the defaults, plus a hash of other changes."""
        base = f"synthetic-v{VERSION}-seed{self.seed}"
        defaults = dataclasses.replace(SyntheticSpec(), seed=self.seed).content()
        if self.content() == defaults:
            return base
        digest = hashlib.sha1(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{base}-{digest}"


# --- rendering ------------------------------------------------------------------------------

def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Vertices ``[N, 2]`` (x, y) of a shape with circumradius ``radius`` rotated by ``angle`` (rad)."""
    if shape == "square":
        pts = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) / np.sqrt(2)
    elif shape == "triangle":
        t = np.deg2rad([90, 210, 330])
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "bar":
        pts = np.array([[1, 0.3], [-1, 0.3], [-1, -0.3], [1, -0.3]])
    else:  # cross: a plus sign
        a, b = 1.0, 0.33
        pts = np.array([[b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b], [-b, -a],
                        [b, -a], [b, -b], [a, -b], [a, b]])
    # Screen coordinates have y down, so a positive angle turns the shape clockwise on screen.
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * radius + np.array([cx, cy])


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb) * 255


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour texture plus fine grain, float ``[H, W, 3]`` in 0..255."""
    base = _random_colour(rng, (0.0, 0.5), (0.15, 0.35))  # dark: the moving object is always brighter
    coarse = rng.normal(0, 1, (6, 6, 3))
    smooth = np.stack([np.asarray(Image.fromarray(coarse[..., c].astype(np.float32), mode="F")
                                  .resize((size, size), Image.BICUBIC)) for c in range(3)], -1)  # [H, W, 3]
    grain = rng.normal(0, 4, (size, size, 1))
    return np.clip(base + 15 * smooth + grain, 0, 255)


def _mask(polygons: list[np.ndarray], size: int) -> np.ndarray:
    """Anti-aliased coverage ``[H, W, 1]`` in [0, 1] of the union of polygons."""
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([tuple(p) for p in poly * SUPERSAMPLE], fill=255)
    small = canvas.resize((size, size), Image.BOX)
    return (np.asarray(small, dtype=np.float32) / 255)[..., None]


def _trajectory(label: str, rng: np.random.Generator, size: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centre ``[F, 2]``, radius ``[F]`` and angle ``[F]`` of the moving object."""
    t = np.arange(frames, dtype=np.float64)
    angle0 = rng.uniform(0, 2 * np.pi)
    scale = size / 96  # the constants below are tuned for 96 px frames
    if label.startswith("move_"):
        radius = np.full(frames, rng.uniform(9, 13) * scale)
        travel = min(rng.uniform(64, 76) * scale, size - 2 * radius[0] - 2)  # pixels over the whole video
        along = rng.uniform(radius[0], size - radius[0] - travel) + travel * t / (frames - 1)
        across = np.full(frames, rng.uniform(radius[0], size - radius[0]))
        if label in ("move_left", "move_up"):
            along = along[::-1].copy()
        centre = np.stack([along, across] if label in ("move_left", "move_right") else [across, along], 1)
        return centre, radius, np.full(frames, angle0)
    if label in ("grow", "shrink"):
        small, large = rng.uniform(6, 8) * scale, rng.uniform(17, 20) * scale
        radius = small + (large - small) * t / (frames - 1)
        if label == "shrink":
            radius = radius[::-1].copy()
        centre = np.tile(rng.uniform(large, size - large, 2), (frames, 1))
        return centre, radius, np.full(frames, angle0)
    speed = np.deg2rad(rng.uniform(7, 11)) * (1 if label == "rotate_cw" else -1)
    radius = np.full(frames, rng.uniform(14, 18) * scale)
    centre = np.tile(rng.uniform(radius[0], size - radius[0], 2), (frames, 1))
    return centre, radius, angle0 + speed * t


def _box(poly: np.ndarray, size: int) -> list[float]:
    x0, y0 = np.clip(poly.min(0), 0, size)
    x1, y1 = np.clip(poly.max(0), 0, size)
    return [round(float(v), 3) for v in (x0, y0, x1, y1)]


def render_video(spec: SyntheticSpec, label: str, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Frames uint8 ``[F, H, W, 3]`` and the box record of one video of class ``label``."""
    size, frames = spec.size, spec.frames
    shape = SHAPES[rng.integers(len(SHAPES))]
    centre, radius, angle = _trajectory(label, rng, size, frames)
    polys = [_polygon(shape, cx, cy, r, a) for (cx, cy), r, a in zip(centre, radius, angle)]
    boxes = [_box(p, size) for p in polys]
    # The distractor disc stays still, away from the object's path when a few tries allow it.
    path = np.array([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)])
    d_radius = rng.uniform(6, 9) * size / 96
    for _ in range(20):
        d_centre = rng.uniform(d_radius, size - d_radius, 2)
        if not (path[0] - d_radius < d_centre[0] < path[2] + d_radius and path[1] - d_radius < d_centre[1] < path[3] + d_radius):
            break
    disc = np.stack([np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False))], 1) * d_radius + d_centre
    background = _background(rng, size)
    d_colour = _random_colour(rng, (0.5, 1.0), (0.6, 1.0))
    d_mask = _mask([disc], size)
    background = background * (1 - d_mask) + d_colour * d_mask
    colour = _random_colour(rng, (0.2, 0.6), (0.9, 1.0))  # bright, brighter than any background
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i, poly in enumerate(polys):
        mask = _mask([poly], size)  # [H, W, 1]
        video[i] = np.clip(background * (1 - mask) + colour * mask, 0, 255).round().astype(np.uint8)
    record = {"version": VERSION, "class": label, "shape": shape, "width": size, "height": size,
              "fps": spec.fps, "boxes": boxes, "distractor_box": _box(disc, size)}
    return video, record


# --- dataset files --------------------------------------------------------------------------

def boxes_path(video_path: str | os.PathLike) -> Path:
    """``<dir>/<name>.boxes.json`` next to ``<dir>/<name>.mp4``."""
    path = Path(video_path)
    return path.with_name(path.stem + ".boxes.json")


def load_boxes(video_path: str | os.PathLike) -> np.ndarray:
    """The moving object's box per frame of a synthetic video.

    Returns:
        float32 ``[num_frames, 4]`` (x0, y0, x1, y1) in pixels of the stored video frames.
    """
    path = boxes_path(video_path)
    if not path.is_file():
        raise FileNotFoundError(f"no box file {path.name} next to {video_path} (not a synthetic video?)")
    try:
        boxes = np.asarray(json.loads(path.read_text())["boxes"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"corrupt box file {path}: {exc}") from None
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"corrupt box file {path}: boxes have shape {list(boxes.shape)}, expected [frames, 4]")
    return boxes


def _video_seed(spec: SyntheticSpec, split: str, label: str, i: int) -> np.random.Generator:
    split_id = ("train", "val").index(split)
    return np.random.default_rng([spec.seed, split_id, CLASSES.index(label), i])


def _make_one(task: tuple[SyntheticSpec, str, str, int, str]) -> None:
    spec, split, label, i, out = task
    video, record = render_video(spec, label, _video_seed(spec, split, label, i))
    path = Path(out, split, label, f"{label}_{i:04d}.mp4")
    write_video(path, video, fps=spec.fps, crf=spec.crf)
    boxes_path(path).write_text(json.dumps(record))


def is_complete(root: str | os.PathLike, spec: SyntheticSpec | None = None) -> bool:
    """True when ``root/meta.json`` exists (written last) and, if given, matches ``spec``."""
    meta = Path(root, "meta.json")
    if not meta.is_file():
        return False
    try:
        content = json.loads(meta.read_text())["spec"]
    except (ValueError, KeyError):
        return False
    return spec is None or content == spec.content()


def generate(out: str | os.PathLike, spec: SyntheticSpec = SyntheticSpec(), progress: bool = True) -> Path:
    """Write the dataset into ``out`` atomically (a temporary sibling folder renamed at the end).

    A killed generation leaves only a ``.tmp-*`` folder, never a half dataset under ``out``.
    Refuses to touch an existing non-empty ``out`` that is not this exact dataset.
    """
    out = Path(out)
    if is_complete(out, spec):
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a complete synthetic dataset with these options; "
                              "choose another folder (nothing was deleted)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        tasks = []
        for split, count in (("train", spec.train_per_class), ("val", spec.val_per_class)):
            for label in CLASSES:
                (tmp / split / label).mkdir(parents=True)
                tasks += [(spec, split, label, i, str(tmp)) for i in range(count)]
        bar = tqdm(total=len(tasks), desc=f"synthetic videos -> {out.name}", disable=not progress, unit="video")
        if spec.workers > 0:
            with ProcessPoolExecutor(spec.workers) as pool:
                for _ in pool.map(_make_one, tasks, chunksize=16):
                    bar.update()
        else:
            for task in tasks:
                _make_one(task)
                bar.update()
        bar.close()
        meta = {"spec": spec.content(), "classes": list(CLASSES),
                "counts": {"train": spec.train_per_class, "val": spec.val_per_class}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own temporary folder
        if is_complete(out, spec):  # another process finished the same dataset first
            return out
        raise
    return out
