"""Clip transforms with ``torchvision.transforms.v2`` on video tensors ``[F, 3, H, W]``.

Training: scale jitter (short side to ``short_side * U(scale_jitter)``) + random crop, or random
resized crop; optional horizontal flip; optional colour jitter, greyscale and RandAugment; scale to
[0, 1]; optional mean/std normalisation; optional random erasing (:func:`erase_clip`). With
``train_crop='batch_crop'`` a clip is only resized (and colour-augmented) here, and :func:`crop_batch`
crops and flips the collated batch. Every random transform draws its parameters once per call on
the whole ``Video``, so all frames of a clip get the same operation.
Evaluation: short-side resize then a centre crop or 3 crops (left/centre/right along the long
side), or ``eval_resize='full'``: the whole frame resized to ``image_size`` square (Keras preset; ``'keras'``:
the same in Keras' two steps).
Outputs are float ``[3, F, H, W]``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import einops
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .config import DataConfig


#: scenic's colour augmentation (``video_ops.color_default_augm``): saturation and contrast 0.6-1.4, hue +-0.2.
#: scenic adds a brightness delta of +-32/255; ``v2.ColorJitter`` multiplies by 1 +- 0.125 instead, and
#: applies the four in a random order (scenic: brightness, saturation, contrast, hue).
SCENIC_COLOR_JITTER = dict(brightness=0.125, contrast=(0.6, 1.4), saturation=(0.6, 1.4), hue=0.2)


def train_transform(cfg: DataConfig) -> v2.Compose:
    """Random augmentation of a uint8 video ``[F, 3, H, W]`` (still uint8): crop, flip, colour, RandAugment."""
    if cfg.train_crop == "batch_crop":  # cropped and flipped later, per batch: crop_batch
        ops: list[v2.Transform] = [v2.Resize([cfg.short_side, cfg.short_side], antialias=True)]
    elif cfg.train_crop == "random_resized_crop":
        ops = [v2.RandomResizedCrop(cfg.image_size, scale=tuple(cfg.rrc_scale), ratio=tuple(cfg.rrc_ratio),
                                    antialias=True)]
    else:
        low, high = (round(cfg.short_side * s) for s in cfg.scale_jitter)
        ops = [v2.RandomShortestSize(list(range(low, high + 1)), antialias=True),
               v2.RandomCrop(cfg.image_size, pad_if_needed=True)]
    if cfg.hflip and cfg.train_crop != "batch_crop":
        ops.append(v2.RandomHorizontalFlip())
    if cfg.color_jitter:
        ops.append(v2.RandomApply([v2.ColorJitter(**SCENIC_COLOR_JITTER)], p=cfg.color_jitter))
    if cfg.grayscale:  # v2.RandomGrayscale would pass a Video through unchanged (no Video kernel)
        ops.append(v2.RandomApply([v2.Lambda(grayscale_video)], p=cfg.grayscale))
    if cfg.rand_augment is not None:
        num_ops, magnitude = cfg.rand_augment
        ops.append(v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=11))
    return v2.Compose(ops)


def grayscale_video(video: tv_tensors.Video) -> tv_tensors.Video:
    """Every frame of ``video`` ``[F, 3, H, W]`` to greyscale, kept in 3 channels.

    torchvision 0.29's ``rgb_to_grayscale`` has no ``Video`` kernel, so ``v2.RandomGrayscale`` leaves a
    video as it is; the frames go through the image kernel as a plain tensor instead.
    """
    return tv_tensors.wrap(TF.rgb_to_grayscale(video.as_subclass(torch.Tensor), num_output_channels=3), like=video)


def clip_eraser(cfg: DataConfig) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """:func:`erase_clip` with ``v2.RandomErasing(p=cfg.random_erasing)``, or None when it is off.

    The erased rectangle is filled with per-pixel standard normal noise (``value='random'``; timm's
    and VideoMAE's ``mode='pixel'``), the same rectangle and noise on every frame.
    """
    if not cfg.random_erasing:
        return None
    return functools.partial(erase_clip, v2.RandomErasing(p=cfg.random_erasing, value="random"))


def erase_clip(eraser: v2.RandomErasing, clip: torch.Tensor) -> torch.Tensor:
    """``eraser`` applied to a normalised float clip ``[3, F, H, W]``, one draw for the whole clip."""
    video = tv_tensors.Video(einops.rearrange(clip, "c f h w -> f c h w"))  # [F, 3, H, W]
    erased = eraser(video).as_subclass(torch.Tensor)
    return einops.rearrange(erased, "f c h w -> c f h w").contiguous()  # [3, F, H, W]


def crop_batch(clips: torch.Tensor, size: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Keras <= 2.8 ``RandomCrop`` then ``RandomFlip('horizontal')`` on a batch ``[B, 3, F, H, W]``:
    one random ``size`` x ``size`` window for the whole batch, then each clip flipped with p = 0.5.

    Keras 2.7, current when the Keras CIFAR-10 example and its table were made (December 2021), drew
    one crop offset per batch (keras-team/keras#16399); Keras 2.10 crops each image on its own, as
    ``scale_jitter`` does.
    """
    height, width = clips.shape[-2:]
    top = int(torch.randint(height - size + 1, (), generator=generator))
    left = int(torch.randint(width - size + 1, (), generator=generator))
    out = clips[..., top:top + size, left:left + size]  # [B, 3, F, size, size]
    if hflip:
        flip = torch.rand(len(out), generator=generator) < 0.5
        out = torch.where(flip.view(-1, 1, 1, 1, 1), out.flip(-1), out)
    return out.contiguous()


def decode_short_side(cfg: DataConfig, train: bool) -> int:
    """Largest short side the transforms can use: larger videos are downscaled while decoding."""
    if cfg.eval_resize == "full" and not train:
        return cfg.image_size
    if train and cfg.train_crop == "scale_jitter":
        return math.ceil(cfg.short_side * cfg.scale_jitter[1])
    return cfg.short_side


def eval_resize(video: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Evaluation resize of a uint8 video ``[F, 3, H, W]``: short side to ``short_side`` (zero-padded
    to at least ``image_size``), or the whole frame to ``image_size`` square for ``eval_resize='full'``.

    ``eval_resize='keras'`` is what the Keras CIFAR-10 model does at inference: ``Resizing`` to
    ``short_side`` square, then ``RandomCrop``'s inference path resizes that whole image to ``image_size``
    (TF's bilinear resize, no antialiasing, on floats; rounded back to uint8 once at the end)."""
    size = cfg.image_size
    if cfg.eval_resize == "full":
        return TF.resize(video, [size, size], antialias=True)
    if cfg.eval_resize == "keras":
        side = cfg.short_side
        resized = TF.resize(TF.resize(video.float(), [side, side], antialias=False), [size, size], antialias=False)
        return resized.round_().clamp_(0, 255).to(torch.uint8)  # [F, 3, size, size]
    video = TF.resize(video, cfg.short_side, antialias=True)
    height, width = video.shape[-2:]
    if min(height, width) < size:
        video = TF.center_crop(video, [max(height, size), max(width, size)])  # zero-pads
    return video


def eval_crop(video: torch.Tensor, cfg: DataConfig, crop: int) -> torch.Tensor:
    """Spatial view ``crop`` of an `eval_resize`-d video: ``[F, 3, S, S]`` with S = image_size.

    One crop: the centre. Three crops: left/centre/right along the long side (top/centre/bottom
    for portrait video), as in ViViT's 3-crop evaluation.
    """
    size = cfg.image_size
    height, width = video.shape[-2:]
    if cfg.num_eval_crops == 1:
        return TF.center_crop(video, [size, size])
    pos = (0.0, 0.5, 1.0)[crop]
    top = round((height - size) * pos) if height > width else (height - size) // 2
    left = round((width - size) * pos) if width >= height else (width - size) // 2
    return TF.crop(video, top, left, size, size)


def to_model_input(video: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """uint8 ``[F, 3, H, W]`` -> contiguous float ``[3, F, H, W]``: ``(x / 255 - mean) / std`` (just
    ``x / 255`` when cfg.mean is None), in one conversion pass and one in-place affine pass.

    Equal to ``v2.ToDtype(torch.float32, scale=True)`` then ``v2.Normalize(mean, std)`` (tested),
    about 3x faster on a 16-frame 224^2 clip.
    """
    channels_first = einops.rearrange(video, "f c h w -> c f h w")  # a view
    out = torch.empty(channels_first.shape, dtype=torch.float32).copy_(channels_first)  # [3, F, H, W]
    mean = torch.tensor(cfg.mean if cfg.mean is not None else (0.0, 0.0, 0.0)).view(3, 1, 1, 1)
    std = torch.tensor(cfg.std if cfg.std is not None else (1.0, 1.0, 1.0)).view(3, 1, 1, 1)
    return out.mul_(1 / (255 * std)).sub_(mean / std)


def as_video(frames: torch.Tensor) -> tv_tensors.Video:
    """Decoded uint8 frames ``[F, H, W, 3]`` -> a v2 Video ``[F, 3, H, W]``."""
    return tv_tensors.Video(einops.rearrange(frames, "f h w c -> f c h w"))
