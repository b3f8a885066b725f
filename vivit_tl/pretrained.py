"""Start from pretrained weights: timm image ViTs, `transformers` ViViT, vivit-tl model files.

    from vivit_tl.pretrained import load_pretrained, pretrained_model
    report = load_pretrained(model, "timm:vit_base_patch16_224.augreg_in21k")  # into a built model
    model, report = pretrained_model("hf:google/vivit-b-16x2-kinetics400")     # a model of the source's shape

A spec is ``timm:<model name>`` (downloaded by timm), ``hf:<repo id or folder>`` (a ``VivitModel`` /
``VivitForVideoClassification`` loaded by transformers), or a local path: a vivit-tl model folder or
file, a transformers folder (``config.json`` + weights), or one weights file (.safetensors, .pth, .pt,
.bin) holding a timm ViT, transformers ViViT or vivit-tl state dict.

Each source has a pure conversion, state dict -> state dict (like timm's ``checkpoint_filter_fn``):
`convert_timm_vit`, `convert_hf_vivit`, `convert_vivit_tl`. Loading is strict: every tensor of the
model comes from the source, except the layers that have no counterpart there and stay newly
initialised (TokenLearner / TokenFuser, a head with another class count, Model 2's temporal encoder,
Model 3's temporal LayerNorm); every source tensor is used, except those dropped on purpose (a head
with another class count, the class token of a 'gap' model, the transformers pooler). Both lists,
with the reason for each key, are in the returned `LoadReport`.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import repeat
from torch import nn

from vivit_tl.errors import UserError
from vivit_tl.models import ModelConfig, VideoTransformer, build_model, inflate_patch_weight, resample_pos_embed

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
Grid = tuple[int, int, int]

#: Model parameters that may stay newly initialised when the source has no counterpart.
NEW_BY_DESIGN = {
    r"(^|\.)token_learner\.": "TokenLearner (not in the source)",
    r"\.fuser\.": "TokenFuser (not in the source)",
    r"^head\.": "classification head (not in the source or another class count)",
    r"^temporal_(pos|encoder)\.": "Model 2 temporal encoder (not in the source)",
    r"\.norm_t\.": "Model 3 temporal LayerNorm (not in the source; scenic leaves it new too)",
}
#: The tensors of one pre-LN transformer block, named as in timm and in `vivit_tl.models.layers.Block`.
BLOCK_TENSORS = tuple(f"{layer}.{kind}" for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
                      for kind in ("weight", "bias"))
#: transformers activation names -> our `gelu_approximate`.
HF_GELU = {"gelu": "none", "gelu_python": "none", "gelu_fast": "tanh", "gelu_new": "tanh",
           "gelu_pytorch_tanh": "tanh", "gelu_python_tanh": "tanh"}
#: Fields a source must share with the model (the weights have no meaning otherwise).
ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_dim", "patch_size", "in_chans", "qkv_bias")
#: Fields that change the computation but not the shapes: a mismatch is reported, not refused.
FORM_FIELDS = ("gelu_approximate", "norm_eps", "mlp_final_gelu")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass
class Conversion:
    """A converted state dict and what the conversion left out.

    Attributes:
        state: tensors named as in `VideoTransformer`.
        unexpected: source keys not used, with the reason.
        new: model keys the source cannot provide beyond `NEW_BY_DESIGN` (e.g. a class token the source
            lacks), with the reason.
        notes: anything approximate about the conversion.
    """

    state: StateDict
    unexpected: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Source:
    """Pretrained weights as read from a spec.

    Attributes:
        kind: 'timm', 'hf' or 'vivit_tl'.
        name: the spec (for messages).
        state: the source's own state dict.
        config: the `ModelConfig` fields the source determines (architecture, GELU form, eps, sizes);
            may be partial for a bare weights file.
        grid: the token grid ``(T, H, W)`` its positional table is laid out on, when known.
        model_config: a vivit-tl source's full config.
        classes: class names of the source's head, when known.
        preprocessing: ``{"mean": ..., "std": ...}`` the source was trained with, when known.
        notes: what had to be assumed while reading.
    """

    kind: str
    name: str
    state: StateDict
    config: dict[str, Any] = field(default_factory=dict)
    grid: Grid | None = None
    model_config: dict[str, Any] | None = None
    classes: list[str] | None = None
    preprocessing: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What `load_pretrained` did.

    Attributes:
        source: the spec.
        kind: 'timm', 'hf' or 'vivit_tl'.
        loaded: model keys set from the source.
        missing_keys: model keys left newly initialised, with the reason.
        unexpected_keys: source keys not used, with the reason.
        notes: warnings (another GELU form or LayerNorm eps than the source, approximations).
        preprocessing: ``{"mean", "std"}`` the source expects on [0, 1] pixels, when known.
        classes: the source's class names, when known.
    """

    source: str
    kind: str
    loaded: list[str]
    missing_keys: dict[str, str]
    unexpected_keys: dict[str, str]
    notes: list[str]
    preprocessing: dict[str, Any] | None = None
    classes: list[str] | None = None

    def summary(self) -> str:
        """A few lines for the log: counts, then each missing/unexpected key with its reason, then notes."""
        lines = [f"init_from {self.source} ({self.kind}): {len(self.loaded)} tensors loaded, "
                 f"{len(self.missing_keys)} newly initialised, {len(self.unexpected_keys)} source tensors unused"]
        lines += [f"  new: {k}: {why}" for k, why in _group(self.missing_keys).items()]
        lines += [f"  unused: {k}: {why}" for k, why in _group(self.unexpected_keys).items()]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- conversions (pure)
