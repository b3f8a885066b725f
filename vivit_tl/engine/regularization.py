"""Batch-level regularisation of the training loop: mixup / CutMix targets and an EMA of the weights.

Mixup and CutMix are torchvision's ``v2.MixUp`` / ``v2.CutMix`` (one ``lambda`` per batch, each clip mixed
with its neighbour in the batch; with both on, ``v2.RandomChoice`` picks one per batch with p = 0.5, as
timm's ``Mixup(switch_prob=0.5)``). They return soft targets ``[B, num_classes]`` that sum to 1. Label
smoothing stays in ``nn.CrossEntropyLoss(label_smoothing=s)``, which with probability targets ``t`` uses
``(1 - s) * t + s / C``: exactly timm's ``mixup_target`` (smoothing each one-hot label, then mixing),
since the smoothing is linear.

The EMA is ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(decay)``: its first update
copies the weights, every later one sets ``ema = decay * ema + (1 - decay) * weights`` (buffers too).
"""

from __future__ import annotations

import einops
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision import tv_tensors
from torchvision.transforms import v2

from vivit_tl.config import OptimConfig


def build_batch_mixer(cfg: OptimConfig, num_classes: int) -> v2.Transform | None:
    """``v2.MixUp`` and/or ``v2.CutMix`` as configured (``v2.RandomChoice`` of both), or None when both are off."""
    mixers: list[v2.Transform] = []
    if cfg.mixup_alpha > 0:
        mixers.append(v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes))
    if cfg.cutmix_alpha > 0:
        mixers.append(v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def mix_batch(mixer: v2.Transform, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed clips ``[B, 3, F, H, W]`` and soft targets ``[B, num_classes]`` of a batch with int labels ``[B]``.

    The batch goes to torchvision as a ``Video`` ``[B, F, 3, H, W]`` (a pure 5-D tensor is refused), so
    that CutMix cuts its box out of the last two dims, H and W, through every frame and channel.
    """
    video = tv_tensors.Video(einops.rearrange(clips, "b c f h w -> b f c h w"))  # [B, F, 3, H, W], a view
    mixed, targets = mixer(video, labels)
    mixed = einops.rearrange(mixed.as_subclass(torch.Tensor), "b f c h w -> b c f h w")  # [B, 3, F, H, W]
    return mixed.contiguous(), targets


def dominant_label(targets: torch.Tensor) -> torch.Tensor:
    """``[B]`` labels: the largest share of soft targets ``[B, C]`` (int targets ``[B]`` are returned as they are)."""
    return targets.argmax(dim=1) if targets.ndim == 2 else targets


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An EMA copy of ``model`` (on its device), or None when ``decay`` is None."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
