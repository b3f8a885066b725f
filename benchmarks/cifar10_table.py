"""The Keras CIFAR-10 TokenLearner table with our trainer: runs the rows, collects test top-1.

Usage:
    # every row on the CIFAR-10 JPEG mirror, one after the other (about 1.5 h per row on 2 CPU cores)
    python benchmarks/cifar10_table.py --archive cifar10_jpeg.tar.gz
    python benchmarks/cifar10_table.py --archive cifar10_jpeg.tar.gz --rows tl8 no_tl
    python benchmarks/cifar10_table.py --archive cifar10_jpeg.tar.gz --dry-run       # commands only
    python benchmarks/cifar10_table.py --archive cifar10_jpeg.tar.gz --collect-only  # table from runs/
    python benchmarks/cifar10_table.py                      # real CIFAR-10 through torchvision (downloads it)
    python benchmarks/cifar10_table.py --archive cifar10_jpeg.tar.gz --collect-only --update-docs

Rows (``--rows``, in this order by default; one config file each in configs/):

    no_tl       cifar10_vit.yaml          no TokenLearner, 4 blocks         Keras 56.112%
    tl8         cifar10_vit_tl.yaml       TokenLearner v1, 8 tokens         Keras 56.55%
    tl4         cifar10_vit_tl4.yaml      TokenLearner v1, 4 tokens         Keras 56.498%
    depth8      cifar10_vit_depth8.yaml   no TokenLearner, 8 blocks         Keras 55.36%
    v11_tl8     cifar10_vit_v11_tl8.yaml  TokenLearner v1.1 (MLP), 8 tokens Keras 54.898% (grouped-conv v1.1)
    tl8_plus    cifar10_vit_tl_plus.yaml  TokenLearner v1, 8, our recipe    (no Keras row; target >= 68%)
    tl8_reg     cifar10_vit_tl_reg.yaml   tl8_plus + RandAugment, erasing   (no Keras row; goal >= 76%)

Each row is one ``accelerate launch tools/train.py --config CONFIG [overrides]`` subprocess; its output
streams through. The trainer evaluates the best-val weights on ``run.test_split: test`` and writes
``<run dir>/eval_test/report.json``; this script reads test top-1 from there, so runs launched by hand
with the printed command count too: ``--collect-only`` rebuilds the table from ``--runs-dir`` without
training. A row's run is the newest run directory named ``<run.name>`` or ``<run.name>-N`` whose saved
config.yaml is of the same model and dataset (a run of the exact row config is preferred; any other
difference, e.g. ``optim.epochs=1``, is printed in the row's notes). Rows that already have a result are
not run again unless ``--rerun``. A row whose run directory is not here (``runs/`` is not in git) keeps the
result recorded in ``--out``.json (if of the same model), with a note, compared with today's row config; it
counts as a result. A row without a result shows "not run" and its command, never a guess.

Dataset: ``--archive PATH`` trains on an image-folder archive (``cifar10_jpeg/{train,test}/<class>/*.jpg``)
with the overrides ``data.kind=image_folder data.archive=PATH data.split_seed=0`` (10k random val images);
without it, on CIFAR-10 through torchvision (``download: true``, Keras' exact split).

GFLOPs are multiply-adds per image counted by our counter (vivit_tl.models.flops, meta device), not
comparable with the Keras utility's numbers (0.0184 for the plain model). Wall time: the trainer's clock
(the last ``time/elapsed_s`` in metrics.jsonl: start to test report, the segments of a resumed run summed);
for runs without it, the launch-to-report time this script measured (``<run dir>/cifar10_table_timing.json``,
whose optional ``source`` field names another origin), else the file times of config.yaml (rewritten when
a run resumes) to the test report; the table notes every row whose time does not come from the trainer.
The seed's top-1 is a mean over 5 runs; ours is one run (``run.seed: 0``).

Writes ``--out``.json (every field of every row) and ``--out``.md, atomically, after every row; the table
always lists every row (``--rows`` only chooses what to run). The default ``--out`` is one per dataset:
``benchmarks/results/cifar10_table`` for the JPEG mirror, ``..._torchvision`` for torchvision's CIFAR-10;
a results file of another dataset is never overwritten. ``--update-docs`` also writes the table to
``docs/generated/cifar10_table.md``, which the documentation's CIFAR-10 page includes; there the archive
is shown by its file name (the commands run from the repository root with the archive there).
Exit status: 0, 1 when a launched row failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from vivit_tl.checkpoint import WEIGHTS_NAME, atomic_write_text, read_model_info
from vivit_tl.config import TrainConfig
from vivit_tl.errors import UserError, run_cli

RESULTS_DIR = REPO / "benchmarks" / "results"
DOCS_TABLE = REPO / "docs" / "generated" / "cifar10_table.md"
TIMING_NAME = "cifar10_table_timing.json"
TEST_SPLIT = "test"
DATASETS = {"jpeg": "CIFAR-10 (JPEG q75 mirror)", "torchvision": "CIFAR-10 (torchvision)"}
FLOPS_NOTE = ("GFLOPs: multiply-adds per 48×48 image from our counter (`vivit_tl.models.flops`), not comparable "
              "with the Keras utility's numbers (0.0184 for the plain model, 0.0153 with 8 tokens)")
# Config keys that do not change what a run measures (paths, logging, workers, threads, the run's name).
IGNORED_KEYS = {"data.num_workers", "data.num_threads", "data.cache_dir", "data.download", "data.archive", "data.root",
                "run.name", "run.output_dir", "run.log_every_steps", "run.save_every_steps", "run.keep_last",
                "run.cpu_threads"}


@dataclass(frozen=True)
class Row:
    """One row of the table: a config file and the Keras example's published number for it."""

    id: str
    config: str  # file name in configs/
    description: str
    seed_top1: float | None  # Keras, top-1 in %, mean of 5 runs (the Keras example's table)
    seed_note: str = ""


