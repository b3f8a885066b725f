"""Start from pretrained weights: timm image ViTs, `transformers` ViViT, vivit-tl model files.

    from vivit_tl.pretrained import load_pretrained, pretrained_model
    report = load_pretrained(model, "timm:vit_base_patch16_224.augreg_in21k")  # into a built model
    model, report = pretrained_model("hf:google/vivit-b-16x2-kinetics400")     # a model of the source's shape

A spec is ``timm:<model name>`` (downloaded by timm), ``hf:<repo id or folder>`` (a vivit-tl Hub model, or a
``VivitModel`` / ``VivitForVideoClassification`` loaded by transformers), or a local path: a vivit-tl model
folder or file, a transformers folder (``config.json`` + weights), or one weights file (.safetensors, .pth, .pt,
.bin) holding a timm ViT, transformers ViViT or vivit-tl state dict.

Three modules, one job each:

- `vivit_tl.pretrained.convert`: the pure conversions, state dict -> state dict (like timm's
  ``checkpoint_filter_fn``): `convert_timm_vit`, `convert_hf_vivit`, `convert_vivit_tl`;
- `vivit_tl.pretrained.sources`: reading a spec as a `Source` (`read_source`, `timm_source`, `hf_source`);
- `vivit_tl.pretrained.load`: strict loading into a model with a `LoadReport` (`load_pretrained`,
  `pretrained_model`, `load_source`).

Loading is strict: every tensor of the model comes from the source, except the layers that have no counterpart
there and stay newly initialised (TokenLearner / TokenFuser, a head with another class count, Model 2's temporal
encoder, Model 3's temporal LayerNorm); every source tensor is used, except those dropped on purpose (a head
with another class count, the class token of a 'gap' model, the transformers pooler). Both lists, with the
reason for each key, are in the returned `LoadReport`.
"""

from vivit_tl.pretrained.convert import Conversion, convert_hf_vivit, convert_timm_vit, convert_vivit_tl
from vivit_tl.pretrained.load import LoadReport, load_pretrained, load_source, pretrained_model
from vivit_tl.pretrained.sources import Source, hf_source, read_source, timm_source

__all__ = [
    "Conversion",
    "LoadReport",
    "Source",
    "convert_hf_vivit",
    "convert_timm_vit",
    "convert_vivit_tl",
    "hf_source",
    "load_pretrained",
    "load_source",
    "pretrained_model",
    "read_source",
    "timm_source",
]