def convert_timm_vit(state: StateDict, cfg: ModelConfig, *, tubelet_init: str = "central_frame",
                     source_grid: Grid | None = None) -> Conversion:
    """A timm ``VisionTransformer`` state dict as a `VideoTransformer` state dict for ``cfg``.

    The patch kernel becomes the tubelet kernel (`inflate_patch_weight`: 'central_frame' or 'inflate');
    the spatial positional table is resampled to the model's grid (bicubic, class row kept apart) and
    repeated over the T time steps (Model 2: its spatial table, per frame); the class token and its row
    are kept for ``pool='cls'``, dropped for 'gap'; the head is kept when the class count matches.
    Model 3's temporal attention starts as a copy of the spatial one (scenic's default).
    Layer scale (``ls1``/``ls2``, e.g. DeiT-III) is folded into the projection it scales; a model whose
    final norm is ``fc_norm`` (timm's average-pool models) has it used as the final norm (approximate:
    timm normalises after pooling). ``cfg`` with the source's sizes, ``num_frames = tubelet_size = 1``
    and ``gelu_approximate='none'`` gives the same logits as timm.

    Args:
        state: the timm state dict.
        cfg: the model to convert for.
        tubelet_init: 'central_frame' (SPEC §1 default) or 'inflate'.
        source_grid: ``(1, H0, W0)`` of the source's positional table; None infers a square grid.
    """
    state = dict(state)
    if cfg.tokenizer != "tubelet":
        raise UserError(f"a timm ViT's patch embedding cannot initialise tokenizer {cfg.tokenizer!r}; "
                        "use tokenizer 'tubelet'")
    out = Conversion({})
    weight = _pop(state, "patch_embed.proj.weight", "timm ViT")  # [C, C_in, p, p]
    depth = _count_blocks(state, r"blocks\.(\d+)\.")
    _check_dims("timm ViT", cfg, embed_dim=weight.shape[0], in_chans=weight.shape[1], patch_size=weight.shape[-1],
                depth=depth, mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0] if depth else None)
    out.state["tokenizer.proj.weight"] = inflate_patch_weight(weight, cfg.tubelet_size, tubelet_init)
    bias = state.pop("patch_embed.proj.bias", None)
    out.state["tokenizer.proj.bias"] = bias if bias is not None else weight.new_zeros(weight.shape[0])
    for i in range(depth):
        src, dst = f"blocks.{i}.", block_prefix(cfg, i)
        for name in BLOCK_TENSORS:
            if src + name in state:
                out.state[dst + name] = state.pop(src + name)
        for scale, proj in (("ls1.gamma", "attn.proj"), ("ls2.gamma", "mlp.fc2")):  # y = g * (W x + b)
            gamma = state.pop(src + scale, None)
            if gamma is not None:
                out.state[f"{dst}{proj}.weight"] = gamma[:, None] * out.state[f"{dst}{proj}.weight"]
                out.state[f"{dst}{proj}.bias"] = gamma * out.state[f"{dst}{proj}.bias"]
    _copy_temporal_attention(out, cfg, depth)
    norm = "norm" if "norm.weight" in state else "fc_norm"
    if norm == "fc_norm" and "fc_norm.weight" in state:
        out.notes.append("the source normalises after average pooling (fc_norm); it is used as the final norm, "
                         "which this model applies before pooling: not an exact conversion")
    for kind in ("weight", "bias"):
        if f"{norm}.{kind}" in state:
            out.state[f"encoder.norm.{kind}"] = state.pop(f"{norm}.{kind}")
    _convert_head(state, "head", cfg, out)
    table = _pop(state, "pos_embed", "timm ViT")  # [1, P + H0*W0, C]
    cls_token = state.pop("cls_token", None)
    grid = source_grid or _square_grid(table.shape[1], "timm ViT pos_embed")
    num_prefix = table.shape[1] - grid[1] * grid[2]
    if num_prefix not in (0, 1):
        raise UserError(f"timm ViT pos_embed has {table.shape[1]} rows for a {grid[1]}x{grid[2]} grid: only a class "
                        "token (or none) is supported as prefix")
    _put_positions(out, "pos", table, cls_token, "cls_token", grid, num_prefix, model_grid(cfg), cfg.pool == "cls")
    _refuse_leftovers(state, "timm ViT")
    return out


