"""Top-k labels of a trained model on video (or image) files, averaged over the evaluation views.

Usage:
    vivit-tl predict CHECKPOINT VIDEO [VIDEO ...] [--top-k 5] [--json] [--batch-size 8]

CHECKPOINT is a model folder (config.json + model.safetensors, or the older model.json + model.safetensors),
its model.safetensors, a run directory, or hf:<repo id> (a vivit-tl model on the Hub). Each file is read
with the checkpoint's own preprocessing (frames, stride, size, eval clips x crops); the logits of its
views are averaged and turned into probabilities. ``--json`` prints one JSON list on stdout with an
object per file: ``{"file", "views", "top": [{"label", "prob"}, ...]}`` or ``{"file", "error"}``.

A file that cannot be read gets a one-line ``error: FILE: reason`` on stderr; the other files are
still processed and the exit status is 2 at the end. A bad checkpoint stops at once (status 2).
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from vivit_tl.cli import make_parser
from vivit_tl.errors import run_cli
from vivit_tl.predict import Predictor

# what reading one file may raise for a bad file (decord's DECORDError is a RuntimeError)
FILE_ERRORS = (ValueError, OSError, RuntimeError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("predict", __doc__)
    parser.add_argument("checkpoint", help="model folder (config.json or model.json + model.safetensors), run directory, or hf:<repo id>")
    parser.add_argument("files", nargs="+", metavar="VIDEO", help="video or image files")
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per file (default 5)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    parser.add_argument("--batch-size", type=int, default=8, help="views per forward pass (default 8)")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be >= 1")
    return args


def format_result(result: dict) -> str:
    """Human-readable lines for one file's prediction."""
    lines = [f"{result['file']} ({result['views']} view{'s' * (result['views'] > 1)})"]
    width = max(len(entry["label"]) for entry in result["top"])
    lines += [f"  {i}. {e['label']:<{width}}  {100 * e['prob']:6.2f}%" for i, e in enumerate(result["top"], 1)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predictor = Predictor.load(args.checkpoint)
    results, failed = [], 0
    for path in tqdm(args.files, desc="predict", unit="file", disable=len(args.files) < 2):
        try:
            result = predictor.predict_file(path, k=args.top_k, batch_size=args.batch_size)
        except FILE_ERRORS as exc:
            failed += 1
            message = str(exc) if str(exc).startswith(path) else f"{path}: {exc}"
            tqdm.write(f"error: {message}", file=sys.stderr)
            results.append({"file": path, "error": str(exc)})
            continue
        results.append(result)
        if not args.json:
            tqdm.write(format_result(result))
    if args.json:
        print(json.dumps(results, indent=2))
    if failed:
        print(f"error: {failed} of {len(args.files)} file(s) could not be read", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_cli(main)
