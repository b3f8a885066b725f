"""benchmarks/bench_cpu_allocator.py runs both settings end to end (a tiny batch, one step each)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_cpu_allocator as bench  # noqa: E402


def test_bench_cpu_allocator_runs_both_settings(capsys):
    assert bench.main(["--model", "vit_cifar", "--batch", "2", "--rounds", "1", "--steps", "1", "--warmup", "1",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["0"]]  # round 0
    assert [(r[0], r[1]) for r in rows] == [("0", "default"), ("0", "tuned")]
    assert all(float(r[2]) > 0 for r in rows)  # seconds per step
    assert "default / tuned wall time per step: median" in out and "threads 1" in out