ROWS: tuple[Row, ...] = (
    Row("no_tl", "cifar10_vit.yaml", "no TokenLearner", 56.112,
        "Keras' second no-TokenLearner run set: 56.37%"),
    Row("tl8", "cifar10_vit_tl.yaml", "TokenLearner v1, 8 tokens", 56.55),
    Row("tl4", "cifar10_vit_tl4.yaml", "TokenLearner v1, 4 tokens", 56.498),
    Row("depth8", "cifar10_vit_depth8.yaml", "no TokenLearner, 8 blocks", 55.36),
    Row("v11_tl8", "cifar10_vit_v11_tl8.yaml", "TokenLearner v1.1 (MLP form), 8 tokens", 54.898,
        "Keras' v1.1 is the grouped 1×1-conv form (8 groups; 4 groups: 55.196%): nearest row, not the same module"),
    Row("tl8_plus", "cifar10_vit_tl_plus.yaml", "TokenLearner v1, 8 tokens, improved recipe", None,
        "same model and 20 epochs as tl8; warm-up + cosine, stronger crop, label smoothing, wd 0.05; target ≥ 68%"),
    Row("tl8_reg", "cifar10_vit_tl_reg.yaml", "TokenLearner v1, 8 tokens, improved recipe + regularisation", None,
        "tl8_plus plus RandAugment (2 ops, magnitude 7) and random erasing (p 0.25); goal ≥ 76%"),
)
ROW_IDS = [row.id for row in ROWS]


# --------------------------------------------------------------------------- commands and configs
def dataset_overrides(archive: str | None) -> list[str]:
    """Config overrides that select the dataset: the image-folder archive, or none (torchvision)."""
    if archive is None:
        return []
    return ["data.kind=image_folder", f"data.archive={archive}", "data.split_seed=0"]


def row_overrides(archive: str | None, extra: list[str], runs_dir: str) -> list[str]:
    """All overrides of a row's command: dataset, ``run.output_dir`` when not the default, then ``--set``."""
    out = dataset_overrides(archive)
    if Path(runs_dir) != Path("runs"):
        out.append(f"run.output_dir={runs_dir}")
    return out + list(extra)


