"""Scan a dataset folder: which files are unreadable and why, and what the readable ones hold.

Used by ``vivit-tl check-dataset``. Reads only; never moves or deletes a file.
"""

from __future__ import annotations

import collections
import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np
from tqdm import tqdm

from .config import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .decoding import ReadError, read_frames, read_image  # imports torch before decord

FIELDS = ("path", "split", "class", "ok", "reason", "frames", "fps", "width", "height", "duration_s")


def find_media(root: Path) -> Iterator[Path]:
    """Every video and image file under ``root``, sorted (hidden files skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS):
                yield Path(dirpath, name)


def _fps(path: str) -> float | None:
    try:
        with av.open(path) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else None
    except (av.error.FFmpegError, IndexError):
        return None


def inspect_file(args: tuple[str, str, bool]) -> dict[str, Any]:
    """One report row. Videos: decode the first, middle and last frame (all frames with ``full``,
    which also counts the frames that really decode)."""
    root, rel, full = args
    path = os.path.join(root, rel)
    parts = Path(rel).parts
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(path=rel, split=parts[0] if len(parts) >= 3 else None,
               **{"class": parts[-2] if len(parts) >= 2 else None}, ok=True)
    try:
        if rel.lower().endswith(IMAGE_EXTENSIONS):
            frames = read_image(path)
            count, fps = 1, None
        else:
            seen: list[int] = []

            def pick(n: int) -> np.ndarray:
                seen.append(n)
                return np.arange(n) if full else np.unique([0, n // 2, n - 1])

            frames, _ = read_frames(path, pick)
            count, fps = seen[-1], _fps(path)
        row.update(frames=count, fps=fps, height=int(frames.shape[-3]), width=int(frames.shape[-2]),
                   duration_s=round(count / fps, 3) if fps else None)
    except ReadError as error:
        row.update(ok=False, reason=error.reason + (f": {error.detail}" if error.detail else ""))
    return row


def check_dataset(root: str | os.PathLike, workers: int = 2, full: bool = False, progress: bool = True) -> dict[str, Any]:
    """Inspect every media file under ``root`` with ``workers`` processes.

    Returns:
        The report: ``root``, ``num_files``, ``num_unreadable``, ``unreadable`` (path + reason),
        ``class_counts`` (split -> class -> readable files), ``totals`` and ``files`` (one row each).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    tasks = [(str(root), str(p.relative_to(root)), full) for p in find_media(root)]
    if not tasks:
        raise FileNotFoundError(f"no video or image files under {root}")
    bar = tqdm(total=len(tasks), desc=f"checking {root.name}", unit="file", disable=not progress)
    rows = []
    if workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            for row in pool.map(inspect_file, tasks, chunksize=max(1, min(32, len(tasks) // (8 * workers)))):
                rows.append(row)
                bar.update()
    else:
        for task in tasks:
            rows.append(inspect_file(task))
            bar.update()
    bar.close()
    counts: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    for row in rows:
        if row["ok"]:
            counts[row["split"] or "."][row["class"] or "."] += 1
    good = [r for r in rows if r["ok"]]
    videos = [r for r in good if r["fps"]]
    return {
        "root": str(root), "num_files": len(rows), "num_unreadable": len(rows) - len(good),
        "unreadable": [{"path": r["path"], "reason": r["reason"]} for r in rows if not r["ok"]],
        "class_counts": {s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
        "totals": {"frames": sum(r["frames"] for r in good),
                   "duration_s": round(sum(r["duration_s"] or 0 for r in videos), 3),
                   "resolutions": dict(collections.Counter(f"{r['width']}x{r['height']}" for r in good).most_common())},
        "files": rows,
    }


def write_report(report: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """``out`` (.json, the whole report) and the same name with .csv (one row per file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    table = out.with_suffix(".csv")
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(report["files"])
    return out, table


def summary(report: dict[str, Any], max_listed: int = 20) -> str:
    """A few lines for the terminal."""
    lines = [f"{report['num_files']} files under {report['root']}, {report['num_unreadable']} unreadable"]
    for item in report["unreadable"][:max_listed]:
        lines.append(f"  UNREADABLE {item['path']}: {item['reason']}")
    if report["num_unreadable"] > max_listed:
        lines.append(f"  ... and {report['num_unreadable'] - max_listed} more (see the report)")
    for split, classes in report["class_counts"].items():
        counts = list(classes.values())
        lines.append(f"split {split}: {sum(counts)} readable files in {len(classes)} classes "
                     f"(min {min(counts)}, max {max(counts)} per class)")
    totals = report["totals"]
    lines.append(f"frames {totals['frames']}, video duration {totals['duration_s']:.1f} s, "
                 f"resolutions {dict(list(totals['resolutions'].items())[:5])}")
    return "\n".join(lines)
