"""`ModelConfig`: every architectural choice of a `VideoTransformer`, as one JSON-serialisable dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vivit_tl.errors import reject_unknown_keys

MODEL_TYPES = ("joint", "factorised_encoder", "factorised_self_attention", "factorised_dot_product")
POOLS = ("cls", "gap")
TOKENIZERS = ("tubelet", "t2t")
TOKEN_LEARNERS = ("none", "v1", "v1.1")
PLACEMENTS = ("once", "fuse")
TL_POOLS = ("sum", "mean")
GELU_APPROXIMATIONS = ("none", "tanh")
WEIGHT_INITS = ("trunc_normal", "keras")


@dataclass
class ModelConfig:
    """Architecture of a `VideoTransformer` (ViViT Models 1-4, optional TokenLearner/TokenFuser).

    Every field is a plain JSON value, so ``ModelConfig.from_dict(dataclasses.asdict(cfg)) == cfg``.
    The image ViT is the case ``num_frames = tubelet_size = 1``.
    """

    # --- input and output ---
    num_classes: int = 400
    """Size of the classification head."""
    num_frames: int = 32
    """Frames F the model is built for (sizes the positional table; other F are resampled at run time)."""
    image_size: int = 224
    """Square frame side R in pixels the model is built for (other sizes are resampled at run time)."""
    patch_size: int = 16
    """Spatial tubelet/patch side p in pixels (tokenizer 'tubelet')."""
    tubelet_size: int = 2
    """Temporal tubelet length t in frames; 1 with ``num_frames = 1`` is the image ViT."""
    in_chans: int = 3
    """Input channels."""
    tokenizer: str = "tubelet"
    """'tubelet' (Conv3d, kernel = stride = (t, p, p)) or 't2t' (Tokens-to-Token, per frame, needs t = 1)."""
    t2t_soft_splits: list[list[int]] = field(default_factory=lambda: [[7, 4, 2], [3, 2, 1], [3, 2, 1]])
    """T2T soft splits as [kernel, stride, padding] (T2T-ViT: 224 px -> 14x14 tokens)."""
    t2t_token_dim: int = 64
    """Width of the T2T token transformers."""

    # --- backbone ---
    model_type: str = "joint"
    """ViViT model: 'joint' (Model 1), 'factorised_encoder' (Model 2), 'factorised_self_attention'
    (Model 3) or 'factorised_dot_product' (Model 4)."""
    embed_dim: int = 768
    """Token width C."""
    depth: int = 12
    """Transformer blocks (Model 2: blocks of the spatial encoder)."""
    temporal_depth: int = 4
    """Blocks of the temporal encoder (Model 2 only)."""
    num_heads: int = 12
    """Attention heads."""
    head_dim: int | None = None
    """Width of one attention head; None means ``embed_dim // num_heads``. The attention inner width is
    ``num_heads * head_dim`` (the Keras CIFAR model: 4 heads of 128 at width 128)."""
    mlp_dim: int = 3072
    """Hidden width of the block MLP."""
    mlp_final_gelu: bool = False
    """Apply GELU after the MLP's second Linear too (the Keras example does: Dense(gelu) twice)."""
    gelu_approximate: str = "tanh"
    """GELU form: 'tanh' (flax `nn.gelu` and Keras `ops.gelu` default) or 'none' (exact erf)."""
    qkv_bias: bool = True
    """Bias in the query/key/value projection."""
    norm_eps: float = 1e-6
    """LayerNorm epsilon (flax and the Keras example use 1e-6)."""
    pool: str = "cls"
    """Head input: 'cls' (class token) or 'gap' (mean over tokens). TokenLearner models need 'gap'."""

    # --- regularisation ---
    drop_rate: float = 0.0
    """Dropout after each MLP Linear (and in the TokenLearner/TokenFuser MLPs)."""
    proj_drop_rate: float = 0.0
    """Dropout on the attention output projection (scenic uses drop_rate there; the Keras model has none)."""
    attn_drop_rate: float = 0.0
    """Dropout on the attention weights."""
    pos_drop_rate: float = 0.0
    """Dropout after adding the positional embedding."""
    learned_pos_embed: bool = True
    """True: the positional table is trained. False: it keeps its random initial values (no gradient, no
    weight decay; still saved with the weights). The Keras CIFAR-10 example as run for its table (TF 2.7)
    has the fixed kind: it called ``layers.Embedding`` on a constant ``tf.range``, which Keras evaluates once,
    so the model holds the result as a constant and never trains it (keras-team/keras-io#688)."""
    drop_path_rate: float = 0.0
    """Stochastic depth rate of the last block (linear from 0 over depth)."""

    # --- TokenLearner / TokenFuser ---
    token_learner: str = "none"
    """'none', 'v1' (conv stack + sigmoid) or 'v1.1' (MLP + softmax over space)."""
    num_tokens: int = 8
    """Learned tokens S per tubelet time step."""
    token_learner_loc: int | float = 0.5
    """Where the TokenLearner goes: an int is a 0-based block index, a float in [0, 1] a fraction of depth
    (index ``floor(loc * depth)``)."""
    token_learner_placement: str = "once"
    """'once': one TokenLearner before block loc, plain blocks after it. 'fuse': every layer from loc on is
    TokenLearner -> block -> TokenFuser + residual (each with its own weights)."""
    token_learner_pool: str = "sum"
    """v1 pooling over positions: 'sum' (official code) or 'mean' (Keras example)."""
    token_learner_hidden: int = 64
    """Hidden width of the v1.1 and TokenFuser MLPs."""

    # --- initialisation ---
    weight_init: str = "trunc_normal"
    """'trunc_normal' (ViT/scenic: Linear weights and positions N(0, 0.02) truncated, convolutions PyTorch's
    default) or 'keras' (the Keras CIFAR-10 example's defaults: Glorot-uniform kernels with Keras' fans,
    positions U(+-0.05); see `keras_init_`)."""

    # --- memory ---
    grad_checkpointing: bool = False
    """Recompute each block in the backward pass (torch.utils.checkpoint, use_reentrant=False)."""

    def __post_init__(self) -> None:
        if isinstance(self.t2t_soft_splits, (list, tuple)):  # tuples (e.g. from Python) as JSON-style lists
            self.t2t_soft_splits = [list(s) if isinstance(s, (list, tuple)) else s for s in self.t2t_soft_splits]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build and validate a config; unknown keys raise ValueError listing the valid ones."""
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a mapping, got {type(d).__name__}")
        reject_unknown_keys(cls, d, "model config key")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (`dataclasses.asdict`)."""
        return dataclasses.asdict(self)

    @property
    def attn_head_dim(self) -> int:
        """Width of one attention head."""
        return self.head_dim if self.head_dim is not None else self.embed_dim // self.num_heads

    @property
    def token_learner_index(self) -> int:
        """The 0-based block index where the TokenLearner goes (see `token_learner_loc`)."""
        loc = self.token_learner_loc
        return int(loc * self.depth) if isinstance(loc, float) else loc

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        _choice("model_type", self.model_type, MODEL_TYPES)
        _choice("pool", self.pool, POOLS)
        _choice("tokenizer", self.tokenizer, TOKENIZERS)
        _choice("token_learner", self.token_learner, TOKEN_LEARNERS)
        _choice("token_learner_placement", self.token_learner_placement, PLACEMENTS)
        _choice("token_learner_pool", self.token_learner_pool, TL_POOLS)
        _choice("gelu_approximate", self.gelu_approximate, GELU_APPROXIMATIONS)
        _choice("weight_init", self.weight_init, WEIGHT_INITS)
        for name in ("num_classes", "num_frames", "image_size", "patch_size", "tubelet_size", "in_chans",
                     "embed_dim", "depth", "num_heads", "mlp_dim", "num_tokens", "token_learner_hidden",
                     "t2t_token_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model config {name} must be a positive int, got {value!r}")
        if self.model_type == "factorised_encoder" and (not isinstance(self.temporal_depth, int)
                                                         or self.temporal_depth < 1):
            raise ValueError(f"model config temporal_depth must be a positive int, got {self.temporal_depth!r}")
        if self.head_dim is None and self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}; "
                             "set head_dim")
        if self.head_dim is not None and (isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int)
                                          or self.head_dim < 1):
            raise ValueError(f"model config head_dim must be a positive int or None, got {self.head_dim!r}")
        for name in ("drop_rate", "proj_drop_rate", "attn_drop_rate", "pos_drop_rate", "drop_path_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"model config {name} must be in [0, 1), got {value!r}")
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"num_frames {self.num_frames} is not divisible by tubelet_size {self.tubelet_size}")
        if self.tokenizer == "tubelet" and self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.tokenizer == "t2t":
            if self.tubelet_size != 1:
                raise ValueError(f"tokenizer 't2t' works per frame and needs tubelet_size 1, "
                                 f"got {self.tubelet_size}")
            ok = isinstance(self.t2t_soft_splits, list) and len(self.t2t_soft_splits) >= 1 and all(
                isinstance(s, (list, tuple)) and len(s) == 3 and all(isinstance(v, int) for v in s)
                for s in self.t2t_soft_splits)
            if not ok:
                raise ValueError(f"t2t_soft_splits must be a list of [kernel, stride, padding] int triples, "
                                 f"got {self.t2t_soft_splits!r}")
        if self.token_learner != "none":
            self._validate_token_learner()
        if self.model_type in ("factorised_self_attention", "factorised_dot_product") and self.pool != "gap":
            raise ValueError(f"model_type {self.model_type!r} has no class token: set pool 'gap'")
        if self.model_type == "factorised_dot_product" and self.num_heads % 2:
            raise ValueError(f"model_type 'factorised_dot_product' splits the heads in two halves: "
                             f"num_heads {self.num_heads} must be even")

    def _validate_token_learner(self) -> None:
        loc = self.token_learner_loc
        if isinstance(loc, bool) or not isinstance(loc, (int, float)):
            raise ValueError(f"token_learner_loc must be an int block index or a float fraction, got {loc!r}")
        if isinstance(loc, float) and not 0.0 <= loc <= 1.0:
            raise ValueError(f"token_learner_loc {loc} as a fraction of depth must lie in [0, 1]")
        index = self.token_learner_index
        if not 0 <= index < self.depth:
            raise ValueError(f"token_learner_loc {loc!r} puts the TokenLearner before block {index}, "
                             f"outside 0..{self.depth - 1} (depth {self.depth})")
        if self.pool != "gap":
            raise ValueError(f"token_learner {self.token_learner!r} needs pool 'gap' (no class token once tokens "
                             f"are learned), got pool {self.pool!r}")
        if self.model_type not in ("joint", "factorised_encoder"):
            raise ValueError(f"token_learner is supported with model_type 'joint' or 'factorised_encoder', "
                             f"got {self.model_type!r}")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"model config {name} must be one of {list(choices)}, got {value!r}")
