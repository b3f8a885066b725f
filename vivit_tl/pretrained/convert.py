"""Pure state-dict conversions, state dict -> state dict (like timm's ``checkpoint_filter_fn``): a timm image
ViT (`convert_timm_vit`), a `transformers` ViViT (`convert_hf_vivit`) or a vivit-tl model of another config
(`convert_vivit_tl`) as the state dict of a `VideoTransformer` for a given `ModelConfig`. Nothing here reads a
file or touches a model's parameters; `vivit_tl.pretrained.load` does that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from einops import repeat

from vivit_tl.errors import UserError
from vivit_tl.models import ModelConfig, build_model, inflate_patch_weight, resample_pos_embed

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
#: Fields a source must share with the model (the weights have no meaning otherwise).
ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_dim", "patch_size", "in_chans", "qkv_bias")


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
        raise UserError(f"the {what} has tensors this conversion does not understand: {short_list(sorted(state))} "
                        "(supported: plain pre-LN ViT blocks, class token, learned positions, layer scale)")


def new_by_design(key: str) -> str | None:
    """Why the model key ``key`` may stay newly initialised (see `NEW_BY_DESIGN`), or None."""
    return next((why for pattern, why in NEW_BY_DESIGN.items() if re.search(pattern, key)), None)



def short_list(items: list[str], limit: int = 5) -> str:
    """``[a, b, c, ...] (n)`` for a message: the first ``limit`` items and the count."""
    return f"[{', '.join(items[:limit])}{', ...' if len(items) > limit else ''}] ({len(items)})"
