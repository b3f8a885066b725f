"""Helpers for data tests: tiny lossless videos, a folder dataset, every kind of bad file, an image folder."""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vivit_tl.data.decoding import decord_available, torchcodec_available
from vivit_tl.data.writer import write_video

REPO_ROOT = Path(__file__).resolve().parents[1]

#: decord is optional: its tests skip where it is not installed (tests/test_no_decord.py runs the rest without it)
needs_decord = pytest.mark.skipif(not decord_available(), reason="decord is not installed")
needs_torchcodec = pytest.mark.skipif(not torchcodec_available(), reason="torchcodec (or FFmpeg) is not installed")
DECODERS = [pytest.param("decord", marks=needs_decord), "pyav", pytest.param("torchcodec", marks=needs_torchcodec), "auto"]


def random_frames(num_frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 frames ``[F, size, size, 3]`` whose every frame differs from every other."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)


def write_lossless(path: Path, frames: np.ndarray, fps: int = 16) -> Path:
    """Lossless H.264 RGB (libx264rgb, crf 0), or lossless VP9 RGB for a ``.webm``: decodes to exactly ``frames``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix != ".webm":
        write_video(path, frames, fps=fps, codec="libx264rgb", crf=0)
        return path
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.options = "gbrp", {"lossless": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def clip_start(clip, source: np.ndarray, stride: int) -> int:
    """The start frame of a training clip ``[3, F, H, W]`` (float in [0, 1], no normalisation) in ``source``
    ``[N, H, W, 3]``; fails unless exactly one start matches the clip's frames exactly."""
    frames = (clip.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()  # [F, H, W, 3]
    span = (len(frames) - 1) * stride + 1
    starts = [s for s in range(len(source) - span + 1) if np.array_equal(source[s: s + span: stride], frames)]
    assert len(starts) == 1, f"clip matches the source at starts {starts}"
    return starts[0]


def write_faststart(path: Path, frames: np.ndarray) -> Path:
    """Lossless H.264 mp4 with the index (moov) before the data, so a truncated copy still opens."""
    write_video(path, frames, codec="libx264rgb", crf=0, container_options={"movflags": "faststart"})
    return path


def write_mpeg4_avi(path: Path, frames: np.ndarray) -> Path:
    """MPEG-4 Part 2 in AVI with B-frames (lossy), the kind of file old datasets are full of."""
    write_video(path, frames, fps=25, codec="mpeg4", options={"bf": "2", "g": "100"})
    return path


def decode_in_order(path: Path, indices: list[int]) -> np.ndarray:
    """Ground truth: the frames at ``indices`` (sorted) counting decoder output from the start."""
    wanted, got = set(indices), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                got[i] = frame.to_ndarray(format="rgb24")
            if i >= max(indices):
                break
    return np.stack([got[i] for i in indices])  # [len(indices), H, W, 3]


def make_bad_files(folder: Path, good_video: Path) -> dict[str, str]:
    """One file per kind of bad file in ``folder``; returns {file name: expected reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_video.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov atom cut off
    (folder / "zero_byte.mp4").write_bytes(b"")
    (folder / "not_a_video.mp4").write_text("this is a text file, not a video\n" * 10)
    mdat = data.find(b"mdat")  # keep the index, blank the coded frames: nothing decodes
    size = int.from_bytes(data[mdat - 4: mdat], "big")
    blank = bytearray(data)
    blank[mdat + 4: mdat - 4 + size] = bytes(size - 8)
    (folder / "no_frames.mp4").write_bytes(bytes(blank))
    os.symlink(folder / "does-not-exist.mp4", folder / "unreadable.mp4")  # a dangling link
    return {"truncated.mp4": "not a video or unreadable", "zero_byte.mp4": "zero-byte file",
            "not_a_video.mp4": "not a video or unreadable", "no_frames.mp4": "zero decodable frames",
            "unreadable.mp4": "missing file"}


def make_video_folder(root: Path, classes: dict[str, int], split: str = "train", num_frames: int = 12,
                      size: int = 32, seed: int = 0) -> list[Path]:
    """``root/<split>/<class>/v<i>.mp4`` lossless videos; the frames of a video are fixed by (seed, class, i)."""
    paths = []
    for c, (name, count) in enumerate(sorted(classes.items())):
        for i in range(count):
            frames = random_frames(num_frames, size, seed=seed * 1000 + c * 100 + i)
            paths.append(write_lossless(root / split / name / f"v{i}.mp4", frames))
    return paths


def make_image_folder(root: Path, splits=("train", "test"), per_class=3, classes=("cat", "dog")) -> None:
    """``root/<split>/<class>/<i>.png``: random 32x32 RGB images."""
    rng = np.random.default_rng(1)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def run_tool(name: str, args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run ``python tools/<name> ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO_ROOT / "tools" / name), run_name="__main__")
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def hanging_read_frames(path, pick, **kwargs):
    """``read_frames``, except that a file whose name starts with "hang" hangs in native code holding the
    GIL (``ctypes.PyDLL`` keeps the GIL during the call), as decord's known hangs do."""
    from vivit_tl.data.decoding import read_frames

    if Path(path).name.startswith("hang"):
        ctypes.PyDLL(None).sleep(3600)
    return read_frames(path, pick, **kwargs)


def kill_this_process() -> None:
    """SIGKILL the calling process (run in the decode helper: a decoder crash)."""
    os.kill(os.getpid(), signal.SIGKILL)
