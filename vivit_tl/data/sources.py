"""Sample indexes: which files (or in-memory images) make up a split, their labels and class names.

Class names map to indices by sorted order and are taken from the train split (so every split
of a dataset shares one map); ``DataConfig.classes`` pins them (e.g. from a checkpoint).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, DataConfig

log = logging.getLogger("vivit_tl.data")


@dataclass
class SampleIndex:
    """One split: ``names[i]`` (path relative to ``root``, or an id for in-memory data) has ``labels[i]``."""

    root: Path
    names: list[str]
    labels: list[int]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: np.ndarray) -> "SampleIndex":
        return SampleIndex(self.root, [self.names[i] for i in keep], [self.labels[i] for i in keep], self.classes)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def folder_classes(split_dir: Path) -> list[str]:
    """Sorted class folder names of ``root/<split>``."""
    return sorted(p.name for p in _require_dir(split_dir, "split folder").iterdir() if p.is_dir())


def _check_classes(found: list[str], classes: list[str], where: Path | str) -> None:
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{where} has classes {unknown[:5]} that are not in the class list "
                         f"({len(classes)} classes: {classes[:5]}...)")


def scan_folder(root: Path, split: str, extensions: tuple[str, ...], classes: list[str] | None) -> SampleIndex:
    """``root/<split>/<class>/**/*.<ext>`` (sorted; hidden files ignored)."""
    split_dir = _require_dir(root / split, f"split folder for split {split!r}")
    found = folder_classes(split_dir)
    classes = classes if classes is not None else found
    _check_classes(found, classes, split_dir)
    names, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames.sort()
            for filename in sorted(filenames):
                if filename.lower().endswith(extensions) and not filename.startswith("."):
                    names.append(os.path.relpath(os.path.join(dirpath, filename), root))
                    labels.append(label)
    if not names:
        raise FileNotFoundError(f"no files with extensions {list(extensions)} under {split_dir}")
    return SampleIndex(root, names, labels, classes)


def _annotation_path(root: Path, pattern: str, split: str) -> Path:
    path = Path(pattern.format(split=split))
    return path if path.is_absolute() else root / path


def read_video_list(path: Path) -> list[tuple[str, int]]:
    """mmaction2 list file: ``relative/path label`` per line (the label is the last field)."""
    if not path.is_file():
        raise FileNotFoundError(f"video list file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise ValueError(f"{path}:{number}: expected 'relative/path label' with an integer label >= 0, got {line!r}")
        rows.append((parts[0].strip(), int(parts[1])))
    if not rows:
        raise ValueError(f"video list file {path} has no entries")
    return rows


def read_kinetics_csv(path: Path, pattern: str, split: str, only_split: bool = False) -> list[tuple[str, str]]:
    """Kinetics CSV (label,youtube_id,time_start,time_end[,split]) -> [(relative path, label name)].

    ``only_split``: the file holds every split (``csv_file`` without ``{split}``): keep the rows whose
    ``split`` column is ``split`` (all rows when there is no such column).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Kinetics CSV file not found: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        required = {"label", "youtube_id", "time_start", "time_end"}
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        rows, seen_splits = [], set()
        for number, row in enumerate(reader, 2):
            if only_split and row.get("split"):
                seen_splits.add(row["split"])
                if row["split"] != split:
                    continue
            try:
                fields = dict(row, split=row.get("split") or split,
                              time_start=int(float(row["time_start"])), time_end=int(float(row["time_end"])))
                rows.append((pattern.format(**fields), row["label"]))
            except (ValueError, KeyError, IndexError) as exc:
                raise ValueError(f"{path}:{number}: cannot build a file name with path_pattern={pattern!r}: {exc}") from None
    if not rows and seen_splits:
        raise ValueError(f"Kinetics CSV {path} has no rows of split '{split}' (its split column has "
                         f"{sorted(seen_splits)}); name the splits with data.train_split / data.val_split")
    if not rows:
        raise ValueError(f"Kinetics CSV {path} has no rows")
    return rows


