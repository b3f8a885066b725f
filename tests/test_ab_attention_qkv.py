"""benchmarks/ab_attention_qkv.py runs, and its two variants are the same function."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ab_attention_qkv as ab  # noqa: E402

from vivit_tl.models import layers  # noqa: E402


def test_variants_agree_and_the_benchmark_prints_ratios(capsys):
    attn = layers.Attention(16, num_heads=2, head_dim=8)  # no dropout: deterministic
    x = torch.randn(3, 5, 16)
    ours = attn(x)
    baseline = ab.split_output_forward(attn, x)
    torch.testing.assert_close(ours, baseline)
    ab.main(["--batch", "2", "--rounds", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "max gradient difference between the variants" in out and "CPU split output / weight blocks" in out
    assert layers.Attention.forward is ab.VARIANTS["weight blocks (ours)"]  # restored
