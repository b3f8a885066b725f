"""The run's ``metrics.jsonl``: an accelerate tracker that appends one JSON object per log call.

Each line has ``step`` and ``epoch`` plus any of ``train/loss``, ``train/acc``, ``lr``,
``val/loss``, ``val/top1``, ``val/top5``, ``val/mean_class_acc``, ``val_ema/*`` (the same for the EMA
weights, with ``optim.ema_decay``), ``train/bad_file_substitutions``, ``<split>/top1``, ``<split>/top5``,
``<split>/mean_class_acc`` (the final evaluation) and ``time/elapsed_s`` (the run's wall time, on the
validation and final lines). On resume the lines written after the checkpoint are
dropped (:func:`truncate_metrics`), so the log matches the resumed run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from accelerate.tracking import GeneralTracker

from vivit_tl.checkpoint import atomic_write_text

METRICS_NAME = "metrics.jsonl"


class JsonlTracker(GeneralTracker):
    """accelerate tracker writing ``metrics.jsonl`` (main process only)."""

    name = "jsonl"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    @property
    def tracker(self) -> Path:
        return self.path

    def log(self, values: dict[str, Any], step: Optional[int] = None, **kwargs: Any) -> None:
        record = {"step": step, **{k: _number(v) for k, v in values.items()}}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_metrics(path: str | Path, strict: bool = False) -> list[dict[str, Any]]:
    """The records of a metrics log (``path``: the file, or the run directory holding it).

    Lenient by default (resume, tables): a missing file gives ``[]`` and lines that are not complete
    JSON (one cut by a kill) are skipped. ``strict`` (plots): a missing file raises FileNotFoundError;
    a line that is not a JSON object with a numeric ``step``, or a log without records, raises
    ValueError naming the file and line. Blank lines are skipped in both modes.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        if strict:
            raise FileNotFoundError(f"metrics log not found: {path}")
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if strict:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            continue
        if strict and (not isinstance(record, dict) or not isinstance(record.get("step"), (int, float))):
            raise ValueError(f"{path}:{number}: expected a JSON object with a numeric 'step', got {line[:80]!r}")
        records.append(record)
    if strict and not records:
        raise ValueError(f"metrics log is empty: {path}")
    return records


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Keep only the records with ``step <= last_step`` (those written before the checkpoint)."""
    path = Path(path)
    if path.is_file():
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _number(value: Any) -> Any:
    """Python scalars from tensors; NaN/inf as strings (JSON has no NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
