"""Readers of the annotation files of common dataset layouts: mmaction2 rawframe lists, UCF-101,
HMDB-51 and Something-Something v2 (kinds 'rawframes', 'ucf101', 'hmdb51', 'ssv2').

Each reader returns rows ``(path relative to the videos folder, label)`` and raises ValueError /
FileNotFoundError naming the file and line when an annotation does not parse.

These are small readers of our own rather than pytorchvideo's: ``pytorchvideo.data.Hmdb51`` returns
(instead of raising) a RuntimeError for a missing folder, asserts on missing files and gives class
names as strings inside its own ``LabeledVideoDataset``; its SSv2 reader is a private function that
needs a frame-list CSV of extracted frames (it cannot read the ``.webm`` files); and importing
``pytorchvideo.data`` switches decord's global bridge to torch. Parsing these files takes a few
lines; a wrong or missing file here is a one-line error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TRAIN, TEST = "train", "test"


def official_split(kind: str, split: str) -> str:
    """'train' or 'test': the official half that a split name reads ('val' reads the test list,
    as UCF-101 and HMDB-51 have no separate validation set)."""
    if split == TRAIN:
        return TRAIN
    if split in ("val", TEST):
        return TEST
    raise ValueError(f"kind {kind!r} has the splits 'train' and 'test' (or 'val', the same as 'test'), "
                     f"not {split!r}: set data.train_split / data.val_split")


def _lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of the non-blank, non-comment lines of ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    rows = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise ValueError(f"{what} {path} has no entries")
    return rows


def read_rawframe_list(path: Path) -> list[tuple[str, int, int]]:
    """mmaction2 rawframe list: ``frame_dir total_frames label`` per line -> (frame_dir, total, label)."""
    rows = []
    for number, fields in _lines(path, "rawframe list file"):
        if len(fields) != 3 or not all(f.isdigit() for f in fields[1:]) or int(fields[1]) < 1:
            raise ValueError(f"{path}:{number}: expected 'frame_dir total_frames label' with integers "
                             f"total_frames >= 1 and label >= 0, got {' '.join(fields)!r}")
        rows.append((fields[0], int(fields[1]), int(fields[2])))
    return rows


def ucf101_classes(annotation_dir: Path) -> list[str]:
    """Class names from ``classInd.txt`` (lines ``1 ApplyEyeMakeup``), in their official order."""
    path = annotation_dir / "classInd.txt"
    entries = {}
    for number, fields in _lines(path, "UCF-101 classInd.txt"):
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{path}:{number}: expected 'index ClassName', got {' '.join(fields)!r}")
        entries[int(fields[0])] = fields[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise ValueError(f"{path}: class indices must be 1..{len(entries)}")
    return [entries[i] for i in range(1, len(entries) + 1)]


def read_ucf101(annotation_dir: Path, split: str, fold: int) -> list[tuple[str, str]]:
    """``trainlist0N.txt`` (``Class/v_x.avi label``) or ``testlist0N.txt`` (``Class/v_x.avi``) -> (path, class)."""
    path = annotation_dir / f"{official_split('ucf101', split)}list{fold:02d}.txt"
    rows = []
    for number, fields in _lines(path, "UCF-101 split file"):
        if not 1 <= len(fields) <= 2 or "/" not in fields[0]:
            raise ValueError(f"{path}:{number}: expected 'ClassName/video.avi [label]', got {' '.join(fields)!r}")
        rows.append((fields[0], fields[0].split("/")[0]))
    return rows


_HMDB_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>[123])\.txt$")
_HMDB_TAGS = {TRAIN: "1", TEST: "2"}  # 0: in neither half of this fold


def _hmdb51_files(annotation_dir: Path, fold: int) -> dict[str, Path]:
    """Class name -> its ``<class>_test_split<fold>.txt``."""
    if not annotation_dir.is_dir():
        raise FileNotFoundError(f"HMDB-51 split folder not found: {annotation_dir} (set data.annotation_dir)")
    files = {}
    for path in sorted(annotation_dir.iterdir()):
        match = _HMDB_SPLIT_FILE.match(path.name)
        if match and int(match["fold"]) == fold:
            files[match["cls"]] = path
    if not files:
        raise FileNotFoundError(f"no HMDB-51 split files '<class>_test_split{fold}.txt' in {annotation_dir}")
    return files


def hmdb51_classes(annotation_dir: Path, fold: int) -> list[str]:
    """Sorted class names, from the names of the split files."""
    return sorted(_hmdb51_files(annotation_dir, fold))


def read_hmdb51(annotation_dir: Path, split: str, fold: int) -> list[tuple[str, str]]:
    """The videos tagged 1 (train) or 2 (test) in every ``<class>_test_split<fold>.txt`` -> (class/video, class)."""
    tag = _HMDB_TAGS[official_split("hmdb51", split)]
    rows = []
    for name, path in _hmdb51_files(annotation_dir, fold).items():
        for number, fields in _lines(path, "HMDB-51 split file"):
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{number}: expected 'video.avi tag' with tag 0, 1 or 2, got {' '.join(fields)!r}")
            if fields[1] == tag:
                rows.append((f"{name}/{fields[0]}", name))
    return rows


SSV2_SPLIT_FILES = {TRAIN: "something-something-v2-train.json", "val": "something-something-v2-validation.json",
                    "validation": "something-something-v2-validation.json"}


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def ssv2_classes(annotation_dir: Path) -> list[str]:
    """The 174 templates of ``labels.json`` (``{"Holding something": "0", ...}``), in index order."""
    path = annotation_dir / "labels.json"
    labels = _read_json(path, "Something-Something v2 labels.json")
    try:
        order = sorted(labels, key=lambda name: int(labels[name]))
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"{path}: expected {{\"template\": \"index\", ...}}") from None
    if [int(labels[name]) for name in order] != list(range(len(order))):
        raise ValueError(f"{path}: class indices must be 0..{len(order) - 1}")
    return order


def ssv2_label(template: str) -> str:
    """The class of a video: its template with the brackets removed ("Putting [something] on [something]"
    -> "Putting something on something"), as the official loaders do."""
    return template.replace("[", "").replace("]", "")


def read_ssv2(annotation_dir: Path, split: str) -> list[tuple[str, str]]:
    """``something-something-v2-{train,validation}.json`` (``[{"id": "78687", "template": ...}, ...]``)
    -> (``<id>.webm``, class)."""
    if split not in SSV2_SPLIT_FILES:
        raise ValueError(f"kind 'ssv2' has the labelled splits 'train' and 'val' (or 'validation'), not {split!r} "
                         "(its test set has no labels): set data.train_split / data.val_split")
    path = annotation_dir / SSV2_SPLIT_FILES[split]
    entries = _read_json(path, "Something-Something v2 split file")
    rows = []
    for number, entry in enumerate(entries if isinstance(entries, list) else [None]):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise ValueError(f"{path}: entry {number} is not an object with 'id' and 'template'")
        rows.append((f"{entry['id']}.webm", ssv2_label(entry["template"])))
    if not rows:
        raise ValueError(f"Something-Something v2 split file {path} has no entries")
    return rows
