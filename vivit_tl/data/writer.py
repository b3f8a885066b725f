"""Writing videos with PyAV (synthetic data, tests, benchmarks)."""

from __future__ import annotations

import os
from typing import Iterable

import av
import numpy as np


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: int = 16, codec: str = "libx264",
                crf: int = 18, preset: str = "veryfast", gop: int | None = None,
                pix_fmt: str | None = None, x264_params: str | None = None, options: dict[str, str] | None = None,
                container_options: dict[str, str] | None = None) -> None:
    """Encode uint8 RGB frames ``[H, W, 3]`` (even H and W for yuv420p) into ``path``.

    Args:
        codec: 'libx264' (yuv420p, lossy) or 'libx264rgb' with ``crf=0`` (lossless RGB, for tests).
        gop: keyframe interval (None: x264's default, one keyframe every 250 frames at most).
        pix_fmt: defaults to rgb24 for libx264rgb, else yuv420p.
        x264_params: extra x264 options, e.g. ``"bframes=3:b-adapt=0"``.
        options: more encoder options (e.g. ``{"bf": "2"}`` for mpeg4); container_options: muxer
            options (e.g. ``{"movflags": "faststart"}``).

    Encodes with one thread so that the same frames always give the same bytes.
    """
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("rgb24" if codec == "libx264rgb" else "yuv420p")
        encoder = {"crf": str(crf), "preset": preset, "threads": "1"}
        if gop is not None:
            encoder.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
        if x264_params:
            encoder["x264-params"] = x264_params
        stream.options = {**encoder, **(options or {})}
        for frame in (first, *frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
