"""What happens when in a long video: a prediction per time window, as JSON, CSV and a plot.

    from vivit_tl.predict import Predictor
    from vivit_tl.timeline import predict_timeline, write_timeline
    timeline = predict_timeline(Predictor.load("runs/demo/best"), "long.mp4", window_s=2.0, stride_s=1.0)
    write_timeline(timeline, "out/")   # out/long.timeline.json, .csv, .png

Windows ``[start, start + window)`` start every ``stride`` seconds from 0 while they fit in the video; when
the last of them ends before the video does, one more window ends at the video's end (so every frame is
in a window). A window is read like a short file: its frames go through the model's evaluation
preprocessing (``eval_clips`` clips x ``eval_crops`` crops, ``frame_stride`` apart; a window shorter than
a clip loops or pads as ``short_video`` says) and its views' logits are averaged.

The video is decoded once, in order, in a reader process (`stream_frames`), which keeps only the frames of
the last ``window`` seconds: memory does not grow with the video's length (apart from one small
thumbnail per window for the plot), and decoding overlaps the model's work.
"""

from __future__ import annotations

import csv
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from vivit_tl.data import DataConfig
from vivit_tl.data.datasets import eval_views
from vivit_tl.data.decoding import stream_frames
from vivit_tl.data.sampling import eval_clip_indices
from vivit_tl.data.transforms import decode_short_side
from vivit_tl.errors import UserError
from vivit_tl.predict import FILE_ERRORS, Predictor

THUMBNAIL_PX = 96  # long side of the per-window thumbnails kept for the plot


@dataclass(frozen=True)
class Window:
    """One time window of a video, in seconds from its first frame."""

    index: int
    start_s: float
    end_s: float


def window_frames(frames: Iterator[tuple[float, np.ndarray]], window_s: float, stride_s: float
                  ) -> Iterator[tuple[Window, np.ndarray]]:
    """Group a stream of ``(time_s, frame [H, W, 3])`` into windows: ``(Window, frames [N, H, W, 3])``.

    Holds only the frames of the last ``window_s`` seconds. A frame at time t is in ``[start, end)``
    when ``start <= t < end``; a window is complete when the first frame at or after its end arrives.
    """
    buffer: deque[tuple[float, np.ndarray]] = deque()
    index, last, step = 0, None, 0.0
    emitted_end = -math.inf

    def take(start: float, end: float) -> np.ndarray | None:
        picked = [frame for t, frame in buffer if start <= t < end]
        return np.stack(picked) if picked else None  # [N, H, W, 3]

    for time, frame in frames:
        if last is not None:
            step = time - last
        last = time
        while time >= index * stride_s + window_s:  # window `index` is complete
            start = index * stride_s
            clip = take(start, start + window_s)
            if clip is not None:
                yield Window(index, start, start + window_s), clip
                emitted_end = start + window_s
            index += 1
        buffer.append((time, frame))
        while buffer[0][0] < time - window_s:  # older than any window still to come needs
            buffer.popleft()
    if last is None:
        return
    video_end = last + step  # the last frame lasts one frame interval
    if last >= emitted_end:  # frames after the last complete window: one window ending with the video
        start = max(0.0, video_end - window_s)
        yield Window(index, start, video_end), take(start, math.inf)


