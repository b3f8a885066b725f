"""Loading pretrained weights into a model: convert a `Source` for the model's config, check it strictly and
report what was loaded (`LoadReport`); `load_pretrained` and `pretrained_model` are the entry points.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from vivit_tl.errors import UserError
from vivit_tl.models import ModelConfig, VideoTransformer, build_model
from vivit_tl.pretrained.convert import (
    ARCH_FIELDS,
    convert_hf_vivit,
    convert_timm_vit,
    convert_vivit_tl,
    new_by_design,
    short_list,
)
from vivit_tl.pretrained.sources import Source, read_source

logger = logging.getLogger(__name__)

#: Fields that change the computation but not the shapes: a mismatch is reported, not refused.
FORM_FIELDS = ("gelu_approximate", "norm_eps", "mlp_final_gelu")


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
    missing = {k: conversion.new.get(k) or new_by_design(k) for k in own if k not in state}
    refused = sorted(k for k, why in missing.items() if why is None)
    extra = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if refused or extra or shapes:
        parts = [f"missing {short_list(refused)}" if refused else "", f"unexpected {short_list(extra)}" if extra else "",
                 f"shape mismatches {short_list(shapes)}" if shapes else ""]
        raise UserError(f"{source.name} does not fit the model: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=False)
    report = LoadReport(source.name, source.kind, sorted(state), dict(sorted(missing.items())),
                        dict(sorted(unexpected.items())), notes + conversion.notes, source.preprocessing,
                        source.classes)
    logger.info(report.summary())
    for note in report.notes:
        logger.warning("init_from %s: %s", source.name, note)
    return report



def _group(keys: dict[str, str]) -> dict[str, str]:
    """``{key: reason}`` with block/layer indices collapsed (``encoder.blocks.*.fuser.*``) for the log."""
    grouped: dict[str, str] = {}
    for key, why in keys.items():
        grouped.setdefault(re.sub(r"\.\d+\.", ".*.", key), why)
    return grouped

