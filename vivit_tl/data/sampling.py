"""Clip sampling in frame indices: a random clip for training, K uniform clips for evaluation.

A clip is ``num_frames`` frame indices ``stride`` apart, spanning ``(num_frames - 1) * stride + 1``
frames. Indices always lie in ``[0, num_decodable_frames)``. A video shorter than the span is
handled by ``short_video``:

- ``'loop'``: the clip wraps around to the start (indices modulo the frame count);
- ``'pad'``: indices past the end repeat the last frame.
"""

from __future__ import annotations

import numpy as np


def clip_span(num_frames: int, stride: int) -> int:
    """Number of consecutive source frames one clip covers."""
    return (num_frames - 1) * stride + 1


def _clip_at(start: int, num_available: int, num_frames: int, stride: int, short_video: str) -> np.ndarray:
    idx = start + np.arange(num_frames) * stride
    if short_video == "loop":
        return idx % num_available
    if short_video == "pad":
        return np.minimum(idx, num_available - 1)
    raise ValueError(f"short_video={short_video!r} is not one of ['loop', 'pad']")


def train_clip_indices(num_available: int, num_frames: int, stride: int, u: float,
                       short_video: str = "loop") -> np.ndarray:
    """One training clip whose start is drawn by ``u`` in [0, 1).

    Taking ``u`` instead of a generator lets a caller re-sample the same relative position once
    it learns that fewer frames decode than the container claimed.

    Returns:
        int64 indices ``[num_frames]``.
    """
    if num_available < 1:
        raise ValueError(f"cannot sample a clip from {num_available} frames")
    slack = num_available - clip_span(num_frames, stride)
    start = int(u * (slack + 1)) if slack >= 0 else 0
    return _clip_at(min(max(start, 0), max(slack, 0)), num_available, num_frames, stride, short_video)


def eval_clip_indices(num_available: int, num_frames: int, stride: int, num_clips: int,
                      short_video: str = "loop") -> np.ndarray:
    """``num_clips`` clips, one centred in each of ``num_clips`` equal segments (mmaction2's test mode).

    One clip is the centre clip of the video.

    Returns:
        int64 indices ``[num_clips, num_frames]``.
    """
    if num_available < 1:
        raise ValueError(f"cannot sample a clip from {num_available} frames")
    slack = max(num_available - clip_span(num_frames, stride), 0)
    interval = (slack + 1) / num_clips
    starts = (np.arange(num_clips) * interval + (interval - 1) / 2).round().astype(np.int64)
    starts = np.clip(starts, 0, slack)
    return np.stack([_clip_at(int(s), num_available, num_frames, stride, short_video) for s in starts])