class WindowViews(IterableDataset):
    """The windows of one video with their model input: ``(Window, views [V, 3, F, S, S], thumbnail)``,
    or ``(None, None, error message)`` once when the file cannot be read."""

    def __init__(self, path: str | Path, data_config: DataConfig, window_s: float, stride_s: float) -> None:
        self.path, self.cfg, self.window_s, self.stride_s = str(path), data_config, window_s, stride_s

    def __iter__(self) -> Iterator[tuple[Window | None, torch.Tensor | None, Any]]:
        cfg = self.cfg
        frames = stream_frames(self.path, num_threads=cfg.num_threads or 1,
                               max_short_side=decode_short_side(cfg, train=False))
        try:
            for window, clip in window_frames(frames, self.window_s, self.stride_s):
                idx = eval_clip_indices(len(clip), cfg.num_frames, cfg.frame_stride, cfg.eval_clips, cfg.short_video)
                views, _ = eval_views(clip[idx], cfg)  # clip[idx]: [K, F, H, W, 3] -> views [V, 3, F, S, S]
                yield window, views, thumbnail(clip[len(clip) // 2])
        except FILE_ERRORS as exc:
            message = str(exc)
            yield None, None, message if message.startswith(self.path) else f"{self.path}: {message}"


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """A copy of ``frame [H, W, 3]`` whose long side is at most ``THUMBNAIL_PX``."""
    image = Image.fromarray(frame)
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return np.asarray(image)


@dataclass
class Timeline:
    """The windows of one video and the class probabilities of each (``probs [N, K]``)."""

    file: str
    classes: list[str]
    window_s: float
    stride_s: float
    windows: list[Window] = field(default_factory=list)
    probs: list[torch.Tensor] = field(default_factory=list)
    thumbnails: list[np.ndarray] = field(default_factory=list)

    def rows(self, k: int) -> list[dict[str, Any]]:
        """One dict per window: ``{"start_s", "end_s", "top": [{"label", "prob"}, ...]}``."""
        rows = []
        for window, probs in zip(self.windows, self.probs):
            values, indices = probs.topk(min(k, len(probs)))
            rows.append({"start_s": round(window.start_s, 3), "end_s": round(window.end_s, 3),
                         "top": [{"label": self.classes[i], "prob": round(float(p), 6)}
                                 for p, i in zip(values, indices.tolist())]})
        return rows


def estimated_windows(path: str, window_s: float, stride_s: float) -> int | None:
    """Number of windows from the container's duration (for the progress bar), None when unknown."""
    import av

    try:
        with av.open(path) as container:
            duration = container.duration / 1e6 if container.duration else None
    except (av.error.FFmpegError, OSError):
        return None
    if duration is None:
        return None
    return math.ceil((duration - window_s) / stride_s) + 1 if duration > window_s else 1  # grid + the last


def predict_timeline(predictor: Predictor, path: str | Path, window_s: float = 2.0, stride_s: float = 1.0,
                     batch_size: int = 8, workers: int = 1) -> Timeline:
    """Class probabilities of every window of the video at ``path`` (see the module docstring).

    ``workers`` 1 decodes in a reader process while the model runs (0: in this process). Views of
    consecutive windows share forward passes of ``batch_size`` views.

    Raises:
        UserError: naming the file, when it cannot be read.
    """
    path = str(path)
    if not predictor.data_config.is_video:
        raise UserError(f"--timeline needs a video model; this model reads {predictor.data_config.kind!r} images")
    timeline = Timeline(path, predictor.classes, window_s, stride_s)
    windows = WindowViews(path, predictor.data_config, window_s, stride_s)
    if window_s <= 0 or stride_s <= 0:
        raise UserError(f"--window and --stride must be > 0, got {window_s} and {stride_s}")
    loader = DataLoader(windows, batch_size=None, num_workers=min(workers, 1),
                        pin_memory=predictor.device.type == "cuda")

    def items() -> Iterator[tuple[tuple[Window, np.ndarray], torch.Tensor]]:
        for window, views, extra in loader:
            if window is None:
                raise UserError(extra)
            yield (window, extra), views

    bar = tqdm(total=estimated_windows(path, window_s, stride_s), desc=f"timeline {Path(path).name}",
               unit="window", leave=False)
    with bar:
        for (window, thumb), probs in predictor.stream_probabilities(items(), batch_size):
            timeline.windows.append(window)
            timeline.probs.append(probs)
            timeline.thumbnails.append(np.asarray(thumb))
            bar.update()
    return timeline


def write_timeline(timeline: Timeline, out: str | Path, k: int = 5) -> list[Path]:
    """Write ``<stem>.timeline.json``, ``.csv`` and ``.png`` of ``timeline`` into folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(timeline.file).stem
    rows = timeline.rows(k)
    paths = [out / f"{stem}.timeline.{ext}" for ext in ("json", "csv", "png")]
    paths[0].write_text(json.dumps({"file": timeline.file, "window_s": timeline.window_s,
                                    "stride_s": timeline.stride_s, "windows": rows}, indent=2))
    with paths[1].open("w", newline="") as f:
        writer = csv.writer(f)
        top = min(k, len(timeline.classes))
        writer.writerow(["start_s", "end_s"] + [f"{name}_{i}" for i in range(1, top + 1) for name in ("label", "prob")])
        for row in rows:
            writer.writerow([row["start_s"], row["end_s"]] + [v for t in row["top"] for v in (t["label"], t["prob"])])
    plot_timeline(timeline, paths[2])
    return paths


def plot_timeline(timeline: Timeline, path: Path, num_classes: int = 5, num_frames: int = 6) -> Path:
    """A PNG: the frames at ``num_frames`` evenly spaced windows on top, below them the probability of the
    ``num_classes`` classes with the highest peak probability against the window centre time."""
    from matplotlib.figure import Figure

    if not timeline.windows:
        raise UserError(f"{timeline.file}: no window to plot")
    probs = torch.stack(timeline.probs).numpy()  # [N, K]
    centres = np.array([(w.start_s + w.end_s) / 2 for w in timeline.windows])
    shown = np.argsort(-probs.max(axis=0))[:num_classes]
    picks = np.unique(np.linspace(0, len(timeline.windows) - 1, min(num_frames, len(timeline.windows))).round()
                      .astype(int))
    figure = Figure(figsize=(max(6.0, 1.6 * len(picks)), 4.8), dpi=100)
    grid = figure.add_gridspec(2, len(picks), height_ratios=[1, 2.2], hspace=0.35)
    for column, i in enumerate(picks):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(timeline.thumbnails[i])
        axis.set_title(f"{centres[i]:.1f} s", fontsize=8)
        axis.axis("off")
    plot = figure.add_subplot(grid[1, :])
    for c in shown:
        plot.plot(centres, probs[:, c], marker="o", markersize=2, label=timeline.classes[c])
    for i in picks:
        plot.axvline(centres[i], color="grey", linewidth=0.5, linestyle=":")
    plot.set_xlabel("time (s, window centre)")
    plot.set_ylabel("probability")
    plot.set_ylim(0, 1)
    plot.legend(fontsize=7, loc="upper right")
    figure.suptitle(f"{Path(timeline.file).name}: {timeline.window_s:g} s windows every {timeline.stride_s:g} s",
                    fontsize=9)
    figure.savefig(path)
    return path
