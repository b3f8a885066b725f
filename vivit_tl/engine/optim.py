"""Optimiser (AdamW / SGD-momentum) with weight-decay groups, and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from vivit_tl.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Two groups: decayed weights, and never-decayed parameters.

    Never decayed (unless ``decay_all``, as TF-Addons' AdamW in the Keras CIFAR-10 example): every
    parameter with ``ndim <= 1`` (norms, biases) and the names in ``model.no_weight_decay()``
    (positional tables, CLS token).
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    named = dict(model.named_parameters())
    unknown = skip - set(named)
    if unknown:
        raise ValueError(f"no_weight_decay() names parameters the model does not have: {sorted(unknown)}")
    decay, no_decay = [], []
    for name, param in named.items():
        if not param.requires_grad:
            continue
        (no_decay if not decay_all and (param.ndim <= 1 or name in skip) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum over :func:`param_groups`, at peak learning rate ``cfg.lr``."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_all_params)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the peak learning rate before optimizer step ``step`` (0-based).

    Linear warm-up from ``1/warmup_steps`` to 1 over ``warmup_steps`` steps, then a half cosine
    from 1 down to ``min_factor`` at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-optimizer-step warm-up + cosine schedule over ``cfg.epochs`` epochs."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    min_factor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps=warmup, total_steps=total, min_factor=min_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
