"""Optimiser (AdamW / SGD-momentum) with weight-decay groups, and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from vivit_tl.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False,
                 layer_decay: float | None = None) -> list[dict]:
    """Parameter groups: decayed weights and never-decayed parameters, per layer with ``layer_decay``.

    Never decayed (unless ``decay_all``, as TF-Addons' AdamW in the Keras CIFAR-10 example): every
    parameter with ``ndim <= 1`` (norms, biases) and the names in ``model.no_weight_decay()``
    (positional tables, CLS token).

    Without ``layer_decay``: two groups ``decay`` and ``no_decay``, in that order. With it (BEiT's and
    VideoMAE's layer-wise decay): one group per (layer, decayed or not) that has parameters, its
    ``lr_scale`` ``layer_decay ** (L + 1 - layer)`` for the layers of :func:`layer_ids`. Every group
    carries ``name``, ``weight_decay`` and ``lr_scale`` (see :func:`describe_param_groups`).
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    unknown = skip - {name for name, _ in model.named_parameters()}
    if unknown:
        raise ValueError(f"no_weight_decay() names parameters the model does not have: {sorted(unknown)}")
    layer_of, num_layers = layer_ids(model) if layer_decay is not None else ({}, 0)

    def new_group(layer: int, decayed: bool) -> dict:
        prefix = f"layer_{layer}/" if layer_decay is not None else ""
        return {"name": prefix + ("decay" if decayed else "no_decay"), "params": [],
                "weight_decay": weight_decay if decayed else 0.0,
                "lr_scale": 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - layer)}

    # without layer decay both groups exist, even empty, in this order (optimizer states stay resumable)
    groups = {} if layer_decay is not None else {(0, True): new_group(0, True), (0, False): new_group(0, False)}
    for name, param in named.items():
        key = (layer_of.get(name, 0), decay_all or not (param.ndim <= 1 or name in skip))
        if key not in groups:
            groups[key] = new_group(*key)
        groups[key]["params"].append(param)
    return [groups[key] for key in (groups if layer_decay is None else sorted(groups))]


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """``({parameter name: layer id}, L)`` for layer-wise lr decay of a :class:`~vivit_tl.models.VideoTransformer`.

    Layer 0: the tokenizer and the positional table (and class token); block ``i`` of the encoder:
    ``i + 1`` (a TokenLearner applied once: the layer of the block it feeds); the factorised
    encoder's temporal stack follows its spatial one (the temporal positions with its first block,
    the spatial norm with the last spatial block); top, ``L + 1``: the final norm and the head, where
    L is the number of blocks. What timm's ``param_groups_layer_decay`` would read from a
    ``group_matcher``; it is not used because timm is an optional dependency.
    """
    spatial = len(model.encoder.blocks)
    temporal = len(model.temporal_encoder.blocks) if getattr(model, "factorised_encoder", False) else 0
    top = spatial + temporal + 1

    def layer(name: str) -> int:
        parts = name.split(".")
        if parts[0] in ("tokenizer", "pos"):
            return 0
        if parts[0] == "encoder" and parts[1] == "blocks":
            return int(parts[2]) + 1
        if parts[0] == "encoder" and parts[1] == "token_learner":
            return model.encoder.tl_index + 1
        if parts[0] == "encoder" and parts[1] == "norm" and temporal:
            return spatial
        if parts[0] == "temporal_pos":
            return spatial + 1
        if parts[0] == "temporal_encoder" and parts[1] == "blocks":
            return spatial + 1 + int(parts[2])
        return top  # the head and the final norm

    return {name: layer(name) for name, _ in model.named_parameters()}, top - 1


def describe_param_groups(groups: list[dict]) -> str:
    """A compact table of optimizer parameter groups: name, lr scale, weight decay, number of tensors."""
    width = max(len("group"), *(len(g["name"]) for g in groups))
    lines = [f"{'group':<{width}}  lr scale  weight decay  tensors"]
    lines += [f"{g['name']:<{width}}  {g['lr_scale']:8.4g}  {g['weight_decay']:12.4g}  {len(g['params']):7d}"
              for g in groups]
    return "\n".join(lines)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum over :func:`param_groups`, at peak learning rate ``cfg.lr`` times each
    group's ``lr_scale``."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_all_params, cfg.layer_decay)
    for group in groups:
        group["lr"] = cfg.lr * group["lr_scale"]
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
