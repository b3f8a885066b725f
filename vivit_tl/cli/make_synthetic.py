"""Generate the synthetic Kinetics-style dataset (moving shapes, H.264 .mp4, per-frame boxes).

Usage:
    vivit-tl make-synthetic OUT [--seed 0] [--size 96] [--frames 32]
                                       [--train-per-class 200] [--val-per-class 25] [--workers 2]

Writes ``OUT/{train,val}/<class>/<class>_NNNN.mp4`` with ``<class>_NNNN.boxes.json`` next to each
video and ``OUT/meta.json``. Deterministic by seed. Training with ``data.kind: synthetic`` does not need this tool: it
generates the same dataset (default options) into the cache on first use. OUT must not exist
or be empty; nothing is ever deleted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vivit_tl.data.synthetic import CLASSES, SyntheticSpec, generate
from vivit_tl.cli import make_parser
from vivit_tl.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    defaults = SyntheticSpec()
    parser = make_parser("make-synthetic", __doc__)
    parser.add_argument("out", type=Path, help="output folder (must not exist or be empty)")
    for field in dataclasses.fields(SyntheticSpec):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=getattr(defaults, field.name),
                            help=f"(default: {getattr(defaults, field.name)})")
    args = parser.parse_args(argv)
    spec = SyntheticSpec.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)})
    try:
        out = generate(args.out, spec)
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    total = len(CLASSES) * (spec.train_per_class + spec.val_per_class)
    print(f"wrote {total} videos of {len(CLASSES)} classes ({', '.join(CLASSES)}) to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
