"""Evaluate a model file on a dataset: top-1/top-5 over multi-view averaged logits, per class.

Usage:
    vivit-tl eval CHECKPOINT DATA [--split val] [--out DIR] [--batch-size 16]
        [--shuffle-frames [SEED]] [--device auto|cpu|cuda] [--dtype float32|bfloat16|float16] [data.key=value ...]
    accelerate launch --multi_gpu --num_processes 8 vivit-tl eval CHECKPOINT DATA   # same result, faster

CHECKPOINT is a model folder (``runs/<name>/best``: config.json + model.safetensors, or the older
model.json + model.safetensors), its model.safetensors, a run directory (then its best/, else last/), or
``hf:<repo id>`` (a vivit-tl model on the Hugging Face Hub, downloaded and cached). DATA is the dataset root, read with the checkpoint's own
data config (kind, frames, stride, size, normalisation, eval clips x crops, class names); any of
those can be changed with ``data.key=value`` (e.g. ``data.eval_clips=4 data.eval_crops=3``).

Writes into ``--out`` (default ``<checkpoint folder>/eval_<split>``, ``_shuffled`` with
``--shuffle-frames``; ``./eval_<split>`` for a Hub model): ``report.json`` (top-1, top-5, loss, per-class accuracy, unreadable
videos), ``confusion_matrix.csv`` and ``confusion_matrix.png``. Every sample is counted exactly
once under any number of processes; videos that cannot be read are reported and excluded.

``--device auto`` (the default) leaves the choice to accelerate (the GPU of each process when there
is one), ``--device cpu`` runs on the CPU even on a GPU machine. ``--dtype bfloat16|float16`` is
accelerate's mixed precision (autocast); float16 needs CUDA.

``--shuffle-frames`` is the temporal control: every clip's frames are permuted (a fixed
permutation per video), so a model that uses motion loses accuracy on motion classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vivit_tl.cli import make_parser
from vivit_tl.device import add_device_arguments
from vivit_tl.errors import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("eval", __doc__)
    parser.add_argument("checkpoint", help="model folder, model file, run directory, or hf:<repo id>")
    parser.add_argument("data", help="dataset root folder")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the data config's val_split)")
    parser.add_argument("--out", type=Path, default=None, help="report folder")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per batch and process (default 16)")
    parser.add_argument("--shuffle-frames", nargs="?", type=int, const=0, default=None, metavar="SEED",
                        help="control: permute the frames of every clip (seed default 0)")
    add_device_arguments(parser)
    parser.add_argument("overrides", nargs="*", metavar="data.key=value", help="data config overrides")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from vivit_tl.checkpoint import load_model_file, report_dir
    from vivit_tl.config import override_dataclass
    from vivit_tl.data import DataConfig, build_dataset, synthetic
    from vivit_tl.device import ACCELERATE_PRECISION, autocast_dtype, resolve_device
    from vivit_tl.engine.distributed import make_accelerator, set_cpu_threads
    from vivit_tl.engine.evaluation import accuracy_line, evaluate, pct, write_report
    from vivit_tl.engine.loader import build_eval_loader
    from vivit_tl.errors import UserError

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if ":" in args.device:
        raise UserError(f"--device {args.device}: eval takes auto, cpu or cuda (choose GPUs with CUDA_VISIBLE_DEVICES)")
    device = resolve_device(args.device)
    autocast_dtype(args.dtype, device)  # refuses float16 on the CPU
    data_root = Path(args.data)
    if not data_root.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_root}")
    model, info = load_model_file(args.checkpoint)
    data_cfg = DataConfig.from_dict({**info["data_config"], "root": str(data_root), "archive": None,
                                     "classes": info["classes"]})
    data_cfg = override_dataclass(data_cfg, args.overrides, "data")
    if data_cfg.kind == "synthetic" and not synthetic.is_complete(data_root):
        # a model trained on the generated dataset, evaluated on a folder of the same layout
        print(f"{data_root} is not a generated synthetic dataset (no meta.json): reading it as "
              "data.kind=video_folder")
        data_cfg = override_dataclass(data_cfg, ["kind=video_folder"], "data")
    split = args.split or data_cfg.val_split
    accelerator = make_accelerator(cpu=args.device == "cpu", mixed_precision=ACCELERATE_PRECISION[args.dtype])
    set_cpu_threads(None, accelerator.state)
    dataset = build_dataset(data_cfg, split, train=False)
    if list(dataset.classes) != list(info["classes"]):
        raise UserError(f"classes of {data_root} ({split}) differ from the checkpoint's {info['classes']}")
    loader = accelerator.prepare(build_eval_loader(dataset, batch_size=args.batch_size,
                                                   num_workers=data_cfg.num_workers))
    model = accelerator.prepare_model(model, evaluation_mode=True)
    result = evaluate(model, loader, accelerator, num_views=dataset.num_views, classes=info["classes"],
                      shuffle_frames_seed=args.shuffle_frames, desc=f"eval {split}")
    if not accelerator.is_main_process:
        return 0
    suffix = "_shuffled" if args.shuffle_frames is not None else ""
    out = args.out or report_dir(info, f"eval_{split}{suffix}")
    report = write_report(result, out, {
        "model": info["path"], "data": str(data_root), "split": split, "views_per_video": dataset.num_views,
        "shuffle_frames_seed": args.shuffle_frames, "processes": accelerator.num_processes,
    })
    width = max(len(c) for c in info["classes"])
    for name, row in report["per_class"].items():
        print(f"  {name:<{width}}  {pct(row['top1']):>7}  ({row['count']} {data_cfg.samples_noun})")
    unreadable = f", {report['num_unreadable']} unreadable (excluded)" if report["num_unreadable"] else ""
    views = f" x {dataset.num_views} views" if dataset.num_views > 1 else ""
    print(f"{split}{' (frames shuffled)' if suffix else ''}: {accuracy_line(report)} "
          f"on {report['num_evaluated']} {data_cfg.samples_noun}{views}{unreadable}")
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
