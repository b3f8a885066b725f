"""The ``vivit-tl`` command: one entry point, a subcommand per job, each with ``--help``.

    vivit-tl train [--config NAME_OR_PATH] [section.key=value ...]
    vivit-tl eval MODEL DATA [--split val]
    vivit-tl predict MODEL VIDEO [VIDEO ...]
    vivit-tl visualize MODEL VIDEO --out DIR
    vivit-tl configs [--copy NAME OUT.yaml]

``python -m vivit_tl ...`` is the same command. Distributed training and evaluation go through
accelerate without a checkout: ``accelerate launch --multi_gpu --num_processes 8 -m vivit_tl train ...``.
In a checkout, ``tools/<name>.py`` runs the same code (``accelerate launch tools/train.py``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple, Sequence

from vivit_tl import __version__
from vivit_tl.errors import did_you_mean, run_cli


class Command(NamedTuple):
    module: str  # vivit_tl.cli.<module>, which has main(argv) -> int
    summary: str


COMMANDS: dict[str, Command] = {
    "train": Command("train", "train a model (accelerate launch -m vivit_tl train ... for several processes)"),
    "eval": Command("eval", "top-1/top-5 and per-class accuracy of a model file on a dataset"),
    "predict": Command("predict", "top-k labels of a model file on video or image files"),
    "visualize": Command("visualize", "TokenLearner attention maps over the frames of a clip"),
    "check-dataset": Command("check_dataset", "list unreadable files and class counts of a dataset folder"),
    "flops": Command("flops", "parameters, GFLOPs and tokens per block of a model"),
    "export": Command("export", "torch.export program (.pt2) or a vivit-tl model file from any model"),
    "make-synthetic": Command("make_synthetic", "generate the synthetic moving-shapes video dataset"),
    "prepare-videos": Command("prepare_videos", "re-encode a dataset's videos for fast loading (short side, keyframes)"),
    "configs": Command("configs", "list the packaged configs, or copy one out for editing"),
    "plot-metrics": Command("plot_metrics", "plot a run's training curves into a PNG"),
    "attention-box-check": Command("attention_box_check", "share of attention on the synthetic dataset's objects"),
}


def make_parser(command: str, doc: str) -> argparse.ArgumentParser:
    """The parser of ``vivit-tl <command>``: the docstring's first paragraph as description, the rest as epilog."""
    summary, _, details = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(prog=f"vivit-tl {command}", description=summary, epilog=details,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: vivit-tl <command> [--help] ...   (vivit-tl {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "`vivit-tl <command> --help` describes each command.",
              "Several processes: accelerate launch [--multi_gpu --num_processes N] -m vivit_tl train ..."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch ``vivit-tl <command> ARGS`` to ``vivit_tl.cli.<module>.main(ARGS)``; exits with its status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        print(f"vivit-tl {__version__}")
        sys.exit(0)
    name = args[0]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'{did_you_mean(name, list(COMMANDS))}; commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"vivit_tl.cli.{COMMANDS[name].module}")
    run_cli(lambda: module.main(args[1:]))