def command(row: Row, overrides: list[str], launch_args: list[str]) -> list[str]:
    """The row's command line, as shown in the table (run from the repository root)."""
    return ["accelerate", "launch", *launch_args, "tools/train.py", "--config", f"configs/{row.config}", *overrides]


def expected_config(row: Row, overrides: list[str]):
    """The TrainConfig a run of this row command saves (UserError if the row config is invalid)."""
    from vivit_tl.config import load_config

    return load_config(REPO / "configs" / row.config, overrides)


def dataset_label(archive: str | None) -> str:
    """How results on this dataset are reported: the JPEG mirror must not be called CIFAR-10."""
    if archive is None:
        return DATASETS["torchvision"]
    name = Path(archive).name
    return DATASETS["jpeg"] if name.startswith("cifar10_jpeg") else f"image-folder archive {name}"


def dataset_key(cfg) -> str | None:
    """'jpeg' / 'torchvision' for the data section of a config, None for any other dataset."""
    if cfg.data.kind == "cifar10":
        return "torchvision"
    if cfg.data.kind == "image_folder" and cfg.data.archive:
        return "jpeg"
    return None


def flat_config(cfg) -> dict[str, Any]:
    """``{"optim.epochs": 20, ...}``: the keys of a config that change what a run measures."""
    flat = {f"{section}.{key}": value for section, values in cfg.to_dict().items() for key, value in values.items()
            if f"{section}.{key}" not in IGNORED_KEYS}
    return json.loads(json.dumps(flat))  # as stored in the results file (tuples become lists)


def config_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """``['optim.epochs=1 (row: 20)', ...]``: keys of two flat configs whose values differ, sorted.

    A key that ``actual`` lacks was added to the config after that run, which therefore ran with the
    key's default: it differs only where the row sets another value.
    """
    defaults = flat_config(TrainConfig())
    return [f"{key}={actual.get(key)!r} (row: {expected.get(key)!r})"
            for key in sorted(set(expected) | set(actual))
            if actual.get(key, defaults.get(key)) != expected.get(key)]


def model_cost(cfg) -> dict[str, Any]:
    """Parameters, GFLOPs and tokens per block of a config's model at its data's input size."""
    from vivit_tl.models.flops import model_cost as cost

    overrides = {**cfg.model.overrides, "num_classes": 10, "num_frames": cfg.data.num_frames,
                 "image_size": cfg.data.image_size}
    return cost(cfg.model.name, **overrides)


# --------------------------------------------------------------------------- collecting results
def candidate_runs(runs_dir: Path, run_name: str) -> list[Path]:
    """Run directories ``run_name`` and ``run_name-N`` under ``runs_dir``."""
    if not runs_dir.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(run_name)}(-\d+)?")
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and pattern.fullmatch(p.name))


def trainer_clock(metrics_path: Path) -> float | None:
    """The trainer's clock on the test-report line (start to report, resumed segments summed), if it logged one."""
    from vivit_tl.engine.metrics_log import read_metrics

    reports = [r for r in read_metrics(metrics_path) if f"{TEST_SPLIT}/top1" in r]
    return reports[-1].get("time/elapsed_s") if reports else None


