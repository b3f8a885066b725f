"""Top-k labels of a trained model on video (or image) files, averaged over the evaluation views.

Usage:
    vivit-tl predict CHECKPOINT VIDEO [VIDEO ...] [--top-k 5] [--json] [--batch-size 8] [--workers 2]
        [--device auto|cpu|cuda] [--dtype float32|bfloat16|float16]
    vivit-tl predict CHECKPOINT VIDEO [VIDEO ...] --timeline [--window 2.0] [--stride 1.0] [--out DIR]

CHECKPOINT is a model folder (config.json + model.safetensors, or the older model.json + model.safetensors),
its model.safetensors, a run directory, or hf:<repo id> (a vivit-tl model on the Hub). Each file is read
with the checkpoint's own preprocessing (frames, stride, size, eval clips x crops); the logits of its
views are averaged and turned into probabilities. Views go through the model ``--batch-size`` at a
time across files, on ``--device`` (``auto``: a CUDA GPU when there is one), while ``--workers``
processes read the next files. ``--json`` prints one JSON list on stdout with an
object per file: ``{"file", "views", "top": [{"label", "prob"}, ...]}`` or ``{"file", "error"}``.

``--timeline``: a prediction per time window of each video instead (``--window`` seconds long, one
every ``--stride`` seconds, see `vivit_tl.timeline`), written into ``--out`` (default: the current
folder) as ``<name>.timeline.json`` (``{"file", "window_s", "stride_s", "windows": [{"start_s",
"end_s", "top": [{"label", "prob"}, ...]}, ...]}``), ``<name>.timeline.csv`` (start_s, end_s, label_1,
prob_1, ... label_k, prob_k) and ``<name>.timeline.png`` (the top classes' probabilities against time,
with the frames at a few points). The video is decoded once, in order, keeping only the frames of one
window in memory.

A file that cannot be read gets a one-line ``error: FILE: reason`` on stderr; the other files are
still processed and the exit status is 2 at the end. A bad checkpoint stops at once (status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from vivit_tl.cli import make_parser
from vivit_tl.device import add_device_arguments
from vivit_tl.errors import UserError, run_cli
from vivit_tl.predict import Predictor
from vivit_tl.timeline import predict_timeline, write_timeline


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("predict", __doc__)
    parser.add_argument("checkpoint", help="model folder (config.json or model.json + model.safetensors), run directory, or hf:<repo id>")
    parser.add_argument("files", nargs="+", metavar="VIDEO", help="video or image files")
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per file (default 5)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    parser.add_argument("--batch-size", type=int, default=8, help="views per forward pass (default 8)")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes reading the next files while the model runs (0: none; default 2)")
    add_device_arguments(parser)
    timeline = parser.add_argument_group("timelines (long videos)")
    timeline.add_argument("--timeline", action="store_true", help="a prediction per time window of each video")
    timeline.add_argument("--window", type=float, default=2.0, help="window length in seconds (default 2.0)")
    timeline.add_argument("--stride", type=float, default=1.0, help="seconds between window starts (default 1.0)")
    timeline.add_argument("--out", type=Path, default=Path("."), help="folder for the timeline files (default .)")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1 or args.workers < 0:
        parser.error("--top-k and --batch-size must be >= 1, --workers >= 0")
    if args.window <= 0 or args.stride <= 0:
        parser.error(f"--window and --stride must be > 0, got {args.window} and {args.stride}")
    return args


def format_result(result: dict) -> str:
    """Human-readable lines for one file's prediction."""
    lines = [f"{result['file']} ({result['views']} view{'s' * (result['views'] > 1)})"]
    width = max(len(entry["label"]) for entry in result["top"])
    lines += [f"  {i}. {e['label']:<{width}}  {100 * e['prob']:6.2f}%" for i, e in enumerate(result["top"], 1)]
    return "\n".join(lines)


def timelines(predictor: Predictor, args: argparse.Namespace) -> Iterator[dict]:
    """Write the timeline files of each video; yields ``{"file", "windows", "outputs"}`` or ``{"file", "error"}``."""
    for path in args.files:
        try:
            timeline = predict_timeline(predictor, path, args.window, args.stride, batch_size=args.batch_size,
                                        workers=min(args.workers, 1))
        except UserError as exc:
            yield {"file": path, "error": str(exc)}
            continue
        outputs = write_timeline(timeline, args.out, k=args.top_k)
        yield {"file": path, "windows": len(timeline.windows), "outputs": [str(p) for p in outputs]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predictor = Predictor.load(args.checkpoint, device=args.device, dtype=args.dtype)
    results, failed = [], 0
    if args.timeline:
        predictions = timelines(predictor, args)
    else:
        predictions = predictor.predict_files(args.files, k=args.top_k, batch_size=args.batch_size,
                                              workers=args.workers)
    for result in tqdm(predictions, total=len(args.files), desc="predict", unit="file", disable=len(args.files) < 2):
        results.append(result)
        if "error" in result:
            failed += 1
            tqdm.write(f"error: {result['error']}", file=sys.stderr)
        elif not args.json:
            tqdm.write(format_result(result) if "top" in result else
                       f"{result['file']}: {result['windows']} windows -> {', '.join(result['outputs'])}")
    if args.json:
        print(json.dumps(results, indent=2))
    if failed:
        print(f"error: {failed} of {len(args.files)} file(s) could not be read", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_cli(main)
