"""Parameters, GFLOPs and tokens per block of a named model or a trained model file.

GFLOPs are multiply-adds (the ViViT / TokenLearner papers' convention), i.e. half of what
`torch.utils.flop_counter` reports; counted on the meta device (no memory, no compute), attention
included. See `vivit_tl.models.flops` for how.

Usage:
    vivit-tl flops --model vivit_b16x2                 # at the variant's own size (32 x 224²)
    vivit-tl flops --model vivit_b16x2_tl8 --json      # one JSON object
    vivit-tl flops --model vivit_b16x2 --frames 16 --size 160
    vivit-tl flops --model vit_cifar --set token_learner=v1.1 --set num_tokens=4 --set token_learner_loc=3
    vivit-tl flops --model runs/demo/best               # a model file (or its run directory)
    vivit-tl flops --all                               # a table of every variant
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from vivit_tl.checkpoint import read_model_info, resolve_model_file
from vivit_tl.cli import make_parser
from vivit_tl.errors import UserError, did_you_mean, run_cli
from vivit_tl.models import ModelConfig, list_models
from vivit_tl.models.flops import config_cost, model_cost


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--set expects KEY=VALUE (VALUE in JSON), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string such as v1.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("flops", __doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help=f"a registered variant ({', '.join(list_models())}) or a model file: its "
                                      "folder (e.g. runs/<name>/best) or a run directory")
    what.add_argument("--all", action="store_true", help="every registered variant, as a table")
    parser.add_argument("--frames", type=int, help="input frames (default: the model's num_frames)")
    parser.add_argument("--size", type=int, help="input frame side in pixels (default: the model's image_size)")
    parser.add_argument("--set", action="append", default=[], type=_override, metavar="KEY=VALUE",
                        help="override a ModelConfig field (VALUE parsed as JSON); repeatable")
    parser.add_argument("--json", action="store_true", help="print JSON (one object; a list with --all)")
    return parser.parse_args(argv)


def _summary(cost: dict) -> str:
    tokens = cost["tokens_per_block"]
    runs: list[str] = []  # run-length form: "3136 x6, 128 x6"
    for n in tokens:
        if runs and runs[-1][0] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    blocks = ", ".join(f"{n} x{k}" for n, k in runs)
    return (f"{cost['model']} @ {cost['frames']}x{cost['size']}²: params {cost['params'] / 1e6:.2f} M, "
            f"{cost['gflops']:.4g} GFLOPs (multiply-adds), tokens entering each block: {blocks}")


def cost_of(model: str, frames: int | None, size: int | None, overrides: dict) -> dict:
    """The cost of a registered variant, else of the model file or run directory at path ``model``."""
    if model in list_models():
        return model_cost(model, frames, size, **overrides)
    if not Path(model).exists():
        raise UserError(f"--model {model!r} is neither a registered variant{did_you_mean(model, list_models())} "
                        "nor an existing model file or run directory (see --help)")
    info = read_model_info(resolve_model_file(model))  # the header only: no weight is read
    return config_cost(ModelConfig.from_dict({**info["model_config"], **overrides}), model, frames, size)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = dict(args.set)
    names = list_models() if args.all else [args.model]
    costs = [cost_of(name, args.frames, args.size, overrides)
             for name in tqdm(names, desc="counting", disable=len(names) == 1 or args.json)]
    if args.json:
        print(json.dumps(costs if args.all else costs[0]))
    else:
        for cost in costs:
            print(_summary(cost))
    return 0


if __name__ == "__main__":
    run_cli(main)