def read_run(run_dir: Path, expected) -> dict[str, Any] | None:
    """The result of a finished run of the same model and dataset as ``expected``, else None."""
    from vivit_tl.config import load_config

    report_path = run_dir / f"eval_{TEST_SPLIT}" / "report.json"
    config_path = run_dir / "config.yaml"
    if not (report_path.is_file() and config_path.is_file()):
        return None
    try:
        saved = load_config(config_path)
        report = json.loads(report_path.read_text())
    except (UserError, ValueError, OSError) as exc:
        print(f"warning: skipping {run_dir}: {exc}", file=sys.stderr)
        return None
    if (saved.model.name, saved.model.overrides) != (expected.model.name, expected.model.overrides):
        return None
    if dataset_key(saved) != dataset_key(expected) or report.get("top1") is None:
        return None
    timing_path = run_dir / TIMING_NAME
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    clock = trainer_clock(run_dir / "metrics.jsonl")
    if clock is not None:
        wall, source = clock, "trainer"
    elif timing.get("wall_time_s") is not None:
        wall, source = timing["wall_time_s"], timing.get("source", "launcher")
    else:
        wall, source = report_path.stat().st_mtime - config_path.stat().st_mtime, "file times"
    run_config = flat_config(saved)
    best_val = None
    best_weights = run_dir / "best" / WEIGHTS_NAME
    if best_weights.is_file():  # the header: the same in folders of both layouts (config.json or model.json)
        best_val = (read_model_info(best_weights).get("metrics") or {}).get("val/top1")
    return {
        "run_dir": str(display_path(run_dir)),
        "top1": 100 * report["top1"],
        "top5": None if report.get("top5") is None else 100 * report["top5"],
        "num_evaluated": report.get("num_evaluated"),
        "best_val_top1": None if best_val is None else 100 * best_val,
        "wall_time_s": wall,
        "wall_time_source": source,
        "machine": timing.get("machine"),
        "run_config": run_config,
        "config_differences": config_differences(flat_config(expected), run_config),
        "finished": datetime.datetime.fromtimestamp(report_path.stat().st_mtime).isoformat(timespec="seconds"),
    }


def collect(row: Row, expected, runs_dir: Path) -> dict[str, Any] | None:
    """The newest finished run of the row, preferring runs of exactly the row config."""
    found = [(p, r) for p, r in ((p, read_run(p, expected)) for p in candidate_runs(runs_dir, expected.run.name)) if r]
    if not found:
        return None
    report_time = {p: (p / f"eval_{TEST_SPLIT}" / "report.json").stat().st_mtime for p, _ in found}
    return max(found, key=lambda pr: (not pr[1]["config_differences"], report_time[pr[0]]))[1]


def recorded_results(results_path: Path, dataset: str) -> dict[str, dict[str, Any]]:
    """Finished rows of an earlier results file, by row id (runs/ is not in git: a fresh clone rebuilding the table
    keeps the measured rows whose run directories are elsewhere). UserError if it holds another dataset's table."""
    if not results_path.is_file():
        return {}
    try:
        payload = json.loads(results_path.read_text())
    except (ValueError, OSError) as exc:
        print(f"warning: ignoring the earlier results in {results_path}: {exc}", file=sys.stderr)
        return {}
    if payload.get("dataset") != dataset:
        raise UserError(f"{results_path} holds the table on {payload.get('dataset')}, not on {dataset}; "
                        "pass another --out")
    return {r["id"]: r for r in payload.get("rows", []) if r.get("status") == "done" and r.get("run_config")}


def from_record(record: dict[str, Any], expected, results_path: Path) -> dict[str, Any] | None:
    """A row's result as recorded in an earlier results file, its differences recomputed against today's row
    config; None when the recorded run is of another model."""
    differences = config_differences(flat_config(expected), record["run_config"])
    if any(d.startswith("model.") for d in differences):
        return None
    keep = ("run_dir", "top1", "top5", "num_evaluated", "best_val_top1", "wall_time_s", "wall_time_source", "machine",
            "run_config", "finished")
    return {**{key: record.get(key) for key in keep}, "config_differences": differences,
            "recorded_in": str(display_path(results_path))}


def row_result(row: Row, expected, runs_dir: Path, recorded: dict[str, dict[str, Any]],
               results_path: Path) -> dict[str, Any] | None:
    """The row's newest finished run under ``runs_dir``, else its result recorded in ``results_path``, else None."""
    result = collect(row, expected, runs_dir)
    if result is None and row.id in recorded:
        result = from_record(recorded[row.id], expected, results_path)
    return result


# --------------------------------------------------------------------------- running rows
def machine() -> str:
    """A one-line description of where the wall time was measured."""
    import torch

    text = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    if torch.cuda.is_available():
        text += f", {torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    return text


