"""Measure whether TokenLearner attention follows the moving object of the synthetic dataset.

Usage:
    vivit-tl attention-box-check CHECKPOINT [--split val] [--margin PX] [--max-videos N]
        [--init-baseline] [--json]

For every video of the split (the checkpoint's synthetic dataset, generated into the cache if
missing) and every TokenLearner layer, it reports the share of attention mass that falls inside
the moving object's box (ground truth from the generator, averaged over the frames of each tubelet
step, enlarged by ``--margin`` pixels of the model input; default half a token-grid cell) and the
share of the frame the box covers, which is what uniform attention would give. ``ratio`` =
mass / area: 1 is chance. ``--init-baseline`` also measures a freshly initialised model of the same
architecture (seed 0), to separate what training learned from what the architecture does anyway.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from vivit_tl.data import build_dataset, dataset_root, prepare_dataset
from vivit_tl.cli import make_parser
from vivit_tl.errors import UserError, run_cli
from vivit_tl.models import build_model
from vivit_tl.predict import Predictor
from vivit_tl.viz.box_check import LayerShare, measure_box_attention


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("attention-box-check", __doc__)
    parser.add_argument("checkpoint", help="model folder (config.json or model.json + model.safetensors), run directory, or hf:<repo id>")
    parser.add_argument("--split", default="val", help="dataset split to measure on (default val)")
    parser.add_argument("--margin", type=float, default=None,
                        help="pixels (of the model input) added to each box side (default: half a token cell)")
    parser.add_argument("--max-videos", type=int, default=None,
                        help="measure on this many videos, evenly spread over the split (default: all)")
    parser.add_argument("--init-baseline", action="store_true",
                        help="also measure a freshly initialised model of the same architecture")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.max_videos is not None and args.max_videos < 1:
        parser.error("--max-videos must be >= 1")
    if args.margin is not None and args.margin < 0:
        parser.error("--margin must be >= 0")
    return args


def format_table(title: str, shares: list[LayerShare]) -> str:
    lines = [title, "layer  mass in box  box area  ratio   best token: mass, ratio"]
    for s in shares:
        best = s.token_mass[s.best_token]
        lines.append(f"{s.layer:>5}  {s.mass:>11.3f}  {s.area:>8.3f}  {s.ratio:>5.2f}x  "
                     f"token {s.best_token}: {best:.3f}, {best / s.area:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predictor = Predictor.load(args.checkpoint)
    cfg = predictor.data_config
    if cfg.kind != "synthetic":
        raise UserError(f"the box check needs the synthetic dataset (its videos carry object boxes); "
                        f"{args.checkpoint} was trained on kind={cfg.kind!r}")
    prepare_dataset(cfg)
    names = build_dataset(cfg, args.split, train=False).video_names
    if args.max_videos is not None and args.max_videos < len(names):
        names = [names[i] for i in np.linspace(0, len(names) - 1, args.max_videos).round().astype(int)]
    videos = [dataset_root(cfg) / name for name in names]

    models = {"trained": predictor.model}
    if args.init_baseline:
        torch.manual_seed(0)
        models["initialised"] = build_model(predictor.model.config).eval()
    results = {}
    for label, model in models.items():
        results[label] = measure_box_attention(model, cfg, videos, margin=args.margin)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "videos": len(videos),
                          **{k: [s.as_dict() for s in v] for k, v in results.items()}}, indent=2))
    else:
        for label, shares in results.items():
            print(format_table(f"{label} model, {len(videos)} {args.split} videos:", shares))
    return 0


if __name__ == "__main__":
    run_cli(main)
