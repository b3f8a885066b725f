"""Compute cost of a model: parameters, GFLOPs in the papers' convention, tokens entering each block.

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` on a model and input built on the
``meta`` device (shapes only: no memory, no arithmetic, so ViViT-L at 32x224² costs well under a second).
On ``meta``, `scaled_dot_product_attention` runs through its math decomposition (two batched matmuls),
which the counter sees. The fused CPU kernel ``aten._scaled_dot_product_flash_attention_for_cpu`` has no
formula in torch's counter (it would count 0), so `count_flops` also registers torch's own SDPA formula
for it, and counting on real CPU tensors gives the same number.

The counter reports 2 FLOPs per multiply-add; the ViViT and TokenLearner papers report multiply-adds
as "FLOPs". ``gflops`` here is that paper convention: ``flop_counter total / 2 / 1e9``. Only matmuls,
convolutions and attention are counted (as in the papers); norms, softmax and GELU are not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter

from vivit_tl.models.config import ModelConfig
from vivit_tl.models.layers import Block
from vivit_tl.models.registry import model_config
from vivit_tl.models.vivit import VideoTransformer


def _register_cpu_sdpa_formula() -> None:
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in flop_counter.flop_registry or op.default in flop_counter.flop_registry:
        return

    def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    flop_counter.register_flop_formula(op)(cpu_sdpa_flop)


def count_flops(model: VideoTransformer, frames: int, size: int, batch: int = 1) -> dict[str, Any]:
    """Count one forward pass of ``model`` on ``[batch, in_chans, frames, size, size]``.

    The input lives on the model's device (use a model built under ``torch.device("meta")`` for speed).

    Returns:
        ``params`` (int), ``gflops`` (multiply-adds / 1e9, per sample), ``flops_convention`` (a sentence),
        ``tokens_per_block`` (tokens entering each transformer block, per sample, in execution order).
    """
    _register_cpu_sdpa_formula()
    device = next(model.parameters()).device
    x = torch.zeros(batch, model.config.in_chans, frames, size, size, device=device)
    tokens: list[int] = []

    def record(module: torch.nn.Module, args: tuple) -> None:
        tokens.append(args[0].shape[0] * args[0].shape[1] // batch)  # [N, L, C] -> N * L per sample

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Block)]
    try:
        with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
            model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 2 / batch / 1e9,
        "flops_convention": "multiply-adds (the ViViT/TokenLearner papers' 'FLOPs'), = torch flop_counter / 2",
        "tokens_per_block": tokens,
    }


def model_cost(name: str, frames: int | None = None, size: int | None = None, **overrides: Any) -> dict[str, Any]:
    """`count_flops` of the named variant (built on the meta device) at ``frames`` x ``size``² (default: the
    variant's own sizes); ``overrides`` change config fields."""
    return config_cost(model_config(name, **overrides), name, frames, size)


def config_cost(cfg: ModelConfig, label: str, frames: int | None = None, size: int | None = None) -> dict[str, Any]:
    """`count_flops` of the model ``cfg`` builds (on the meta device: no memory, no weights) at ``frames`` x
    ``size``² (default: the config's own sizes); ``label`` names it in the result."""
    frames = cfg.num_frames if frames is None else frames
    size = cfg.image_size if size is None else size
    with torch.device("meta"):
        model = VideoTransformer(cfg)
    return {"model": label, "frames": frames, "size": size, **count_flops(model, frames, size)}