def accelerate_executable() -> str:
    """``accelerate`` next to this Python (the venv), else the one on PATH."""
    local = Path(sys.executable).with_name("accelerate")
    if local.is_file():
        return str(local)
    found = shutil.which("accelerate")
    if found is None:
        raise UserError("the 'accelerate' command was not found next to this Python or on PATH; "
                        "install the project (pip install -e .) in this environment")
    return found


def launch(row: Row, argv: list[str]) -> tuple[int, Path | None, float]:
    """Run one row; stream its output. Returns (exit status, run directory or None, seconds)."""
    run_dir = None
    start = time.time()
    with subprocess.Popen([accelerate_executable(), *argv[1:]], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            match = re.match(r"run directory:\s*(\S.*)$", line.strip())
            if match and run_dir is None:
                run_dir = Path(match.group(1))
                run_dir = run_dir if run_dir.is_absolute() else REPO / run_dir
        status = proc.wait()
    return status, run_dir, time.time() - start


# --------------------------------------------------------------------------- the table
def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def build_rows(args: argparse.Namespace, launched: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per row of the table (every row): config, cost, command, and the result (or "not run")."""
    runs_dir = resolve_runs_dir(args.runs_dir)
    results_path = Path(args.out).with_suffix(".json")
    recorded = recorded_results(results_path, dataset_label(args.archive))
    records = []
    for row in ROWS:
        overrides = row_overrides(args.archive_display, args.set, args.runs_dir)
        cfg = expected_config(row, overrides)
        cost = model_cost(cfg)
        result = row_result(row, cfg, runs_dir, recorded, results_path)
        record: dict[str, Any] = {
            "id": row.id,
            "config": f"configs/{row.config}",
            "description": row.description,
            "model": cfg.model.name,
            "model_overrides": cfg.model.overrides,
            "seed_top1": row.seed_top1,
            "seed_note": row.seed_note,
            "params": cost["params"],
            "gflops": cost["gflops"],
            "tokens_per_block": cost["tokens_per_block"],
            "command": shell_join(command(row, overrides, args.launch_args)),
            "status": "done" if result else "not run",
            **(result or {}),
        }
        if not result and row.id in launched:
            record["last_attempt"] = launched[row.id]
        records.append(record)
    return records


def markdown_table(records: list[dict[str, Any]], dataset: str) -> str:
    """The table and its notes (the documentation's CIFAR-10 page shows exactly this)."""
    lines = [
        f"Dataset: {dataset}. Test top-1 of the best-val weights, one run each; the seed column is the Keras "
        "example's mean of 5 runs on the original CIFAR-10. " + FLOPS_NOTE + ". Commands run from the "
        "repository root.",
        "",
        "| row | model | seed top-1 (Keras) | our top-1 | GFLOPs (ours) | params | wall time | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in records:
        seed = "–" if r["seed_top1"] is None else f"{r['seed_top1']:g}%"
        marks = []
        if r["seed_note"]:
            notes.append(f"`{r['id']}`: {r['seed_note']}.")
            marks.append(str(len(notes)))
        if r["status"] == "done":
            ours = f"{r['top1']:.2f}%"
            source = r.get("wall_time_source")
            if source != "trainer":
                what = {"launcher": "launch to test report, measured by this script",
                        "file times": "file times (run launched by hand)"}.get(source, source)
                notes.append(f"`{r['id']}`: wall time from {what}.")
                marks.append(str(len(notes)))
            if r.get("recorded_in"):
                notes.append(f"`{r['id']}`: as recorded in {r['recorded_in']} (finished {r['finished']}); its run "
                             f"directory {r['run_dir']} was not found here.")
                marks.append(str(len(notes)))
            if r.get("config_differences"):
                notes.append(f"`{r['id']}`: run {r['run_dir']} differs from the row config: "
                             + "; ".join(r["config_differences"]) + ".")
                marks.append(str(len(notes)))
        else:
            ours = "not run"
            if r.get("last_attempt"):
                notes.append(f"`{r['id']}`: last attempt failed: {r['last_attempt']['error']}.")
                marks.append(str(len(notes)))
        name = f"`{r['id']}`" + (f" ({', '.join(marks)})" if marks else "")
        lines.append(f"| {name} | {r['description']} | {seed} | {ours} | {r['gflops']:.4f} | "
                     f"{r['params'] / 1e6:.2f} M | {fmt_time(r.get('wall_time_s'))} | `{r['command']}` |")
    if notes:
        lines += ["", *[f"{i}. {note}" for i, note in enumerate(notes, 1)]]
    machines = sorted({r["machine"] for r in records if r.get("machine")})
    if machines:
        lines += ["", "Wall time: start to test report by the trainer's clock (the segments of a resumed run summed) "
                  "unless noted, on " + "; ".join(machines) + "."]
    return "\n".join(lines) + "\n"


def write_outputs(records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    dataset = dataset_label(args.archive)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown_table(records, dataset)
    payload = {
        "dataset": dataset,
        "archive": args.archive_display,
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "runs_dir": args.runs_dir,
        "flops_convention": FLOPS_NOTE,
        "rows": records,
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), f"# The Keras CIFAR-10 TokenLearner table with vivit-tl\n\n{table}")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    if args.update_docs:
        docs_table = Path(args.docs_table)
        docs_table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(docs_table, docs_markdown(table, args.archive_display))
        print(f"wrote {docs_table}")


def docs_markdown(table: str, archive_display: str | None) -> str:
    """The table as the documentation shows it: the archive by its file name, not this machine's path."""
    if archive_display is None:
        return table
    return table.replace(f"data.archive={archive_display}", f"data.archive={Path(archive_display).name}")


# --------------------------------------------------------------------------- command line
def display_path(path: Path) -> Path:
    """Relative to the repository root when inside it, else as given."""
    resolved = path.resolve()
    return resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else path


def default_out(archive: str | None) -> Path:
    """One results file per dataset: the JPEG mirror's is the table of the docs."""
    if archive is None:
        return RESULTS_DIR / "cifar10_table_torchvision"
    name = Path(archive).name
    return RESULTS_DIR / ("cifar10_table" if name.startswith("cifar10_jpeg") else f"cifar10_table_{name.split('.')[0]}")


def resolve_runs_dir(runs_dir: str) -> Path:
    path = Path(runs_dir)
    return path if path.is_absolute() else REPO / path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=ROW_IDS, default=ROW_IDS, metavar="ROW",
                        help=f"rows to run, in the given order (default: all: {' '.join(ROW_IDS)}); the table "
                             "always lists every row")
    parser.add_argument("--archive", metavar="PATH",
                        help="train on this image-folder archive (the CIFAR-10 JPEG mirror); "
                             "default: CIFAR-10 through torchvision")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the commands of the rows to run; run nothing")
    mode.add_argument("--collect-only", action="store_true",
                      help="write the table from existing run directories; run nothing")
    parser.add_argument("--rerun", action="store_true", help="run rows again even when they already have a result")
    parser.add_argument("--runs-dir", default="runs", metavar="DIR",
                        help="run.output_dir of the rows, relative to the repository root (default: runs)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="an extra config override for every row (repeatable), e.g. data.num_workers=0")
    parser.add_argument("--launch-args", default="", metavar="'ARGS'",
                        help="arguments for 'accelerate launch' before the script, e.g. "
                             "'--num_processes 1 --mixed_precision no' (default: your accelerate config)")
    parser.add_argument("--out", metavar="STEM",
                        help="output path without suffix: writes STEM.json and STEM.md (default: "
                             "benchmarks/results/cifar10_table for the JPEG mirror, cifar10_table_torchvision "
                             "without --archive, cifar10_table_<archive name> for another archive)")
    parser.add_argument("--update-docs", action="store_true",
                        help=f"also write the table to {DOCS_TABLE.relative_to(REPO)}, which the docs' CIFAR-10 "
                             "page includes")
    parser.add_argument("--docs-table", default=str(DOCS_TABLE), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.launch_args = shlex.split(args.launch_args)
    args.archive_display = None
    if args.archive:
        archive = Path(args.archive).expanduser().resolve()
        if not archive.is_file():
            raise UserError(f"--archive: no such file: {args.archive}")
        # shown and passed relative to the repository root (the commands run there) when it is inside
        # the repository or the ../shared folder beside it; otherwise absolute
        relative = os.path.relpath(archive, REPO)
        nearby = not relative.startswith("..") or relative.startswith(f"..{os.sep}shared{os.sep}")
        args.archive_display = relative if nearby else str(archive)
    args.out = args.out or str(default_out(args.archive))
    for item in args.set:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"--set {item!r} must look like section.key=value (e.g. data.num_workers=0)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = [next(r for r in ROWS if r.id == rid) for rid in args.rows]
    for row in rows:  # fail fast on a bad config or override, before hours of training
        expected_config(row, row_overrides(args.archive_display, args.set, args.runs_dir))
    dataset = dataset_label(args.archive)
    results_path = Path(args.out).with_suffix(".json")
    recorded = recorded_results(results_path, dataset)  # before any training: refuses another dataset's file
    launched: dict[str, dict[str, Any]] = {}
    failed = False
    if not args.collect_only:
        runs_dir = resolve_runs_dir(args.runs_dir)
        todo = []
        for row in rows:
            overrides = row_overrides(args.archive_display, args.set, args.runs_dir)
            done = None if args.rerun else row_result(row, expected_config(row, overrides), runs_dir, recorded,
                                                      results_path)
            if done and not done["config_differences"]:
                where = f"recorded in {done['recorded_in']}" if done.get("recorded_in") else f"in {done['run_dir']}"
                print(f"[{row.id}] already done: {done['top1']:.2f}% {where} (--rerun to run it again)")
                continue
            todo.append((row, command(row, overrides, args.launch_args)))
        if args.dry_run:
            print(f"# {len(todo)} row(s) to run on {dataset}, from {REPO}:")
            for row, argv in todo:
                print(f"# {row.id}: {row.description}\n{shell_join(argv)}")
            return 0
        for i, (row, argv) in enumerate(todo, 1):
            print(f"\n[{i}/{len(todo)}] {row.id} ({row.description}) on {dataset}\n$ {shell_join(argv)}", flush=True)
            try:
                status, run_dir, seconds = launch(row, argv)
            except KeyboardInterrupt:
                print(f"\ninterrupted during {row.id}; writing the table of what is finished", file=sys.stderr)
                write_outputs(build_rows(args, launched), args)
                return 130
            if status == 0 and run_dir is not None and run_dir.is_dir():
                timing = {"wall_time_s": seconds, "command": shell_join(argv), "machine": machine(),
                          "finished": datetime.datetime.now().isoformat(timespec="seconds")}
                atomic_write_text(run_dir / TIMING_NAME, json.dumps(timing, indent=2) + "\n")
                print(f"[{row.id}] finished in {fmt_time(seconds)}: {run_dir}")
            else:
                failed = True
                launched[row.id] = {"error": f"exit status {status} after {fmt_time(seconds)}",
                                    "run_dir": None if run_dir is None else str(run_dir)}
                print(f"[{row.id}] FAILED with exit status {status}; going on with the next row", file=sys.stderr)
            write_outputs(build_rows(args, launched), args)  # after every row: partial results are kept
    records = build_rows(args, launched)
    write_outputs(records, args)
    for r in records:
        ours = f"{r['top1']:.2f}%" if r["status"] == "done" else "not run"
        seed = "–" if r["seed_top1"] is None else f"{r['seed_top1']:g}%"
        print(f"  {r['id']:<9} seed {seed:>8}  ours {ours:>8}  {r['gflops']:.4f} GFLOPs  {fmt_time(r.get('wall_time_s'))}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