def convert_hf_vivit(state: StateDict, cfg: ModelConfig, *, source_grid: Grid | None = None) -> Conversion:
    """A transformers ``VivitModel`` / ``VivitForVideoClassification`` state dict (names of transformers 5
    or 4) as a `VideoTransformer` state dict for ``cfg`` (ViViT Model 1, or 3/4 which share its tensors).

    The Conv3d tubelet kernel is copied as is (transformers transposes the input to ``[B, C, F, H, W]``
    before the same Conv3d); q/k/v are fused into ``attn.qkv``; the positional table is resampled to the
    model's grid when the sizes differ; the pooler (unused by the classifier) is dropped.

    Args:
        state: the transformers state dict.
        cfg: the model to convert for.
        source_grid: ``(T0, H0, W0)`` of the source's table (from its config.json); None infers it,
            assuming the source shares the model's number of time steps or its spatial grid.
    """
    if cfg.model_type == "factorised_encoder":
        raise UserError("transformers ViViT weights are a joint (Model 1) encoder; they cannot initialise "
                        "model_type 'factorised_encoder'")
    if cfg.tokenizer != "tubelet":
        raise UserError(f"transformers ViViT tubelet weights cannot initialise tokenizer {cfg.tokenizer!r}")
    state = {_hf_name(k): v for k, v in state.items()}
    out = Conversion({})
    weight = _pop(state, "embeddings.patch_embeddings.projection.weight", "transformers ViViT")  # [C, C_in, t, p, p]
    depth = _count_blocks(state, r"layers\.(\d+)\.")
    _check_dims("transformers ViViT", cfg, embed_dim=weight.shape[0], in_chans=weight.shape[1],
                tubelet_size=weight.shape[2], patch_size=weight.shape[-1], depth=depth,
                mlp_dim=state["layers.0.mlp.fc1.weight"].shape[0] if depth else None)
    out.state["tokenizer.proj.weight"] = weight
    out.state["tokenizer.proj.bias"] = _pop(state, "embeddings.patch_embeddings.projection.bias", "transformers ViViT")
    names = {"layernorm_before": "norm1", "attention.o_proj": "attn.proj", "layernorm_after": "norm2",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(depth):
        src, dst = f"layers.{i}.", block_prefix(cfg, i)
        for kind in ("weight", "bias"):
            for hf, ours in names.items():
                out.state[f"{dst}{ours}.{kind}"] = _pop(state, f"{src}{hf}.{kind}", "transformers ViViT")
            qkv = [state.pop(f"{src}attention.{x}_proj.{kind}", None) for x in "qkv"]
            if all(t is not None for t in qkv):
                out.state[f"{dst}attn.qkv.{kind}"] = torch.cat(qkv, dim=0)  # [3 * heads * d, ...], q then k then v
    _copy_temporal_attention(out, cfg, depth)
    for kind in ("weight", "bias"):
        out.state[f"encoder.norm.{kind}"] = _pop(state, f"layernorm.{kind}", "transformers ViViT")
        if f"pooler.dense.{kind}" in state:
            state.pop(f"pooler.dense.{kind}")
            out.unexpected[f"pooler.dense.{kind}"] = "VivitModel's pooler is not used by the classification head"
    _convert_head(state, "classifier", cfg, out)
    table = _pop(state, "embeddings.position_embeddings", "transformers ViViT")  # [1, 1 + T0*H0*W0, C]
    grid = source_grid or _infer_video_grid(table.shape[1] - 1, cfg)
    cls_token = _pop(state, "embeddings.cls_token", "transformers ViViT")
    _put_positions(out, "pos", table, cls_token, "embeddings.cls_token", grid, 1, model_grid(cfg), cfg.pool == "cls")
    _refuse_leftovers(state, "transformers ViViT")
    return out


def convert_vivit_tl(state: StateDict, cfg: ModelConfig, *, source_config: ModelConfig | dict | None = None
                     ) -> Conversion:
    """A vivit-tl state dict (of ``source_config``) for a model of another ``cfg``: e.g. more frames, another
    size, another class count, a TokenLearner added or changed, another pooling.

    Positional tables are resampled to the new grids, the head is kept when the class count matches, the
    class token follows ``cfg.pool``; TokenLearner / TokenFuser tensors are kept when the model has the same
    ones, otherwise dropped (the model's stay newly initialised). Every other tensor must fit exactly.
    """
    src_cfg = source_config if isinstance(source_config, ModelConfig) else (
        ModelConfig.from_dict(source_config) if source_config is not None else cfg)
    for name in ("model_type", "tokenizer", "t2t_soft_splits", "t2t_token_dim", "tubelet_size", "head_dim",
                 *ARCH_FIELDS, *(("temporal_depth",) if cfg.model_type == "factorised_encoder" else ())):
        if getattr(src_cfg, name) != getattr(cfg, name):
            raise UserError(f"the source model has {name}={getattr(src_cfg, name)!r}, this model "
                            f"{getattr(cfg, name)!r}: the weights do not fit")
    with torch.device("meta"):
        target = {k: v.shape for k, v in build_model(cfg).state_dict().items()}
    state = {_canonical_block_key(k): v for k, v in state.items()}
    target_names = {_canonical_block_key(k): k for k in target}
    out = Conversion({})
    positions = {"pos": (model_grid(src_cfg), model_grid(cfg))}
    if cfg.model_type == "factorised_encoder":
        positions["temporal_pos"] = ((src_cfg.num_frames // src_cfg.tubelet_size, 1, 1),
                                     (cfg.num_frames // cfg.tubelet_size, 1, 1))
    for name, (src_grid, dst_grid) in positions.items():
        table, cls_token = _pop(state, f"{name}.pos_embed", "vivit-tl"), state.pop(f"{name}.cls_token", None)
        _put_positions(out, name, table, cls_token, f"{name}.cls_token", src_grid, int(src_cfg.pool == "cls"), dst_grid,
                       cfg.pool == "cls")
    _convert_head(state, "head", cfg, out)
    for key, value in state.items():
        dst = target_names.get(key)
        if dst is not None and target[dst] == value.shape:
            out.state[dst] = value
        elif any(re.search(p, key) for p in NEW_BY_DESIGN):
            out.unexpected[key] = "this model's TokenLearner/TokenFuser differs from the source's"
        else:
            raise UserError(f"source tensor {key} {tuple(value.shape)} has no counterpart in this model"
                            + (f" (expects {tuple(target[dst])})" if dst else ""))
    return out


# --------------------------------------------------------------------------- entry points
def load_pretrained(model: VideoTransformer, spec: str, *, tubelet_init: str = "central_frame",
                    keep_head: bool = True) -> LoadReport:
    """Initialise ``model`` in place from a pretrained source and return what was loaded.

    Args:
        model: the model (any device/dtype; tensors are copied into its parameters).
        spec: ``timm:<name>``, ``hf:<repo id or folder>`` or a local path (see the module docstring).
        tubelet_init: for timm image models: 'central_frame' or 'inflate' (SPEC §1).
        keep_head: load the source's head when its class count matches the model's (the class order
            must then be the same); False leaves the head newly initialised.

    Raises:
        UserError: an unknown spec, a missing optional package, an unreadable file, or weights that
            do not fit the model (another width, depth, heads, patch size, ...).
    """
    return load_source(model, read_source(spec), tubelet_init=tubelet_init, keep_head=keep_head)


def pretrained_model(spec: str, *, tubelet_init: str = "central_frame", keep_head: bool = True,
                     **overrides: Any) -> tuple[VideoTransformer, LoadReport]:
    """Build a model with the source's architecture (widths, depth, heads, GELU form, LayerNorm eps, sizes),
    ``overrides`` of any `ModelConfig` field on top, and load the source into it.

    ``pretrained_model("timm:vit_base_patch16_224")`` is the image model (exact);
    ``pretrained_model("timm:...", num_frames=8, tubelet_size=2)`` a ViViT initialised from it;
    ``pretrained_model("hf:google/vivit-b-16x2-kinetics400")`` ViViT-B/16x2 Model 1 (exact).
    """
    source = read_source(spec)
    fields = {**source.config, **overrides}
    if "num_heads" not in fields:
        raise UserError(f"{spec}: the number of attention heads cannot be read from the weights; pass num_heads")
    model = build_model(ModelConfig.from_dict(fields))
    return model, load_source(model, source, tubelet_init=tubelet_init, keep_head=keep_head)


def load_source(model: VideoTransformer, source: Source, *, tubelet_init: str = "central_frame",
                keep_head: bool = True) -> LoadReport:
    """Convert ``source`` for ``model``'s config, check it strictly and load it (see `load_pretrained`)."""
    cfg = model.config
    notes = list(source.notes)
    for name in ARCH_FIELDS:
        if name in source.config and source.config[name] != getattr(cfg, name):
            raise UserError(f"{source.name} has {name}={source.config[name]!r}, the model {getattr(cfg, name)!r}: "
                            f"set model.{name}={source.config[name]} (or choose another source)")
    for name in FORM_FIELDS:
        if name in source.config and source.config[name] != getattr(cfg, name):
            notes.append(f"the source uses {name}={source.config[name]!r}, the model {getattr(cfg, name)!r}: "
                         f"set model.{name}={source.config[name]} to compute what the source computes")
    if source.kind == "timm":
        conversion = convert_timm_vit(source.state, cfg, tubelet_init=tubelet_init, source_grid=source.grid)
    elif source.kind == "hf":
        conversion = convert_hf_vivit(source.state, cfg, source_grid=source.grid)
    else:
        conversion = convert_vivit_tl(source.state, cfg, source_config=source.model_config)
    state, unexpected = conversion.state, dict(conversion.unexpected)
    if not keep_head:
        for key in [k for k in state if k.startswith("head.")]:
            state.pop(key)
            unexpected[key] = "keep_head=False"
    own = model.state_dict()
    missing = {k: conversion.new.get(k) or _new_by_design(k) for k in own if k not in state}
    refused = sorted(k for k, why in missing.items() if why is None)
    extra = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if refused or extra or shapes:
        parts = [f"missing {_few(refused)}" if refused else "", f"unexpected {_few(extra)}" if extra else "",
                 f"shape mismatches {_few(shapes)}" if shapes else ""]
        raise UserError(f"{source.name} does not fit the model: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=False)
    report = LoadReport(source.name, source.kind, sorted(state), dict(sorted(missing.items())),
                        dict(sorted(unexpected.items())), notes + conversion.notes, source.preprocessing,
                        source.classes)
    logger.info(report.summary())
    for note in report.notes:
        logger.warning("init_from %s: %s", source.name, note)
    return report


# --------------------------------------------------------------------------- reading sources
def read_source(spec: str) -> Source:
    """Read the weights (and what is known of their architecture) that ``spec`` designates."""
    if not isinstance(spec, str) or not spec:
        raise UserError(f"init_from must be 'timm:<name>', 'hf:<repo id>' or a path, got {spec!r}")
    if spec.startswith("timm:"):
        return _read_timm(spec)
    if spec.startswith("hf:"):
        return _read_hf(spec)
    return _read_path(spec)


def timm_source(net: nn.Module, name: str) -> Source:
    """A `Source` from a built timm ``VisionTransformer`` (its weights and architecture)."""
    if type(net).__name__ != "VisionTransformer" or not hasattr(net, "patch_embed"):
        raise UserError(f"{name}: only timm VisionTransformer models are supported, got {type(net).__name__}")
    block = net.blocks[0]
    act = block.mlp.act
    gelu = getattr(act, "approximate", None) or ("tanh" if "tanh" in type(act).__name__.lower() else None)
    if gelu is None:
        raise UserError(f"{name}: MLP activation {type(act).__name__} is not GELU; only GELU ViTs are supported")
    norm = net.norm if isinstance(net.norm, nn.LayerNorm) else net.fc_norm
    img = net.patch_embed.img_size
    config = dict(embed_dim=net.embed_dim, depth=len(net.blocks), num_heads=block.attn.num_heads,
                  mlp_dim=block.mlp.fc1.out_features, patch_size=net.patch_embed.patch_size[0],
                  image_size=img[0], in_chans=net.patch_embed.proj.in_channels,
                  qkv_bias=block.attn.qkv.bias is not None,
                  norm_eps=getattr(norm, "eps", 1e-6), gelu_approximate=gelu, mlp_final_gelu=False,
                  pool="cls" if net.global_pool == "token" else "gap", num_frames=1, tubelet_size=1)
    if net.num_classes:
        config["num_classes"] = net.num_classes
    if img[0] != img[1]:
        raise UserError(f"{name}: non-square input size {tuple(img)} is not supported")
    pcfg = getattr(net, "pretrained_cfg", None) or {}
    grid = net.patch_embed.grid_size
    return Source("timm", name, net.state_dict(), config, grid=(1, grid[0], grid[1]),
                  preprocessing={k: list(pcfg[k]) for k in ("mean", "std") if k in pcfg} or None)


def hf_source(state: StateDict, hf_config: dict[str, Any], name: str) -> Source:
    """A `Source` from a transformers ViViT state dict and its config (``config.json`` as a dict)."""
    if hf_config.get("model_type") != "vivit":
        raise UserError(f"{name}: model_type {hf_config.get('model_type')!r} is not a transformers ViViT ('vivit')")
    t, p, pw = hf_config.get("tubelet_size", (2, 16, 16))
    size = hf_config.get("image_size", 224)
    h, w = (size, size) if isinstance(size, int) else size
    act = hf_config.get("hidden_act", "gelu_fast")
    if p != pw or h != w or act not in HF_GELU:
        raise UserError(f"{name}: unsupported ViViT config (tubelet {[t, p, pw]}, image_size {size}, "
                        f"hidden_act {act!r}); supported: square tubelets and frames, GELU ({sorted(HF_GELU)})")
    frames = hf_config.get("num_frames", 32)
    config = dict(embed_dim=hf_config.get("hidden_size", 768), depth=hf_config.get("num_hidden_layers", 12),
                  num_heads=hf_config.get("num_attention_heads", 12), mlp_dim=hf_config.get("intermediate_size", 3072),
                  patch_size=p, tubelet_size=t, num_frames=frames, image_size=h,
                  in_chans=hf_config.get("num_channels", 3),
                  qkv_bias=hf_config.get("qkv_bias", True), norm_eps=hf_config.get("layer_norm_eps", 1e-6),
                  gelu_approximate=HF_GELU[act], mlp_final_gelu=False, pool="cls", model_type="joint")
    classes = None
    head = state.get("classifier.weight")
    if head is not None:
        config["num_classes"] = head.shape[0]
        labels = {int(k): v for k, v in (hf_config.get("id2label") or {}).items()}
        if sorted(labels) == list(range(head.shape[0])):
            classes = [labels[i] for i in range(head.shape[0])]
    # The released Kinetics checkpoints were trained on zero-centred frames in [-1, 1] (scenic zero_centering).
    return Source("hf", name, state, config, grid=(frames // t, h // p, w // p), classes=classes,
                  preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})


def _read_timm(spec: str) -> Source:
    timm = _optional("timm", spec)
    name = spec[len("timm:"):]
    try:
        net = timm.create_model(name, pretrained=True)
    except (RuntimeError, OSError, ValueError) as exc:  # unknown model name, or a download/hub error
        raise UserError(f"{spec}: timm cannot create it: {exc}") from None
    return timm_source(net, spec)


def _read_hf(spec: str) -> Source:
    transformers = _optional("transformers", spec)
    repo = spec[len("hf:"):]
    try:
        model_type = transformers.AutoConfig.from_pretrained(repo).model_type
        if model_type == "vivit":
            net, info = transformers.VivitForVideoClassification.from_pretrained(repo, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:  # no such repo/folder, offline, not a transformers model
        raise UserError(f"{spec}: transformers cannot load it: {exc}") from None
    if model_type != "vivit":
        raise UserError(f"{spec}: model_type {model_type!r} is not a transformers ViViT ('vivit')")
    fresh = set(info.get("missing_keys", ()))  # newly initialised by transformers (e.g. no classifier in the repo)
    state = {k: v for k, v in net.state_dict().items() if k not in fresh}
    return hf_source(state, net.config.to_dict(), spec)


def _read_path(spec: str) -> Source:
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"init_from {spec!r}: no such file or folder (expected 'timm:<model name>', "
                                "'hf:<repo id>', or a weights file / model folder)")
    from vivit_tl.checkpoint import META_KEY, WEIGHTS_NAME, load_model_file, resolve_model_file

    weights = path
    if path.is_dir():
        hf_files = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / "config.json").is_file()]
        weights = next((f for f in hf_files if f.is_file()), None) or resolve_model_file(path)  # else ours
    if weights.name == "model.json":
        weights = weights.with_name(WEIGHTS_NAME)
    if weights.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"init_from {spec!r}: unknown weights file type {weights.suffix!r} (expected one of "
                        f"{list(WEIGHT_SUFFIXES)})")
    if weights.suffix == ".safetensors" and META_KEY in _safetensors_metadata(weights):
        model, info = load_model_file(weights)
        return Source("vivit_tl", spec, model.state_dict(), dict(info["model_config"]),
                      model_config=info["model_config"],
                      classes=info.get("classes"), preprocessing=_data_normalisation(info.get("data_config")))
    state = _read_state_dict(weights)
    if "patch_embed.proj.weight" in state:
        return Source("timm", spec, state, notes=[
            "a bare timm weights file: num_heads, the GELU form and LayerNorm eps cannot be read from it "
            "(timm ViTs use exact GELU, gelu_approximate='none', and eps 1e-6)"])
    if any(k.endswith("patch_embeddings.projection.weight") for k in state):
        config_file = weights.with_name("config.json")
        if config_file.is_file():
            return hf_source(state, json.loads(config_file.read_text()), spec)
        return Source("hf", spec, state, notes=["no config.json next to the transformers weights: the source "
                                                "grid is inferred, num_heads/GELU/eps are not checked"])
    if any(k.startswith("tokenizer.") for k in state):
        return Source("vivit_tl", spec, state, notes=["a bare vivit-tl state dict: assumed to come from a model "
                                                      "of this config"])
    raise UserError(f"{weights}: not a timm ViT, transformers ViViT or vivit-tl state dict "
                    f"(first keys: {list(state)[:4]})")


def _read_state_dict(path: Path) -> StateDict:
    """Tensors of a .safetensors or torch pickle (weights only), unwrapped from ``{'model': ...}``-style
    containers and a DDP ``module.`` prefix."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise UserError(f"{path}: cannot read weights: {exc}") from None
    while isinstance(state, dict) and len(state) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in ("model", "state_dict", "module", "model_state") if k in state), None)
        if not isinstance(inner, dict):
            break
        state = inner
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path}: holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return state


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path} is corrupt or truncated: {exc}") from None


def _data_normalisation(data_config: dict | None) -> dict[str, Any] | None:
    if not data_config or data_config.get("mean") is None:
        return None
    return {"mean": data_config["mean"], "std": data_config["std"]}


def _optional(package: str, spec: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{spec} needs the optional package {package!r}: pip install 'vivit-tl[pretrained]' "
                        f"(or pip install {package})") from None


# --------------------------------------------------------------------------- helpers
def model_grid(cfg: ModelConfig) -> Grid:
    """The grid ``(T, H, W)`` of the model's positional table ``pos`` (Model 2: one frame, ``(1, H, W)``)."""
    side = cfg.image_size // cfg.patch_size
    return (1 if cfg.model_type == "factorised_encoder" else cfg.num_frames // cfg.tubelet_size, side, side)


def block_prefix(cfg: ModelConfig, index: int) -> str:
    """State-dict prefix of the transformer block ``index`` of the (spatial) encoder: inside a TokenFuser
    layer (placement 'fuse', from ``token_learner_loc`` on) the block is ``encoder.blocks.{i}.block.``."""
    fused = (cfg.token_learner != "none" and cfg.token_learner_placement == "fuse"
             and index >= cfg.token_learner_index)
    return f"encoder.blocks.{index}.block." if fused else f"encoder.blocks.{index}."


def _put_positions(out: Conversion, name: str, table: torch.Tensor, cls_token: torch.Tensor | None, cls_key: str,
                   src_grid: Grid, src_prefix: int, dst_grid: Grid, dst_cls: bool) -> None:
    """Set ``{name}.pos_embed`` (and ``{name}.cls_token``) from a source table ``[1, P + T0*H0*W0, C]``.

    The grid part is resampled to ``dst_grid`` (`resample_pos_embed`; a one-step table is resampled in
    space and repeated over time); the class row and token are kept for a class-token model, dropped
    otherwise (a source without them gives a zero row and a newly initialised token).
    """
    if table.shape[1] != src_prefix + src_grid[0] * src_grid[1] * src_grid[2]:
        raise UserError(f"positional table {name} has {table.shape[1]} rows, expected {src_prefix} + grid "
                        f"{src_grid}: the source config does not match its weights")
    grid_part = table[:, src_prefix:]  # [1, T0*H0*W0, C]
    t, h, w = dst_grid
    if src_grid[0] == 1 and t > 1:  # an image table: resample in space, repeat over time (SPEC §1)
        grid_part = resample_pos_embed(grid_part, src_grid, (1, h, w))  # [1, H*W, C]
        grid_part = repeat(grid_part, "1 p c -> 1 (t p) c", t=t)  # [1, T*H*W, C]
    else:
        grid_part = resample_pos_embed(grid_part, src_grid, dst_grid)  # [1, T*H*W, C]
    if src_grid != dst_grid:
        how = "resampled in space, repeated over time" if src_grid[0] == 1 < t else "resampled"
        out.notes.append(f"{name}: positional table {how}, grid {src_grid} -> {dst_grid}")
    if dst_cls:
        row = table[:, :1] if src_prefix else table.new_zeros(1, 1, table.shape[2])
        out.state[f"{name}.pos_embed"] = torch.cat([row, grid_part], dim=1)  # [1, 1 + T*H*W, C]
        if cls_token is None:
            out.new[f"{name}.cls_token"] = "the source has no class token"
        else:
            out.state[f"{name}.cls_token"] = cls_token
    else:
        out.state[f"{name}.pos_embed"] = grid_part
        if cls_token is not None:
            out.unexpected[cls_key] = "the model pools by 'gap': no class token (its position row too)"


def _copy_temporal_attention(out: Conversion, cfg: ModelConfig, depth: int) -> None:
    """Model 3: each block's temporal attention starts as a copy of its (pretrained) spatial attention, as
    scenic's ``init_temporal_transformer`` default does; its LayerNorm ``norm_t`` stays newly initialised."""
    if cfg.model_type != "factorised_self_attention":
        return
    for i in range(depth):
        prefix = block_prefix(cfg, i)
        for name in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias"):
            if f"{prefix}attn.{name}" in out.state:
                out.state[f"{prefix}attn_t.{name}"] = out.state[f"{prefix}attn.{name}"].clone()


def _convert_head(state: StateDict, src: str, cfg: ModelConfig, out: Conversion) -> None:
    weight, bias = state.pop(f"{src}.weight", None), state.pop(f"{src}.bias", None)
    if weight is None:
        return
    if weight.shape[0] == cfg.num_classes:
        out.state["head.weight"] = weight
        if bias is not None:
            out.state["head.bias"] = bias
        return
    for kind in ("weight", "bias"):
        out.unexpected[f"{src}.{kind}"] = (f"the source head has {weight.shape[0]} classes, the model "
                                           f"{cfg.num_classes}: the head stays newly initialised")


def _check_dims(what: str, cfg: ModelConfig, **found: int | None) -> None:
    wrong = [f"{k} {v} (model {getattr(cfg, k)})" for k, v in found.items() if v is not None and v != getattr(cfg, k)]
    if wrong:
        raise UserError(f"the {what} weights do not fit the model: " + ", ".join(wrong))


def _count_blocks(state: StateDict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _square_grid(rows: int, what: str) -> Grid:
    side = math.isqrt(rows)
    if rows - side * side in (0, 1):  # no prefix, or one class row
        return (1, side, side)
    raise UserError(f"{what} has {rows} rows: not a square grid (with at most one class row)")


def _infer_video_grid(rows: int, cfg: ModelConfig) -> Grid:
    t, h, w = model_grid(cfg)
    if rows % t == 0 and round((rows // t) ** 0.5) ** 2 == rows // t:
        side = round((rows // t) ** 0.5)
        return (t, side, side)
    if rows % (h * w) == 0:
        return (rows // (h * w), h, w)
    raise UserError(f"cannot tell the grid of a {rows}-position ViViT table; keep config.json next to the weights")


def _hf_name(key: str) -> str:
    """A transformers ViViT key in the transformers 5 naming, without the ``vivit.`` prefix."""
    key = key.removeprefix("vivit.")
    key = re.sub(r"^encoder\.layer\.(\d+)\.", r"layers.\1.", key)  # transformers 4 names
    key = re.sub(r"\.attention\.attention\.(query|key|value)\.",
                 lambda m: f".attention.{m.group(1)[0]}_proj.", key)
    key = key.replace(".attention.output.dense.", ".attention.o_proj.")
    key = re.sub(r"^(layers\.\d+)\.intermediate\.dense\.", r"\1.mlp.fc1.", key)
    return re.sub(r"^(layers\.\d+)\.output\.dense\.", r"\1.mlp.fc2.", key)


def _canonical_block_key(key: str) -> str:
    """A key with the TokenFuser layer's ``.block.`` level removed (matches blocks across placements)."""
    return re.sub(r"^encoder\.blocks\.(\d+)\.block\.", r"encoder.blocks.\1.", key)


def _pop(state: StateDict, key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise UserError(f"not a {what} state dict: no {key!r} (keys: {list(state)[:4]}...)")
    return state.pop(key)


def _refuse_leftovers(state: StateDict, what: str) -> None:
    if state:
        raise UserError(f"the {what} has tensors this conversion does not understand: {_few(sorted(state))} "
                        "(supported: plain pre-LN ViT blocks, class token, learned positions, layer scale)")


def _new_by_design(key: str) -> str | None:
    return next((why for pattern, why in NEW_BY_DESIGN.items() if re.search(pattern, key)), None)


def _group(keys: dict[str, str]) -> dict[str, str]:
    """``{key: reason}`` with block/layer indices collapsed (``encoder.blocks.*.fuser.*``) for the log."""
    grouped: dict[str, str] = {}
    for key, why in keys.items():
        grouped.setdefault(re.sub(r"\.\d+\.", ".*.", key), why)
    return grouped


def _few(items: list[str], limit: int = 5) -> str:
    return f"[{', '.join(items[:limit])}{', ...' if len(items) > limit else ''}] ({len(items)})"
