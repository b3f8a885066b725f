"""Named model variants: each is a few config fields on top of `ModelConfig`'s defaults."""

from __future__ import annotations

from typing import Any

from vivit_tl.models.config import ModelConfig
from vivit_tl.models.vivit import VideoTransformer

# ViT backbones (ViViT paper, Table 1 of Dosovitskiy et al.): depth, width, heads, MLP width.
BACKBONES: dict[str, dict[str, int]] = {
    "Ti": dict(depth=12, embed_dim=192, num_heads=3, mlp_dim=768),
    "S": dict(depth=12, embed_dim=384, num_heads=6, mlp_dim=1536),
    "B": dict(depth=12, embed_dim=768, num_heads=12, mlp_dim=3072),
    "L": dict(depth=24, embed_dim=1024, num_heads=16, mlp_dim=4096),
    "H": dict(depth=32, embed_dim=1280, num_heads=16, mlp_dim=5120),
}

# The Keras "Learning to tokenize in Vision Transformers" CIFAR-10 model (SPEC §5): 48x48 input, patch 6 -> 64
# tokens, width 128, 4 blocks, 4 heads of 128 (inner width 512), MLP Dense(256, gelu) -> Dense(128, gelu),
# dropout 0.1 (MLP, attention weights, after the positional embedding), LN eps 1e-6, LN -> GAP -> Dense head.
_KERAS_CIFAR = dict(
    num_classes=10, num_frames=1, tubelet_size=1, image_size=48, patch_size=6, embed_dim=128, depth=4,
    num_heads=4, head_dim=128, mlp_dim=256, mlp_final_gelu=True, gelu_approximate="tanh", norm_eps=1e-6,
    drop_rate=0.1, attn_drop_rate=0.1, pos_drop_rate=0.1, proj_drop_rate=0.0, pool="gap",
)
# Keras inserts the TokenLearner after block i == depth // 2 = 2, i.e. before 0-based block 3; v1, mean pooling.
_KERAS_TL = dict(token_learner="v1", token_learner_pool="mean", token_learner_loc=3)

_KINETICS = dict(num_classes=400, num_frames=32, image_size=224, patch_size=16, tubelet_size=2)

VARIANTS: dict[str, dict[str, Any]] = {
    # --- image models (CIFAR-10, the Keras seed) ---
    "vit_cifar": dict(_KERAS_CIFAR),
    "vit_cifar_tl4": dict(_KERAS_CIFAR, **_KERAS_TL, num_tokens=4),
    "vit_cifar_tl8": dict(_KERAS_CIFAR, **_KERAS_TL, num_tokens=8),
    "vit_cifar_v11_tl8": dict(_KERAS_CIFAR, token_learner="v1.1", token_learner_loc=3, num_tokens=8),
    # T2T tokenizer in place of the patch embedding; splits chosen so 48 px also gives 8x8 = 64 tokens.
    "vit_cifar_t2t": dict(_KERAS_CIFAR, tokenizer="t2t", t2t_soft_splits=[[7, 3, 2], [3, 2, 1], [3, 1, 1]]),
    # --- video models (Kinetics-400 shapes: 32 frames, 224 px, tubelets 2x16x16) ---
    "vivit_ti16x2": dict(_KINETICS, **BACKBONES["Ti"]),
    "vivit_b16x2": dict(_KINETICS, **BACKBONES["B"]),
    "vivit_b16x2_fe": dict(_KINETICS, **BACKBONES["B"], model_type="factorised_encoder", temporal_depth=4),
    "vivit_b16x2_fsa": dict(_KINETICS, **BACKBONES["B"], model_type="factorised_self_attention", pool="gap"),
    "vivit_b16x2_fdp": dict(_KINETICS, **BACKBONES["B"], model_type="factorised_dot_product", pool="gap"),
    "vivit_b16x2_tl8": dict(_KINETICS, **BACKBONES["B"], pool="gap", token_learner="v1.1", num_tokens=8,
                            token_learner_loc=0.5),
    "vivit_b16x2_tl8_fuse": dict(_KINETICS, **BACKBONES["B"], pool="gap", token_learner="v1.1", num_tokens=8,
                                 token_learner_loc=0.5, token_learner_placement="fuse"),
    "vivit_l16x2_tl16": dict(_KINETICS, **BACKBONES["L"], pool="gap", token_learner="v1.1", num_tokens=16,
                             token_learner_loc=12),
}


def list_models() -> list[str]:
    """Names of the registered variants, sorted."""
    return sorted(VARIANTS)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The `ModelConfig` of variant ``name`` with ``overrides`` of any field (ValueError on unknown names)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; valid models: {list_models()}")
    return ModelConfig.from_dict({**VARIANTS[name], **overrides})  # unknown fields: ValueError naming the closest


def build_model(cfg: ModelConfig | dict[str, Any]) -> VideoTransformer:
    """Build a `VideoTransformer` from a config (or its dict form)."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return VideoTransformer(cfg)


def create_model(name: str, **overrides: Any) -> VideoTransformer:
    """Build the named variant, with ``overrides`` of any `ModelConfig` field, e.g.
    ``create_model("vivit_b16x2_tl8", num_classes=10, num_frames=8, image_size=112)``."""
    return build_model(model_config(name, **overrides))
