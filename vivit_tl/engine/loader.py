"""DataLoaders whose order and augmentation are pure functions of (seed, epoch, index).

This is what makes a resumed run bit-identical to an uninterrupted one:

- :class:`EpochSampler` yields the training keys ``(epoch, index)`` in an order that depends only
  on ``(seed, epoch)``; the position inside an epoch is restored by skipping batches
  (``accelerator.skip_first_batches``), without reading them.
- :class:`SeededDataset` seeds python, numpy and torch RNGs from ``(seed, epoch, index)`` before
  calling the wrapped dataset, so the random clip and augmentation of a sample do not depend on
  the worker that loads it, on the number of workers or processes, or on what was loaded before.
  The caller's RNG states are restored afterwards (dropout keeps its own stream, which
  ``accelerator.save_state`` saves and restores).
- With ``clips_per_video: K``, a training batch of ``batch_size`` clips holds ``batch_size / K`` videos;
  :func:`collate_clips` flattens each video's K clips into K samples.
- Training workers persist across epochs (the sampler runs in the main process, so the order still
  follows ``set_epoch``), each loading ``prefetch_factor`` batches ahead.
- With ``train_crop: batch_crop``, :class:`BatchCropCollate` crops each batch with an RNG seeded
  from ``seed`` and the batch's sample indices.
- Both loaders get their own ``torch.Generator``, so creating an iterator never draws from the
  global RNG.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, default_collate

from vivit_tl.data import DataConfig
from vivit_tl.data.transforms import crop_batch
from vivit_tl.errors import UserError


def mixed_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


ORDER, ITEM, BATCH = 0, 1, 2  # the streams: epoch permutation, per-item and per-batch augmentation


class EpochSampler(Sampler):
    """Shuffled ``(epoch, index)`` keys; the permutation is a pure function of ``(seed, epoch)``.

    Call :meth:`set_epoch` before iterating (accelerate's prepared loaders also call it).
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch, ORDER))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        for index in order:
            yield (self.epoch, index)


class SeededDataset(Dataset):
    """Wraps a training dataset: item ``(epoch, index)`` is loaded with RNGs seeded from it."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # classes, num_views, video_names, ...
        if name == "dataset":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        seed = mixed_seed(self.seed, epoch, ITEM, index)
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)  # the CPU generator only (torch.manual_seed also reseeds GPUs')
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


def collate_clips(items: list[tuple[torch.Tensor, int, int]]) -> list[torch.Tensor]:
    """``default_collate``, then each video's K clips (``clips_per_video``) become K samples.

    Items ``(clips [K, 3, F, H, W], label, index)`` -> ``[clips [B*K, 3, F, H, W], labels [B*K], indices [B*K]]``
    (video-major: the K clips of a video are adjacent); items with one clip ``[3, F, H, W]`` are just stacked.
    """
    clips, labels, indices = default_collate(items)  # [B, K, 3, F, H, W] or [B, 3, F, H, W]
    if clips.dim() == 6:
        k = clips.shape[1]
        clips = clips.flatten(0, 1)  # [B*K, 3, F, H, W]
        labels, indices = labels.repeat_interleave(k), indices.repeat_interleave(k)
    return [clips, labels, indices]


class BatchCropCollate:
    """``collate_fn`` for ``train_crop: batch_crop``: stacks ``(clip, label, index)`` items, then
    :func:`~vivit_tl.data.transforms.crop_batch` with an RNG seeded from the run seed and the
    batch's sample indices (so a batch is cropped alike whatever worker collates it, and on resume)."""

    def __init__(self, data: DataConfig, seed: int) -> None:
        self.size, self.hflip, self.seed = data.image_size, data.hflip, seed

    def __call__(self, items: list[tuple[torch.Tensor, int, int]]) -> list[torch.Tensor]:
        clips, labels, indices = collate_clips(items)  # [B, 3, F, short_side, short_side], [B], [B]
        generator = torch.Generator().manual_seed(mixed_seed(self.seed, BATCH, *indices.tolist()))
        return [crop_batch(clips, self.size, self.hflip, generator), labels, indices]


def build_train_loader(dataset: Dataset, *, data: DataConfig, batch_size: int, seed: int) -> DataLoader:
    """Shuffled training loader over :class:`SeededDataset` keys, batches of ``batch_size`` clips
    (``batch_size / clips_per_video`` videos); incomplete last batch dropped.

    Raises:
        UserError: ``batch_size`` is not a multiple of ``data.clips_per_video``.
    """
    clips = data.clips_per_video
    if batch_size % clips:
        raise UserError(f"optim.batch_size={batch_size} must be a multiple of data.clips_per_video={clips} "
                        "(a batch holds batch_size / clips_per_video videos)")
    sampler = EpochSampler(len(dataset), seed)
    workers = data.num_workers
    return DataLoader(
        SeededDataset(dataset, seed),
        batch_sampler=BatchSampler(sampler, batch_size // clips, drop_last=True),
        collate_fn=BatchCropCollate(data, seed) if data.train_crop == "batch_crop" else collate_clips,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0,
        prefetch_factor=data.prefetch_factor if workers > 0 else None,
        multiprocessing_context="spawn" if workers > 0 and data.decode_device == "cuda" else None,  # CUDA in workers
        pin_memory=torch.cuda.is_available(),
    )


def build_eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """Sequential loader over a map-style evaluation dataset (every item exactly once)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
        pin_memory=torch.cuda.is_available(),
    )
