"""Train a ViViT / TokenLearner model: the same command on a laptop CPU, one GPU, many GPUs or nodes.

Usage:
    vivit-tl train                                # the demo: synthetic videos, small ViViT + TokenLearner
    vivit-tl train --config cifar10_vit_tl data.archive=/data/cifar10_jpeg.tar.gz
    vivit-tl train --config NAME_OR_PATH optim.lr=3e-4 run.name=try2 model.depth=6
    vivit-tl train --resume                       # continue runs/<run.name> from its latest checkpoint
    vivit-tl train --resume runs/demo/checkpoints/step_00000120

    # several processes through accelerate (any of these; accelerate's flags come first):
    accelerate launch -m vivit_tl train ...                  # installed package
    accelerate launch tools/train.py ...                     # in a checkout
    # one CPU / one GPU, no accelerate config file needed:
    accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no -m vivit_tl train
    # 8 GPUs on one machine (DDP), bf16:
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 -m vivit_tl train --config kinetics400_vivit_b16x2_tl
    # 2 nodes x 8 GPUs: run on every node with its --machine_rank (0 on the main node)
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 -m vivit_tl train --config kinetics400_vivit_b16x2_tl

--config takes a YAML file or the name of a packaged config (``vivit-tl configs`` lists them).
Overrides are ``section.key=value`` (sections: model, data, optim, run); a misspelt key is an error
listing the valid ones. The run directory ``run.output_dir/run.name`` (``name-2``... when that run
already has results) receives config.yaml, metrics.jsonl, checkpoints/ (exact resume), best/ and
last/ (self-describing model files) and eval_<split>/ (report of the best weights). A resumed run
uses its saved config.yaml, with the overrides given now applied on top.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from vivit_tl.cli import make_parser
from vivit_tl.errors import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("train", __doc__)
    parser.add_argument("--config", default=None,
                        help="YAML file or the name of a packaged config (default: demo; `vivit-tl configs` lists them)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                        help="continue a run: its latest checkpoint, or the run directory / checkpoint PATH")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        # `--resume run.name=x`: a bare --resume followed by an override, not a PATH
        args.overrides.insert(0, args.resume)
        args.resume = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from vivit_tl.config import load_config
    from vivit_tl.engine.distributed import process_state
    from vivit_tl.engine.evaluation import accuracy_line
    from vivit_tl.engine.trainer import train

    cfg = load_config(args.config, args.overrides)
    outcome = train(cfg, resume=args.resume, overrides=args.overrides)
    if not process_state().is_main_process:
        return 0
    metrics = outcome.final_metrics
    model = shlex.quote(str(outcome.best_model))
    print()
    print(f"run directory: {outcome.run_dir}")
    print(f"model file:    {outcome.best_model} (best val top-1 "
          f"{'n/a' if outcome.best_val_top1 is None else f'{100 * outcome.best_val_top1:.2f}%'})")
    print(f"{outcome.final_split}: {accuracy_line(metrics)} "
          f"on {metrics.get('num_evaluated')} {outcome.data.samples_noun}; report, per-class accuracy and confusion matrix in "
          f"{outcome.report_dir}")
    print("next:")
    print(f"  vivit-tl eval {model} {shlex.quote(str(outcome.data_root))} --split {outcome.final_split}")
    if outcome.data.num_frames > 1:  # the temporal control means nothing for one-frame clips (images)
        print(f"  vivit-tl eval {model} {shlex.quote(str(outcome.data_root))} --split {outcome.final_split} "
              "--shuffle-frames   # control: frame order destroyed")
    if outcome.example_file:
        print(f"  vivit-tl visualize {model} {shlex.quote(str(outcome.example_file))} --out "
              f"{shlex.quote(str(outcome.run_dir / 'maps'))}")
    print(f"  share on the Hugging Face Hub (Python): "
          f"VideoTransformer.from_pretrained({str(outcome.best_model)!r}).push_to_hub('<user>/<name>')")
    return 0


if __name__ == "__main__":
    run_cli(main)
