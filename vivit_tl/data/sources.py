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

from vivit_tl.errors import UserError

from . import layouts
from .config import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, DataConfig
from .prepare import prepared_name

log = logging.getLogger("vivit_tl.data")


@dataclass
class SampleIndex:
    """One split: ``names[i]`` (path relative to ``root``, or an id for in-memory data) has ``labels[i]``;
    ``frame_counts[i]`` is the listed number of frames of frame folder ``names[i]`` (kind 'rawframes')."""

    root: Path
    names: list[str]
    labels: list[int]
    classes: list[str]
    frame_counts: list[int] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: np.ndarray) -> "SampleIndex":
        counts = None if self.frame_counts is None else [self.frame_counts[i] for i in keep]
        return SampleIndex(self.root, [self.names[i] for i in keep], [self.labels[i] for i in keep], self.classes, counts)


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


NUMBERED_KINDS = ("video_list", "rawframes")  # list files with integer labels (the others name their classes)


def _numbered_rows(cfg: DataConfig, root: Path, split: str) -> list[tuple[str, int, int | None]]:
    """(path, integer label, frame count or None) of a split of the kinds whose labels are numbers."""
    path = _annotation_path(root, cfg.list_file, split)
    if cfg.kind == "rawframes":
        return [(frame_dir, label, total) for frame_dir, total, label in layouts.read_rawframe_list(path)]
    return [(name, label, None) for name, label in read_video_list(path)]


def _named_rows(cfg: DataConfig, root: Path, split: str) -> list[tuple[str, str]]:
    """(path, class name) of a split of the kinds whose labels are class names."""
    annotations = root / cfg.annotation_dir
    if cfg.kind == "kinetics_csv":
        return read_kinetics_csv(_annotation_path(root, cfg.csv_file, split), cfg.path_pattern, split, _one_csv(cfg))
    if cfg.kind == "ucf101":
        return layouts.read_ucf101(annotations, split, cfg.fold)
    if cfg.kind == "hmdb51":
        return layouts.read_hmdb51(annotations, split, cfg.fold)
    if cfg.kind == "ssv2":
        return layouts.read_ssv2(annotations, split)
    raise ValueError(f"kind {cfg.kind!r} is not a file-based dataset")


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
    if cfg.kind in NUMBERED_KINDS:
        files = [s for s in dict.fromkeys([train, split]) if _annotation_path(root, cfg.list_file, s).is_file()]
        labels = [label for s in files for _, label, _ in _numbered_rows(cfg, root, s)]
        return [str(i) for i in range(max(labels) + 1)] if labels else None
    annotations = root / cfg.annotation_dir
    if cfg.kind == "ucf101":
        return layouts.ucf101_classes(annotations)
    if cfg.kind == "hmdb51":
        return layouts.hmdb51_classes(annotations, cfg.fold)
    if cfg.kind == "ssv2":
        return layouts.ssv2_classes(annotations)
    if cfg.kind == "kinetics_csv":
        if not _annotation_path(root, cfg.csv_file, train).is_file():
            train = split
        return sorted({label for _, label in _named_rows(cfg, root, train)})
    return None


def video_index(cfg: DataConfig, root: Path, split: str) -> SampleIndex:
    """The sample index of one split of a file-based dataset (videos, frame folders or image folders).

    Raises:
        UserError: more than half of the listed files of a split are absent (a wrong ``root`` or
            ``data_prefix``, most likely); fewer are logged, then skipped and counted in training.
    """
    classes = _list_classes(cfg, root, split)
    if cfg.kind in ("video_folder", "synthetic"):
        return scan_folder(root, split, VIDEO_EXTENSIONS, classes)
    if cfg.kind == "image_folder":
        return scan_folder(root, split, IMAGE_EXTENSIONS, classes)
    counts = None
    if cfg.kind in NUMBERED_KINDS:
        numbered = _numbered_rows(cfg, root, split)
        bad = [label for _, label, _ in numbered if label >= len(classes)]
        if bad:
            raise ValueError(f"list file for split {split!r} has label {max(bad)} but only {len(classes)} classes")
        rows = [(name, label) for name, label, _ in numbered]
        if cfg.kind == "rawframes":
            counts = [count for _, _, count in numbered]
    else:
        named = _named_rows(cfg, root, split)
        where = cfg.csv_file.format(split=split) if cfg.kind == "kinetics_csv" else root / cfg.annotation_dir
        _check_classes(sorted({label for _, label in named}), classes, where)
        lookup = {name: i for i, name in enumerate(classes)}
        rows = [(name, lookup[label]) for name, label in named]
    prefix = cfg.data_prefix.format(split=split)
    names = [os.path.join(prefix, name) if prefix else name for name, _ in rows]
    if cfg.kind == "ssv2":  # its split files name bare ids: <id>.webm as released, <id>.mp4 after prepare-videos
        names = [_listed_or_prepared(root, name) for name in names]
    index = SampleIndex(root, names, [label for _, label in rows], classes, counts)
    _check_present(index, cfg, split)
    return index


def _listed_or_prepared(root: Path, name: str) -> str:
    """``name``, or the name ``vivit-tl prepare-videos`` gave it when only that file exists under ``root``."""
    prepared = str(prepared_name(Path(name)))
    return prepared if not (root / name).is_file() and (root / prepared).is_file() else name


def _check_present(index: SampleIndex, cfg: DataConfig, split: str) -> None:
    """Fail early when most listed files are absent; warn when some are."""
    exists = os.path.isdir if cfg.kind == "rawframes" else os.path.isfile
    missing = [index.root / name for name in index.names if not exists(index.root / name)]
    what = "frame folders" if cfg.kind == "rawframes" else "videos"
    if 2 * len(missing) > len(index):
        examples = ", ".join(str(p) for p in missing[:3])
        raise UserError(f"{len(missing)} of {len(index)} listed {what} of split {split!r} are missing, e.g. {examples}: "
                        f"check data.root ({index.root}) and data.data_prefix ({cfg.data_prefix!r}; the listed "
                        "paths are relative to root/data_prefix, with {split} replaced by the split name)")
    if missing:
        log.warning("%d of %d listed %s of split %r are missing under %s (they will be skipped and counted)",
                    len(missing), len(index), what, split, index.root)


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
