"""Plot a run's training curves (loss, learning rate, train/val accuracy against step) into a PNG.

Usage:
    vivit-tl plot-metrics RUN_DIR_OR_METRICS_JSONL [--out curves.png] [--title TEXT]

Reads ``metrics.jsonl`` (one JSON object per line with ``step`` and any of ``train/loss``,
``val/loss``, ``lr``, ``train/acc``, ``val/top1``, ``val/top5``); panels without data are left out.
The default output is ``curves.png`` next to the metrics log.
"""

from __future__ import annotations

from pathlib import Path

from vivit_tl.cli import make_parser
from vivit_tl.errors import run_cli
from vivit_tl.viz.curves import plot_metrics


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("plot-metrics", __doc__)
    parser.add_argument("metrics", type=Path, help="run directory or its metrics.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: RUN_DIR/curves.png)")
    parser.add_argument("--title", default="", help="figure title (default: the run directory's name)")
    args = parser.parse_args(argv)
    run_dir = args.metrics if args.metrics.is_dir() else args.metrics.parent
    out = plot_metrics(args.metrics, args.out or run_dir / "curves.png", title=args.title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