def _one_csv(cfg: DataConfig) -> bool:
    """True when one Kinetics CSV holds every split (its rows are then chosen by their split column)."""
    return "{split}" not in cfg.csv_file


def _list_classes(cfg: DataConfig, root: Path, split: str) -> list[str] | None:
    """The class list that every split shares (None for folder kinds = use the folder names)."""
    if cfg.classes is not None:
        return list(cfg.classes)
    if cfg.classes_file is not None:
        path = Path(cfg.classes_file) if Path(cfg.classes_file).is_absolute() else root / cfg.classes_file
        if not path.is_file():
            raise FileNotFoundError(f"classes_file not found: {path}")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    train = cfg.train_split
    if cfg.kind in ("video_folder", "image_folder", "synthetic"):
        return folder_classes(root / train) if (root / train).is_dir() else None
    if cfg.kind == "video_list":
        files = [_annotation_path(root, cfg.list_file, s) for s in dict.fromkeys([train, split])]
        labels = [label for f in files if f.is_file() for _, label in read_video_list(f)]
        return [str(i) for i in range(max(labels) + 1)] if labels else None
    if cfg.kind == "kinetics_csv":
        path = _annotation_path(root, cfg.csv_file, train)
        if not path.is_file():
            path = _annotation_path(root, cfg.csv_file, split)
        return sorted({label for _, label in read_kinetics_csv(path, cfg.path_pattern, train, _one_csv(cfg))})
    return None


def video_index(cfg: DataConfig, root: Path, split: str) -> SampleIndex:
    """The sample index of one split of a file-based dataset (videos or image folders)."""
    classes = _list_classes(cfg, root, split)
    if cfg.kind in ("video_folder", "synthetic"):
        return scan_folder(root, split, VIDEO_EXTENSIONS, classes)
    if cfg.kind == "image_folder":
        return scan_folder(root, split, IMAGE_EXTENSIONS, classes)
    if cfg.kind == "video_list":
        rows = read_video_list(_annotation_path(root, cfg.list_file, split))
        bad = [label for _, label in rows if label >= len(classes)]
        if bad:
            raise ValueError(f"list file for split {split!r} has label {max(bad)} but only {len(classes)} classes")
        index = SampleIndex(root, [p for p, _ in rows], [label for _, label in rows], classes)
    elif cfg.kind == "kinetics_csv":
        rows = read_kinetics_csv(_annotation_path(root, cfg.csv_file, split), cfg.path_pattern, split, _one_csv(cfg))
        _check_classes(sorted({label for _, label in rows}), classes, cfg.csv_file.format(split=split))
        lookup = {name: i for i, name in enumerate(classes)}
        index = SampleIndex(root, [p for p, _ in rows], [lookup[label] for _, label in rows], classes)
    else:
        raise ValueError(f"kind {cfg.kind!r} is not a file-based dataset")
    missing = sum(not (root / name).is_file() for name in index.names)
    if missing:
        log.warning("%d of %d listed videos of split %r are missing under %s (they will be skipped and counted)",
                    missing, len(index), split, root)
    return index


def carve_split(index: SampleIndex, cfg: DataConfig, split: str) -> SampleIndex:
    """With ``val_size`` > 0: ``val_split`` is a seeded random subset of the train split (the last
    ``val_size`` samples when ``split_seed`` is None), ``train_split`` the rest."""
    n = len(index)
    k = int(round(cfg.val_size * n)) if cfg.val_size < 1 else int(cfg.val_size)
    if not 0 < k < n:
        raise ValueError(f"val_size={cfg.val_size} leaves no train or no val samples out of {n}")
    held = np.zeros(n, dtype=bool)
    held[np.arange(n - k, n) if cfg.split_seed is None else np.random.default_rng(cfg.split_seed).permutation(n)[:k]] = True
    return index.subset(np.flatnonzero(held if split == cfg.val_split else ~held))
