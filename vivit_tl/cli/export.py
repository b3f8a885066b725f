"""Export a model: a `torch.export` program (.pt2) or an ONNX file of the inference model, or a vivit-tl model file.

Usage:
    vivit-tl export MODEL --out model.pt2 [--frames F] [--size R] [--static] [--tol 1e-4]
    vivit-tl export MODEL --format onnx --out model.onnx [--frames F] [--size R] [--static] [--tol 1e-4]
    vivit-tl export hf:google/vivit-b-16x2-kinetics400 --out models/vivit_b16x2_k400 [--classes FILE]

MODEL is a vivit-tl model folder (``runs/<name>/best``), its model.safetensors, a run directory, a vivit-tl
model on the Hub (``hf:<repo id>``), or any ``model.init_from`` spec (``timm:<name>``, ``hf:<repo id>``, a weights file): a spec
builds a model of the source's own architecture with its weights (`vivit_tl.pretrained.pretrained_model`).

``--out FILE.pt2``: ``torch.export.export`` of ``model(x) -> logits`` for ``x [B, 3, F, R, R]`` float32
(already normalised), F and R fixed (default: the model's num_frames and image_size), the batch size B
dynamic (any B >= 1; ``--static`` fixes it to 2). The program is checked against the eager model on a
random batch: the maximum absolute logit difference is printed and the exit status is 1 when it exceeds
``--tol``. The .pt2 carries the model description (config, classes, preprocessing) as the extra file
``model.json``. Use it without vivit-tl::

    extra = {"model.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    logits = program.module()(clip)            # clip [B, 3, F, R, R], normalised as in model.json

``--format onnx`` (or ``--out FILE.onnx``): the same model through ``torch.onnx.export(..., dynamo=True)``,
input ``clip`` ``[B, 3, F, R, R]`` (B dynamic unless ``--static``), output ``logits``, the model
description as the metadata entry ``model.json``. It is checked with onnxruntime (CPU) against the
eager model on a batch of 3 (another size than the export's example of 2) like the .pt2: the maximum
absolute logit difference is printed, exit status 1 above ``--tol``. Needs the ``onnx`` extra
(``pip install 'vivit-tl[onnx]'``: onnx, onnxscript, onnxruntime). Use it without vivit-tl::

    session = onnxruntime.InferenceSession("model.onnx")
    logits = session.run(["logits"], {"clip": clip})[0]   # clip float32 numpy [B, 3, F, R, R]

``--out FOLDER``: the self-describing vivit-tl model folder (config.json + model.safetensors + README.md) that
vivit-tl eval, vivit-tl predict and vivit-tl visualize read. From a spec, the class names come from the
source (transformers ``id2label``) or ``--classes FILE`` (one per line), the preprocessing (mean/std)
from the source, the rest from the Kinetics preset (videos) or an image folder (images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from vivit_tl.cli import make_parser
from vivit_tl.errors import UserError, run_cli
from vivit_tl.export import (export_onnx, export_program, load_any, max_logit_difference, onnx_max_logit_difference,
                             write_model_file)

FORMATS = {".pt2": "pt2", ".onnx": "onnx"}  # --format from the --out suffix; anything else is a model folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("export", __doc__)
    parser.add_argument("model", help="vivit-tl model folder/file, or a timm:/hf:/weights-file spec")
    parser.add_argument("--out", type=Path, required=True,
                        help="FILE.pt2 (torch.export), FILE.onnx (ONNX) or a folder (model file)")
    parser.add_argument("--format", choices=("pt2", "onnx", "model-file"), default=None,
                        help="what to write (default: from the --out suffix: .pt2, .onnx, else a model folder)")
    parser.add_argument("--frames", type=int, default=None, help="frames F of the exported input (default: model's)")
    parser.add_argument("--size", type=int, default=None, help="frame side R of the exported input (default: model's)")
    parser.add_argument("--static", action="store_true", help="fix the batch size (2) instead of a dynamic batch")
    parser.add_argument("--tol", type=float, default=1e-4, help="max abs logit difference allowed (default 1e-4)")
    parser.add_argument("--classes", type=Path, default=None, help="class names, one per line (model-file output)")
    parser.add_argument("--tubelet-init", choices=("central_frame", "inflate"), default="central_frame",
                        help="tubelet kernel from a timm image model with tubelet_size > 1 (default central_frame)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tol < 0 or (args.frames is not None and args.frames < 1) or (args.size is not None and args.size < 1):
        raise UserError("--tol must be >= 0, --frames and --size >= 1")
    fmt = args.format or FORMATS.get(args.out.suffix, "model-file")
    with tqdm(total=4, desc="export", unit="step") as steps:
        steps.set_postfix_str("load")
        model, info = load_any(args.model, args.tubelet_init)
        steps.update()
        if fmt == "model-file":
            weights = write_model_file(model, info, args.out, args.classes)
            steps.update(3)
            print(f"model file: {weights}")
            return 0
        cfg = model.config
        frames, size = args.frames or cfg.num_frames, args.size or cfg.image_size
        model.tokenizer.grid(frames, size, size)  # a clear error for sizes that do not divide into tubelets
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(2, cfg.in_chans, frames, size, size, generator=generator)
        description = {k: info.get(k) for k in ("model_config", "classes", "data_config", "preprocessing", "source")}
        description["input"] = {"shape": ["B", cfg.in_chans, frames, size, size], "dtype": "float32",
                                "dynamic_batch": not args.static}
        check = example if args.static else torch.randn(3, *example.shape[1:], generator=generator)  # another batch
        if fmt == "onnx":
            steps.set_postfix_str("torch.onnx.export")
            export_onnx(model, example, args.out, description, dynamic_batch=not args.static)
            steps.update(2)
            steps.set_postfix_str("check (onnxruntime)")
            diff = onnx_max_logit_difference(args.out, model, check)
        else:
            steps.set_postfix_str("torch.export")
            program = export_program(model, example, dynamic_batch=not args.static)
            steps.update()
            steps.set_postfix_str("save")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            torch.export.save(program, args.out, extra_files={"model.json": json.dumps(description, indent=2)})
            steps.update()
            steps.set_postfix_str("check")
            diff = max_logit_difference(torch.export.load(args.out), model, check)
        steps.update()
    batch = 2 if args.static else "B"
    print(f"exported {args.out}: input [{batch}, {cfg.in_chans}, {frames}, {size}, {size}] -> logits "
          f"[{batch}, {cfg.num_classes}]; max abs logit difference vs eager: {diff:.3g} (tol {args.tol:g})")
    return 0 if diff <= args.tol else 1


if __name__ == "__main__":
    run_cli(main)
