"""benchmarks/bench_loader.py runs end to end on tiny H.264 videos: every contender delivers clips, the
decode-limit reader gets every frame it needs, and the table and JSON have a rate for each setting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from video_utils import random_frames, write_lossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_loader as bench  # noqa: E402

pytest.importorskip("pytorchvideo.data")


def test_bench_loader_smoke(tmp_path, monkeypatch, capsys):
    videos = [write_lossless(tmp_path / "src" / f"v{i}.mp4", random_frames(70, 64, seed=i), fps=30) for i in range(2)]
    out = tmp_path / "rates.json"
    monkeypatch.setattr(sys, "argv", ["bench_loader.py", "--videos", *map(str, videos), "--large-videos", "--copies", "1",
                                      "--clips", "4", "--batch-size", "2", "--rounds", "1", "--workers", "0",
                                      "--decoders", "auto", "pyav", "torchcodec", "--threads", "2", "--out", str(out)])
    assert bench.main() == 0
    printed = capsys.readouterr().out
    assert "1080p set skipped" in printed and "decoder threads 2" in printed
    data = json.loads(out.read_text())
    loaders = [f"{d}/k{k}" for d in ("auto", "pyav", "torchcodec") for k in (1, 2)] + ["pytorchvideo"]
    assert set(data["rates"]) == {f"340x256/{v}/{c}/0" for v in ("original", "prepared") for c in loaders}
    assert printed.count("\n| 340x256/") == len(data["rates"])  # one table row per setting
    assert all(rate[0] > 0 for rate in data["rates"].values())
    assert set(data["decode_limit"]) == {"340x256/original", "340x256/prepared"}
    assert all(v[0] > 0 for v in data["decode_limit"].values()) and data["threads"] == 2
