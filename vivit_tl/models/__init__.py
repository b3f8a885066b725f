"""ViViT video transformers with TokenLearner / TokenFuser.

    from vivit_tl.models import create_model
    model = create_model("vivit_b16x2_tl8", num_classes=10, num_frames=8, image_size=112)
    logits, maps = model(video, return_maps=True)  # video [B, 3, F, H, W]; maps: [B, T, S, Hg, Wg] per TokenLearner
"""

from vivit_tl.models.config import ModelConfig
from vivit_tl.models.embed import inflate_patch_weight, resample_pos_embed
from vivit_tl.models.registry import BACKBONES, build_model, create_model, list_models, model_config
from vivit_tl.models.vivit import VideoTransformer

__all__ = [
    "BACKBONES",
    "ModelConfig",
    "VideoTransformer",
    "build_model",
    "create_model",
    "inflate_patch_weight",
    "list_models",
    "model_config",
    "resample_pos_embed",
]
