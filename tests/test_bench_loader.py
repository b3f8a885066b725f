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
    monkeypatch.setattr(sys, "argv", ["bench_loader.py", "--videos", *map(str, videos), "--copies", "1", "--clips", "4",
                                      "--batch-size", "2", "--rounds", "1", "--workers", "0", "--threads", "2",
                                      "--out", str(out)])
    assert bench.main() == 0
    printed = capsys.readouterr().out
    assert "decoder threads 2" in printed and printed.count("\n| 0 |") == 1
    data = json.loads(out.read_text())
    assert set(data["rates"]) == {"vivit_tl/0", "vivit_tl_pyav/0", "pytorchvideo/0"}
    assert all(rate[0] > 0 for rate in data["rates"].values()) and data["decode_limit"][0] > 0
    assert data["threads"] == 2
