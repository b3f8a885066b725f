"""The public entry points: `prepare_dataset`, `build_dataset`, `read_video_views`."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import synthetic
from .config import IMAGE_EXTENSIONS, DataConfig
from .datasets import ClipDataset, eval_views
from .decoding import read_frames, read_image
from .sampling import eval_clip_indices
from .sources import SampleIndex, carve_split, video_index
from .transforms import decode_short_side

log = logging.getLogger("vivit_tl.data")
ARCHIVE_DONE = ".unpacked"  # marker written last into an unpacked archive folder


def synthetic_spec(cfg: DataConfig) -> synthetic.SyntheticSpec:
    return synthetic.SyntheticSpec.from_dict(cfg.synthetic)


def _archive_dir(cfg: DataConfig) -> Path:
    """Cache folder an archive unpacks into: ``<cache>/<archive name>-<hash of path and size>``."""
    archive = Path(cfg.archive).expanduser().resolve()
    if not archive.is_file():
        raise FileNotFoundError(f"data archive not found: {archive}")
    name = archive.name
    for ext in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    tag = hashlib.sha1(f"{archive}:{archive.stat().st_size}".encode()).hexdigest()[:8]
    return cfg.cache_path() / f"{name}-{tag}"


def dataset_root(cfg: DataConfig) -> Path:
    """The folder the dataset is read from (after `prepare_dataset`)."""
    if cfg.archive:
        unpacked = _archive_dir(cfg)
        if cfg.root:
            return unpacked / cfg.root
        children = [p for p in unpacked.iterdir() if not p.name.startswith(".")] if unpacked.is_dir() else []
        return children[0] if len(children) == 1 and children[0].is_dir() else unpacked
    if cfg.root:
        return Path(cfg.root).expanduser()
    if cfg.kind == "synthetic":
        return cfg.cache_path() / synthetic_spec(cfg).dirname()
    if cfg.kind == "cifar10":
        return cfg.cache_path() / "cifar10"
    raise ValueError(f"data config root is required for kind={cfg.kind!r}")


def _unpack(archive: Path, target: Path) -> None:
    """Unpack atomically: into a temporary sibling, marker written last, then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    log.info("unpacking %s into %s", archive, target)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        else:
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
            except tarfile.TarError as exc:
                raise ValueError(f"cannot unpack data archive {archive}: {exc}") from None
        (tmp / ARCHIVE_DONE).touch()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own temporary folder
        if not (target / ARCHIVE_DONE).is_file():
            raise


def prepare_dataset(cfg: DataConfig) -> None:
    """Make the dataset available locally; idempotent and safe to call from several processes.

    Generates the synthetic dataset into the cache, unpacks ``cfg.archive``, downloads CIFAR-10
    when ``cfg.download``, and checks that the dataset root exists.
    """
    if cfg.archive:
        target = _archive_dir(cfg)
        if not (target / ARCHIVE_DONE).is_file():
            if target.exists():
                raise FileExistsError(f"{target} exists but is not a completely unpacked archive; remove it")
            _unpack(Path(cfg.archive).expanduser().resolve(), target)
    root = dataset_root(cfg)
    if cfg.kind == "synthetic":
        spec = synthetic_spec(cfg)
        if not synthetic.is_complete(root, spec):
            log.info("generating the synthetic dataset into %s", root)
            synthetic.generate(root, spec)
    elif cfg.kind == "cifar10":
        _cifar10(cfg, root, train=True)
    elif not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")


def _cifar10(cfg: DataConfig, root: Path, train: bool):
    from torchvision.datasets import CIFAR10

    try:
        return CIFAR10(str(root), train=train, download=cfg.download)
    except RuntimeError as exc:
        raise FileNotFoundError(f"CIFAR-10 (python version) not found or corrupted under {root} ({exc}); "
                                "set download: true or point root at the folder holding cifar-10-batches-py") from None


def _split_index(cfg: DataConfig, root: Path, split: str) -> tuple[SampleIndex, np.ndarray | None]:
    """The samples of one split before carving, and in-memory images for CIFAR-10."""
    if cfg.kind != "cifar10":
        return video_index(cfg, root, split), None
    valid = [cfg.train_split, "test"]
    if split not in valid:
        raise ValueError(f"CIFAR-10 split {split!r} is not one of {valid}"
                         + (f" (or {cfg.val_split!r} with val_size > 0)" if cfg.val_size == 0 else ""))
    ds = _cifar10(cfg, root, train=split == cfg.train_split)
    if cfg.classes is not None and list(cfg.classes) != list(ds.classes):
        raise ValueError(f"data config classes {cfg.classes} do not match CIFAR-10's {ds.classes}")
    names = [f"{'train' if split == cfg.train_split else 'test'}/{i:05d}" for i in range(len(ds))]
    return SampleIndex(root, names, list(ds.targets), list(ds.classes)), ds.data  # data: [N, 32, 32, 3]


def build_dataset(cfg: DataConfig, split: str, train: bool) -> ClipDataset:
    """A map-style dataset of one split (see `ClipDataset` for items and bad-file handling).

    With ``cfg.val_size`` > 0, ``cfg.val_split`` is carved out of ``cfg.train_split`` by
    ``cfg.split_seed`` and ``cfg.train_split`` loses those samples.
    """
    root = dataset_root(cfg)
    if cfg.kind == "synthetic" and not synthetic.is_complete(root):
        raise FileNotFoundError(f"synthetic dataset not found at {root}: call prepare_dataset(cfg) first "
                                "(or run vivit-tl make-synthetic)")
    carve = cfg.val_size > 0 and split in (cfg.train_split, cfg.val_split)
    index, images = _split_index(cfg, root, cfg.train_split if carve else split)
    if carve:
        keep_index = carve_split(index, cfg, split)
        if images is not None:
            images = images[[int(n.split("/")[1]) for n in keep_index.names]]
        index = keep_index
    return ClipDataset(index, cfg, train, images)


def read_video_views(path: str | os.PathLike, cfg: DataConfig,
                     return_frames: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The evaluation views of one file, as the evaluation dataset makes them.

    Args:
        path: a video, or an image (jpg/png) when ``cfg.kind`` is an image kind.
        cfg: data settings (frames, stride, clips, crops, sizes, normalisation).
        return_frames: also return the un-normalised uint8 frames of the same views.

    Returns:
        views ``[V, 3, F, S, S]`` float (V = eval clips x crops, clip-major), and with
        ``return_frames`` also frames uint8 ``[V, F, S, S, 3]``.

    Raises:
        ReadError: (a ValueError) naming the file and the reason when it cannot be read.
    """
    path = Path(path)
    if not cfg.is_video:
        if not path.name.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(f"{path} is not an image ({list(IMAGE_EXTENSIONS)}) but kind={cfg.kind!r} is an image kind")
        frames = read_image(path)[None]  # [K=1, F=1, H, W, 3]
    else:
        frames, _ = read_frames(path, lambda n: eval_clip_indices(n, cfg.num_frames, cfg.frame_stride,
                                                                  cfg.eval_clips, cfg.short_video),
                                decoder=cfg.decoder, num_threads=cfg.num_threads, device=cfg.decode_device,
                                max_short_side=decode_short_side(cfg, train=False))  # [K, F, H, W, 3]
    views, raw = eval_views(frames, cfg)
    return (views, raw) if return_frames else views
