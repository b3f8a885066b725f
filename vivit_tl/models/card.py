"""The model card (``README.md``) of a vivit-tl model folder: a Jinja template for huggingface_hub's
`ModelCard.from_template` (through the mixin's ``generate_model_card``) and the values it is filled with."""

from __future__ import annotations

from typing import Any

from vivit_tl.models.config import ModelConfig

#: How many class names the card lists (config.json lists all of them).
CARD_CLASSES = 50

VIVIT_MODELS = {
    "joint": "Model 1, joint space-time attention",
    "factorised_encoder": "Model 2, factorised encoder (spatial, then temporal)",
    "factorised_self_attention": "Model 3, factorised self-attention",
    "factorised_dot_product": "Model 4, factorised dot-product attention",
}

VIVIT_CITATION = r"""@inproceedings{arnab2021vivit,
  title     = {ViViT: A Video Vision Transformer},
  author    = {Arnab, Anurag and Dehghani, Mostafa and Heigold, Georg and Sun, Chen and Lu{\v{c}}i{\'c}, Mario and Schmid, Cordelia},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021},
  note      = {arXiv:2103.15691}
}"""

TOKEN_LEARNER_CITATION = r"""@inproceedings{ryoo2021tokenlearner,
  title     = {TokenLearner: Adaptive Space-Time Tokenization for Videos},
  author    = {Ryoo, Michael S. and Piergiovanni, AJ and Arnab, Anurag and Dehghani, Mostafa and Angelova, Anelia},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2021},
  note      = {arXiv:2106.11297}
}"""

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

A video classifier made with vivit-tl: ViViT (Arnab et al., ICCV 2021){% if token_learner %} with TokenLearner (Ryoo et al., NeurIPS 2021){% endif %}, {{ num_params }} parameters.
Weights taken at step {{ step }} (epoch {{ epoch }}).

## Architecture

| | |
|---|---|
{% for name, value in architecture %}| {{ name }} | {{ value }} |
{% endfor %}
`config.json` holds the full `ModelConfig` (`model_config`), the class names and the preprocessing (`data_config`).

## Classes

{{ classes | length }} classes, index: name{% if classes | length > shown_classes | length %} (the first {{ shown_classes | length }}; config.json lists every one){% endif %}:
{% for name in shown_classes %}{{ loop.index0 }}: {{ name }}{% if not loop.last %}, {% endif %}{% endfor %}

## Preprocessing

{% if preprocessing %}| | |
|---|---|
{% for name, value in preprocessing %}| {{ name }} | {{ value }} |
{% endfor %}{% else %}Not recorded with these weights.
{% endif %}
## Metrics

{% if metrics %}| metric | value |
|---|---|
{% for name, value in metrics %}| {{ name }} | {{ value }} |
{% endfor %}{% else %}No evaluation recorded with these weights.
{% endif %}
## How to load

```python
from vivit_tl.models import VideoTransformer

model = VideoTransformer.from_pretrained("<repo id or folder>")  # eval mode, on the CPU
logits = model(video)  # video [B, 3, F, H, W], preprocessed as above
classes = model.info["classes"]
```

Files, with this preprocessing (multi-view):

```bash
vivit-tl predict hf:<repo id> clip.mp4     # or a local folder
vivit-tl eval hf:<repo id> DATA_ROOT
```

Fine-tuning from these weights: `vivit-tl train model.init_from=hf:<repo id>`.

## Citation

```bibtex
{{ citation }}
```
"""


def card_fields(config: ModelConfig, info: dict[str, Any], num_params: int) -> dict[str, Any]:
    """The values `MODEL_CARD` is rendered with, from a model's config and its model-file description
    (``classes``, ``data_config``, ``step``, ``epoch``, ``metrics``, ``model_name``)."""
    classes = list(info.get("classes") or [])
    metrics = info.get("metrics") or {}
    return {
        "title": info.get("model_name") or "vivit-tl model",
        "token_learner": config.token_learner != "none",
        "num_params": f"{num_params / 1e6:.2f} M",
        "step": info.get("step", 0),
        "epoch": info.get("epoch", 0),
        "architecture": architecture_rows(config),
        "classes": classes,
        "shown_classes": classes[:CARD_CLASSES],
        "preprocessing": preprocessing_rows(info.get("data_config")),
        "metrics": [(name, f"{value:.4f}") for name, value in sorted(metrics.items())],
        "citation": VIVIT_CITATION + (f"\n\n{TOKEN_LEARNER_CITATION}" if config.token_learner != "none" else ""),
    }


def architecture_rows(config: ModelConfig) -> list[tuple[str, str]]:
    """``(name, value)`` rows describing the architecture of ``config``."""
    c = config
    backbone = f"{c.depth} blocks, width {c.embed_dim}, {c.num_heads} heads of {c.attn_head_dim}, MLP {c.mlp_dim}"
    if c.model_type == "factorised_encoder":
        backbone += f"; temporal encoder: {c.temporal_depth} blocks"
    tokenizer = (f"tubelets {c.tubelet_size}x{c.patch_size}x{c.patch_size} (frames x pixels x pixels)"
                 if c.tokenizer == "tubelet" else f"Tokens-to-Token, soft splits {c.t2t_soft_splits}")
    if c.token_learner == "none":
        token_learner = "none"
    else:
        where = (f"before block {c.token_learner_index}" if c.token_learner_placement == "once"
                 else f"TokenLearner -> block -> TokenFuser at every block from {c.token_learner_index} on")
        token_learner = f"{c.token_learner}, {c.num_tokens} tokens per time step, {where}"
    return [
        ("ViViT model", VIVIT_MODELS[c.model_type]),
        ("input", f"{c.num_frames} frames of {c.image_size}x{c.image_size} pixels, {c.in_chans} channels"),
        ("tokenizer", tokenizer),
        ("backbone", backbone),
        ("TokenLearner", token_learner),
        ("pooling", "class token" if c.pool == "cls" else "mean over tokens"),
        ("classes", str(c.num_classes)),
    ]


def preprocessing_rows(data_config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``(name, value)`` rows of the preprocessing a model was trained with (empty when not recorded)."""
    if not data_config:
        return []
    d = data_config
    side = d.get("image_size")
    resize = {"full": f"the whole frame to {side}x{side}",
              "keras": f"the whole frame to {d.get('short_side')} square, then to {side}x{side} (Keras' two steps)",
              }.get(d.get("eval_resize"), f"short side to {d.get('short_side')} pixels, crop {side}x{side}")
    normalise = "RGB in [0, 1], then (x - mean) / std" if d.get("mean") is not None else "RGB in [0, 1]"
    return [
        ("clip", f"{d.get('num_frames')} frames, {d.get('frame_stride')} frames apart"),
        ("resize (evaluation)", resize),
        ("pixels", normalise),
        ("mean", str(d.get("mean"))),
        ("std", str(d.get("std"))),
        ("evaluation views", f"{d.get('eval_clips')} clips x {d.get('eval_crops')} crops, logits averaged"),
    ]
