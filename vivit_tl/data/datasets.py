"""Map-style clip datasets for videos and images, with bad-file substitution and counting.

Bad files are tracked in shared memory (`BadFiles`), created when the dataset is built and
shared with every DataLoader worker, so ``num_skipped`` and ``bad_files()`` are totals over all
workers of this process, and each bad file is logged once per dataset even with several workers.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from vivit_tl.errors import UserError

from .config import DataConfig
from .decoding import REASONS, ReadError, check_decoder, decoder_threads, read_frames, read_image, read_rawframes
from .sampling import eval_clip_indices, train_clip_indices
from .sources import SampleIndex
from .transforms import as_video, clip_eraser, decode_short_side, eval_crop, eval_resize, to_model_input, train_transform
from .watchdog import call_with_timeout

log = logging.getLogger("vivit_tl.data")


class BadFiles:
    """Per-sample bad-file reasons and skip counters in shared memory (visible to all workers).

    Torch shared-memory tensors, no locks, so the dataset works with any worker start method
    (fork, spawn, forkserver). Each worker counts its skips in its own slot, so no update is lost;
    a reason code is written with the same value by whoever meets the file. At worst two workers
    meeting the same new bad file at the same instant both log it.
    """

    SLOTS = 257  # slot 0: the main process; 1 + worker id % 256: DataLoader workers

    def __init__(self, num_samples: int) -> None:
        self._codes = torch.zeros(max(num_samples, 1), dtype=torch.int8).share_memory_()  # 0 = not known bad
        self._skips = torch.zeros(self.SLOTS, dtype=torch.int64).share_memory_()

    def is_bad(self, i: int) -> bool:
        return bool(self._codes[i])

    def mark(self, i: int, reason: str) -> bool:
        """Record sample ``i`` as bad (code = 1 + index in REASONS); True the first time."""
        first = not self._codes[i]
        self._codes[i] = REASONS.index(reason) + 1
        return first

    def add_skip(self) -> None:
        info = get_worker_info()
        self._skips[0 if info is None else 1 + info.id % (self.SLOTS - 1)] += 1

    @property
    def skips(self) -> int:
        return int(self._skips.sum())

    def reasons(self) -> dict[int, str]:
        return {int(i): REASONS[int(self._codes[i]) - 1] for i in torch.nonzero(self._codes).flatten()}


class TooManyBadFiles(UserError):
    """``max_tries + 1`` training samples in a row were bad files: one line, also from a DataLoader worker.

    A DataLoader re-raises a worker's exception in the main process as ``type(text)``, the text being
    the worker's whole traceback; this class keeps only its own message (the traceback's last line).
    """

    def __init__(self, message: str) -> None:
        if "\n" in message:  # rebuilt by torch.utils.data from a worker's traceback
            message = message.rstrip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


def stacked_train_indices(n: int, num_frames: int, stride: int, starts: tuple[float, ...], short_video: str) -> np.ndarray:
    """Training clip indices ``[K, num_frames]`` of an ``n``-frame video, one row per relative start in ``starts``."""
    return np.stack([train_clip_indices(n, num_frames, stride, u, short_video) for u in starts])


class ClipDataset(Dataset):
    """Clips of videos (or one-frame clips of images) from a `SampleIndex`.

    train=True: item -> ``(clip [3, F, S, S] float, label, video_index)``, a random clip with
    augmentation (with ``cfg.clips_per_video`` K > 1: ``clips [K, 3, F, S, S]``, K random clips of
    one decode, each augmented on its own; the training collate flattens them); a bad file is logged once, counted, and a random other sample is substituted
    (at most ``cfg.max_tries`` times).
    train=False: ``len == num_videos * num_views``; item i is view ``i % num_views`` (clip-major:
    view = clip * crops + crop) of video ``i // num_views``; an unreadable video yields a zero clip
    with label -1.

    Args:
        index: the split's samples.
        cfg: data settings.
        train: training or evaluation mode.
        images: in-memory uint8 images ``[N, H, W, 3]`` (CIFAR-10) used instead of files.
    """

    def __init__(self, index: SampleIndex, cfg: DataConfig, train: bool, images: np.ndarray | None = None) -> None:
        self.index, self.cfg, self.train = index, cfg, train
        self.classes: list[str] = list(index.classes)
        self.video_names: list[str] = list(index.names)
        self.labels: list[int] = list(index.labels)
        self.num_views = 1 if train else cfg.num_views
        self.bad = BadFiles(len(index))
        self._images = images
        self._train_transform = train_transform(cfg) if train else None
        self._erase = clip_eraser(cfg) if train else None
        self._max_short_side = decode_short_side(cfg, train)
        self._cache: tuple[int, list[torch.Tensor]] | None = None  # last evaluated video in this worker
        if cfg.is_video and images is None:
            check_decoder(cfg.decoder, cfg.decode_device)  # a one-line error here, not in every worker

    def __len__(self) -> int:
        return len(self.index) * self.num_views

    @property
    def num_skipped(self) -> int:
        """Training items that were served by a substitute because their file was bad (all workers)."""
        return self.bad.skips

    def bad_files(self) -> list[tuple[str, str]]:
        """(name relative to the root, reason) of every bad file met so far (all workers)."""
        return [(self.video_names[i], reason) for i, reason in sorted(self.bad.reasons().items())]

    def read(self, i: int, pick: Callable[[int], np.ndarray]) -> np.ndarray:
        """uint8 frames ``pick(num_frames).shape + [H, W, 3]`` of sample ``i`` (an image is a 1-frame video).

        Videos and frame folders are decoded under the watchdog (``cfg.decode_timeout_s``), so
        ``pick`` must pickle.
        """
        cfg = self.cfg
        if self._images is not None:
            return self._images[i][None][np.asarray(pick(1))]
        path = self.index.root / self.video_names[i]
        if not cfg.is_video:
            return read_image(path)[np.asarray(pick(1))]
        if self.index.frame_counts is not None:  # a folder of frame images
            frames, _ = call_with_timeout(cfg.decode_timeout_s, path, read_rawframes, path, pick, self.index.frame_counts[i],
                                          filename_tmpl=cfg.filename_tmpl, start_index=cfg.start_index)
        else:  # threads resolved here: the helper process is not a DataLoader worker
            # a CUDA decoder cannot run in the forked helper: NVDEC decodes are not guarded
            timeout = cfg.decode_timeout_s if cfg.decode_device == "cpu" else 0
            frames, _ = call_with_timeout(timeout, path, read_frames, path, pick, decoder=cfg.decoder,
                                          num_threads=decoder_threads(cfg.num_threads), max_short_side=self._max_short_side,
                                          device=cfg.decode_device)
        return frames

    def _report(self, i: int, error: ReadError) -> None:
        if self.bad.mark(i, error.reason):
            log.warning("bad file skipped: %s", error)

    def _train_item(self, i: int) -> torch.Tensor:
        """``clips_per_video`` random clips of sample ``i`` from one decode: ``[3, F, S, S]``, or ``[K, 3, F, S, S]``."""
        cfg = self.cfg
        starts = tuple(torch.rand(cfg.clips_per_video).tolist())  # one relative start position per clip
        pick = functools.partial(stacked_train_indices, num_frames=cfg.num_frames, stride=cfg.frame_stride,
                                 starts=starts, short_video=cfg.short_video)  # picklable: it may go to the watchdog
        frames = self.read(i, pick)  # [K, F, H, W, 3]
        clips = [to_model_input(self._train_transform(as_video(torch.from_numpy(clip))), cfg) for clip in frames]
        if self._erase is not None:
            clips = [self._erase(clip) for clip in clips]
        return clips[0] if len(clips) == 1 else torch.stack(clips)  # [3, F, S, S] or [K, 3, F, S, S]

    def _eval_clips(self, i: int) -> list[torch.Tensor] | None:
        """The resized uint8 clips ``[F, 3, H, W]`` of video ``i`` (cached for its other views), None if bad."""
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1]
        clips = None
        if not self.bad.is_bad(i):
            try:
                clips = eval_clips(self.read(i, self._eval_pick()), self.cfg)
            except ReadError as error:
                self._report(i, error)
        self._cache = (i, clips)
        return clips

    def _eval_pick(self) -> Callable[[int], np.ndarray]:
        cfg = self.cfg
        return functools.partial(eval_clip_indices, num_frames=cfg.num_frames, stride=cfg.frame_stride,
                                 num_clips=cfg.num_eval_clips, short_video=cfg.short_video)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int, int]:
        if not self.train:
            i, view = divmod(item, self.num_views)
            clips = self._eval_clips(i)
            if clips is None:
                frames = self.cfg.num_frames if self.cfg.is_video else 1
                return torch.zeros(3, frames, self.cfg.image_size, self.cfg.image_size), -1, i
            clip, crop = divmod(view, self.cfg.num_eval_crops)
            return to_model_input(eval_crop(clips[clip], self.cfg, crop), self.cfg), self.labels[i], i
        for attempt in range(self.cfg.max_tries + 1):
            i = item if attempt == 0 else self._substitute()
            if self.bad.is_bad(i):
                continue
            try:
                clip = self._train_item(i)
            except ReadError as error:
                self._report(i, error)
                continue
            if attempt > 0:
                self.bad.add_skip()
            return clip, self.labels[i], i
        raise TooManyBadFiles(f"{self.cfg.max_tries + 1} training samples in a row were bad files (starting at "
                              f"{self.index.root / self.video_names[item]}; data.max_tries={self.cfg.max_tries}): "
                              f"check the dataset with vivit-tl check-dataset")


    def _substitute(self) -> int:
        """A random sample not yet known to be bad (a few draws; the caller counts real tries)."""
        n = len(self.index)
        for _ in range(32):
            i = int(torch.randint(n, ()))
            if not self.bad.is_bad(i):
                break
        return i


def eval_clips(frames: np.ndarray, cfg: DataConfig) -> list[torch.Tensor]:
    """Decoded clips uint8 ``[K, F, H, W, 3]`` -> K `eval_resize`-d uint8 clips ``[F, 3, h, w]``."""
    return [eval_resize(as_video(torch.from_numpy(np.ascontiguousarray(clip))), cfg) for clip in frames]


def eval_views(frames: np.ndarray, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """All evaluation views of decoded clips ``[K, F, H, W, 3]``.

    Returns:
        (float views ``[V, 3, F, S, S]``, the same views as uint8 frames ``[V, F, S, S, 3]``),
        V = K * crops, clip-major.
    """
    crops = [eval_crop(clip, cfg, c) for clip in eval_clips(frames, cfg) for c in range(cfg.num_eval_crops)]
    views = torch.stack([to_model_input(c, cfg) for c in crops])  # [V, 3, F, S, S]
    raw = torch.stack(crops).permute(0, 1, 3, 4, 2).contiguous()  # [V, F, S, S, 3]
    return views, raw
