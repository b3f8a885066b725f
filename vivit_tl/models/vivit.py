"""`VideoTransformer`: ViViT Models 1-4 with optional TokenLearner / TokenFuser; the image ViT is its
one-frame case (``num_frames = tubelet_size = 1``), through the same code path."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn
from torch.utils.checkpoint import checkpoint

from vivit_tl.models.card import MODEL_CARD
from vivit_tl.models.config import ModelConfig
from vivit_tl.models.embed import T2TEmbed, TubeletEmbed, resample_pos_embed
from vivit_tl.models.layers import Attention, Block, FactorisedSelfAttentionBlock
from vivit_tl.models.token_learner import TokenFuser, build_token_learner

Grid = tuple[int, int, int]


def learn_tokens(token_learner: nn.Module, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a TokenLearner to each time step with shared weights.

    Args:
        x: ``[N, T*H*W, C]`` tokens, time-major.
        grid: ``(T, H, W)``.

    Returns:
        tokens ``[N, T*S, C]`` and maps ``[N, T, S, H, W]``.
    """
    t, h, w = grid
    x = rearrange(x, "n (t p) c -> (n t) p c", t=t)  # [N*T, H*W, C]
    tokens, maps = token_learner(x, (h, w))  # [N*T, S, C], [N*T, S, H*W]
    tokens = rearrange(tokens, "(n t) s c -> n (t s) c", t=t)
    return tokens, rearrange(maps, "(n t) s (h w) -> n t s h w", t=t, h=h)


class FusedLayer(nn.Module):
    """TokenLearner per time step -> one block over the T*S tokens (joint over time) -> TokenFuser per time step
    -> residual (scenic ``EncoderModFuser`` layer). The identity at initialisation (TokenFuser's M is zero)."""

    def __init__(self, token_learner: nn.Module, block: nn.Module, fuser: TokenFuser) -> None:
        super().__init__()
        self.token_learner = token_learner
        self.block = block
        self.fuser = fuser

    def forward(self, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, T*H*W, C]`` -> ``[N, T*H*W, C]`` and the maps ``[N, T, S, H, W]``."""
        t = grid[0]
        tokens, maps = learn_tokens(self.token_learner, x, grid)  # [N, T*S, C]
        tokens = self.block(tokens, t)
        tokens = rearrange(tokens, "n (t s) c -> (n t) s c", t=t)  # [N*T, S, C]
        x_steps = rearrange(x, "n (t p) c -> (n t) p c", t=t)  # [N*T, H*W, C]
        fused = rearrange(self.fuser(tokens, x_steps), "(n t) p c -> n (t p) c", t=t)  # [N, T*H*W, C]
        return fused + x, maps


class Encoder(nn.Module):
    """A stack of blocks, optionally with a TokenLearner ('once' before block ``loc``, or a `FusedLayer` at every
    layer from ``loc`` on), and a final LayerNorm.

    Args:
        cfg: the model config (widths, rates, TokenLearner settings).
        depth: number of blocks.
        token_learner: build the TokenLearner of ``cfg`` into this encoder.
    """

    def __init__(self, cfg: ModelConfig, depth: int, token_learner: bool = False) -> None:
        super().__init__()
        self.grad_checkpointing = cfg.grad_checkpointing
        use_tl = token_learner and cfg.token_learner != "none"
        self.tl_index = cfg.token_learner_index if use_tl else -1
        fuse = use_tl and cfg.token_learner_placement == "fuse"
        block_cls = FactorisedSelfAttentionBlock if cfg.model_type == "factorised_self_attention" else Block
        drop_path = [cfg.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear from 0
        tl_kwargs = dict(norm_eps=cfg.norm_eps, gelu_approximate=cfg.gelu_approximate)

        def make_token_learner() -> nn.Module:
            return build_token_learner(cfg.token_learner, cfg.embed_dim, cfg.num_tokens, pool=cfg.token_learner_pool,
                                       hidden=cfg.token_learner_hidden, drop=cfg.drop_rate, **tl_kwargs)

        layers: list[nn.Module] = []
        for i in range(depth):
            block = block_cls(cfg.embed_dim, cfg.num_heads, cfg.attn_head_dim, cfg.mlp_dim, qkv_bias=cfg.qkv_bias,
                              drop=cfg.drop_rate, proj_drop=cfg.proj_drop_rate, attn_drop=cfg.attn_drop_rate,
                              drop_path=drop_path[i], mlp_final_gelu=cfg.mlp_final_gelu,
                              factorised_dot_product=cfg.model_type == "factorised_dot_product", **tl_kwargs)
            if fuse and i >= self.tl_index:
                fuser = TokenFuser(cfg.embed_dim, cfg.num_tokens, cfg.token_learner_hidden, cfg.drop_rate, **tl_kwargs)
                block = FusedLayer(make_token_learner(), block, fuser)
            layers.append(block)
        self.blocks = nn.ModuleList(layers)
        self.token_learner = make_token_learner() if use_tl and not fuse else None
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)

    def _call(self, module, *args):  # module: an nn.Module or `learn_tokens`
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def forward(self, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x [N, L, C]`` laid out on ``grid (T, H, W)`` (after optional prefix tokens, only without
        TokenLearner) -> normed tokens ``[N, L', C]`` and the TokenLearner maps ``[N, T, S, H, W]``."""
        maps: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            if i == self.tl_index and self.token_learner is not None:
                x, m = self._call(learn_tokens, self.token_learner, x, grid)  # [N, T*S, C]
                maps.append(m)
            if isinstance(block, FusedLayer):
                x, m = self._call(block, x, grid)
                maps.append(m)
            else:
                x = self._call(block, x, grid[0])
        return self.norm(x), maps


class PositionalTable(nn.Module):
    """Prefix (class) token and learned positional table ``[1, P + T*H*W, C]`` for the grid the model is built
    for; other grids get a resampled table (`resample_pos_embed`)."""

    def __init__(self, dim: int, grid: Grid, cls_token: bool, drop: float) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix = int(cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + grid[0] * grid[1] * grid[2], dim))
        self.drop = nn.Dropout(drop)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``x [N, T*H*W, C]`` -> ``[N, P + T*H*W, C]`` with the class token prepended and positions added."""
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        pos = resample_pos_embed(self.pos_embed, self.grid, grid, self.num_prefix)
        return self.drop(x + pos.to(x.dtype))


class VideoTransformer(nn.Module, PyTorchModelHubMixin, library_name="vivit-tl", pipeline_tag="video-classification",
                       tags=["video-classification", "vivit", "tokenlearner"],
                       paper_url="https://arxiv.org/abs/2103.15691", model_card_template=MODEL_CARD):
    """ViViT (Arnab et al. 2021) with optional TokenLearner/TokenFuser (Ryoo et al. 2021).

    ``model(x)`` takes a video ``[B, C_in, F, H, W]`` (or an image ``[B, C_in, H, W]``, treated as F = 1) and
    returns logits ``[B, num_classes]``; ``model(x, return_maps=True)`` returns ``(logits, maps)`` with one
    ``[B, T, S, Hg, Wg]`` tensor per TokenLearner layer. F, H, W may differ from the config's sizes: the
    positional tables are resampled (see `resample_pos_embed`).

    Hub format, through huggingface_hub's `PyTorchModelHubMixin`: ``save_pretrained(folder)``,
    ``VideoTransformer.from_pretrained(folder or repo id)`` and ``push_to_hub(repo_id)`` write and read the
    model folder of `vivit_tl.checkpoint` (``config.json`` + ``model.safetensors`` + a ``README.md`` model card).
    ``model.info`` is the folder's description besides the architecture (``classes``, ``data_config``: the
    preprocessing, ``step``, ``epoch``, ``metrics``, ``model_name``): set by `from_pretrained`, written back
    by `save_pretrained`; None for a model built from a config.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.info: dict[str, Any] | None = None
        self._config = copy.deepcopy(config)
        cfg = config
        if cfg.tokenizer == "t2t":
            self.tokenizer = T2TEmbed(cfg.in_chans, cfg.embed_dim, cfg.t2t_soft_splits, cfg.t2t_token_dim,
                                      cfg.norm_eps, cfg.gelu_approximate)
        else:
            self.tokenizer = TubeletEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_size, cfg.tubelet_size)
        t, h, w = self.tokenizer.grid(cfg.num_frames, cfg.image_size, cfg.image_size)
        use_cls = cfg.pool == "cls"
        self.factorised_encoder = cfg.model_type == "factorised_encoder"
        if self.factorised_encoder:
            self.pos = PositionalTable(cfg.embed_dim, (1, h, w), use_cls, cfg.pos_drop_rate)
            self.encoder = Encoder(cfg, cfg.depth, token_learner=True)
            self.temporal_pos = PositionalTable(cfg.embed_dim, (t, 1, 1), use_cls, cfg.pos_drop_rate)
            self.temporal_encoder = Encoder(cfg, cfg.temporal_depth)
        else:
            self.pos = PositionalTable(cfg.embed_dim, (t, h, w), use_cls, cfg.pos_drop_rate)
            self.encoder = Encoder(cfg, cfg.depth, token_learner=True)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.apply(_init_linear)
        if cfg.weight_init == "keras":
            keras_init_(self)
        for module in self.modules():
            if isinstance(module, TokenFuser):
                module.reset_token_mix()
            if isinstance(module, PositionalTable):
                module.pos_embed.requires_grad_(cfg.learned_pos_embed)  # False: a fixed random code

    @property
    def config(self) -> ModelConfig:
        """The config that rebuilds this model (a copy)."""
        return copy.deepcopy(self._config)

    # ----------------------------------------------------------------- Hub format (PyTorchModelHubMixin hooks)
    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook of `save_pretrained` / `push_to_hub`: the model folder with ``self.info``
        (class names ``"0"``, ``"1"``, ... and no preprocessing when it is None)."""
        from vivit_tl.checkpoint import save_model_file  # it imports this module

        info = self.info or {}
        classes = info.get("classes") or [str(i) for i in range(self._config.num_classes)]
        save_model_file(save_directory, self, classes=classes, data_config=info.get("data_config"),
                        step=info.get("step", 0), epoch=info.get("epoch", 0), metrics=info.get("metrics"),
                        model_name=info.get("model_name"))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **hub_kwargs: Any) -> VideoTransformer:
        """A model in eval mode on the CPU, with ``model.info``, from a local model folder (either layout:
        ``config.json`` or the older ``model.json`` next to ``model.safetensors``), its ``model.safetensors``, a
        run directory, or a Hub repo id (optionally ``hf:``-prefixed; huggingface_hub downloads and caches it,
        ``HF_HUB_OFFLINE=1`` reads the cache only).

        Args:
            pretrained_model_name_or_path: the folder, file or repo id.
            hub_kwargs: the mixin's download options for a repo id (``revision``, ``cache_dir``, ``token``,
                ``force_download``, ``local_files_only``) and ``map_location``.

        Raises:
            UserError: no such folder and the Hub cannot provide the repo, or files that are not a vivit-tl
                model (another model's, corrupt, or weights that do not fit their config).
        """
        from vivit_tl.checkpoint import HUB_ERRORS, HUB_PREFIX, hub_error, load_model_file

        name = str(pretrained_model_name_or_path).removeprefix(HUB_PREFIX)
        if Path(name).expanduser().exists():  # no Hub involved (also a run directory or a single file)
            model = load_model_file(Path(name).expanduser())[0]
            return model.to(hub_kwargs.get("map_location", "cpu"))
        try:
            return super().from_pretrained(name, **hub_kwargs)
        except HUB_ERRORS as exc:
            raise hub_error(name, exc) from None

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", config: Any = None) -> VideoTransformer:
        """The mixin's hook for a repo id, after it fetched ``config.json`` (passed as ``config``, unused: the
        weights' header holds the same description and is the one that counts): fetch ``model.safetensors`` and
        rebuild the model from its header (`vivit_tl.checkpoint.load_model_file`)."""
        from vivit_tl.checkpoint import WEIGHTS_NAME, load_model_file

        weights = hf_hub_download(repo_id=model_id, filename=WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                                  force_download=force_download, local_files_only=local_files_only, token=token)
        return load_model_file(weights)[0].to(map_location)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch activation checkpointing of every block on or off."""
        self._config.grad_checkpointing = enable
        for module in self.modules():
            if isinstance(module, Encoder):
                module.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameters never decayed: positional tables, class tokens and every parameter with ndim <= 1."""
        return {name for name, p in self.named_parameters()
                if p.ndim <= 1 or name.rsplit(".", 1)[-1] in ("pos_embed", "cls_token")}

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, L, C]`` -> ``[N, C]``: the class token or the mean over tokens."""
        return x[:, 0] if self._config.pool == "cls" else x.mean(dim=1)

    def forward_features(self, x: torch.Tensor, return_maps: bool = False
                         ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Video ``[B, C_in, F, H, W]`` (or image ``[B, C_in, H, W]``) -> normed tokens ``[B, L, C]``
        (and, with ``return_maps``, the list of TokenLearner maps ``[B, T, S, Hg, Wg]``)."""
        if x.ndim == 4:
            x = x.unsqueeze(2)  # [B, C_in, 1, H, W]
        if x.ndim != 5 or x.shape[1] != self._config.in_chans:
            raise ValueError(f"expected input [B, {self._config.in_chans}, F, H, W] or [B, {self._config.in_chans}, "
                             f"H, W], got shape {list(x.shape)}")
        tokens, (t, h, w) = self.tokenizer(x)  # [B, T*H*W, C]
        if self.factorised_encoder:
            b = tokens.shape[0]
            tokens = rearrange(tokens, "b (t p) c -> (b t) p c", t=t)  # [B*T, H*W, C]
            tokens, maps = self.encoder(self.pos(tokens, (1, h, w)), (1, h, w))
            frames = rearrange(self._pool(tokens), "(b t) c -> b t c", b=b)  # [B, T, C]
            tokens, _ = self.temporal_encoder(self.temporal_pos(frames, (t, 1, 1)), (t, 1, 1))
            maps = [rearrange(m, "(b t) 1 s h w -> b t s h w", b=b) for m in maps]
        else:
            tokens, maps = self.encoder(self.pos(tokens, (t, h, w)), (t, h, w))
        return (tokens, maps) if return_maps else tokens

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Normed tokens ``[B, L, C]`` -> logits ``[B, num_classes]`` (or the pooled ``[B, C]`` with pre_logits)."""
        x = self._pool(features)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor, return_maps: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        tokens, maps = self.forward_features(x, return_maps=True)
        logits = self.forward_head(tokens)
        return (logits, maps) if return_maps else logits


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Keras' ``glorot_uniform``: U(+-sqrt(6 / (fan_in + fan_out))), in place (``weight`` may be a slice)."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(weight, -bound, bound)


def keras_init_(model: nn.Module) -> None:
    """Initialise ``model`` as the Keras CIFAR-10 example's layers are by default (``weight_init='keras'``).

    Keras computes Glorot's fans from its own kernel shapes: ``(in, out)`` for Dense, and for a kernel of
    rank > 2 ``shape[-2] * r`` and ``shape[-1] * r`` with ``r`` the product of the leading dims. So:

    - Linear (Dense ``(in, out)``) and convolutions (Conv2D ``(k, k, in, out)``: the patch projection and
      the TokenLearner v1 convs; fans ``(k*k*in, k*k*out)``): Glorot-uniform, zero bias;
    - attention (``MultiHeadAttention(num_heads=h, key_dim=d)`` at width C): the query, key and value
      EinsumDense kernels ``(C, h, d)`` have fans ``(h*C, d*C)`` (bound 0.019 for the CIFAR model, h=4,
      d=C=128), the output kernel ``(h, d, C)`` fans ``(h*d, h*C)``;
    - learned positions: ``Embedding``'s U(+-0.05).

    LayerNorms keep ones/zeros (as Keras). Modules the Keras example has no counterpart for (T2T, whose fused
    qkv counts as one Dense; TokenLearner v1.1; TokenFuser) get the Dense/Conv rule, except the TokenFuser's
    token mixing, which stays zero (the fused layer starts as the identity); a class token keeps N(0, 1e-6).
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            out_dim, in_dim = module.weight.shape[:2]
            receptive = module.weight[0, 0].numel()  # 1 for Linear, k*k for Conv2d, t*p*p for the tubelet Conv3d
            _glorot_uniform_(module.weight, in_dim * receptive, out_dim * receptive)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():  # after the rule above, which reaches their Linear/Conv children too
        if isinstance(module, Attention):
            dim = module.proj.out_features
            h, d = module.num_heads, module.head_dim
            for part in module.qkv.weight.chunk(3):  # q, k, v rows [h*d, C] each
                _glorot_uniform_(part, h * dim, d * dim)
            _glorot_uniform_(module.proj.weight, h * d, h * dim)
        if isinstance(module, PositionalTable):
            nn.init.uniform_(module.pos_embed, -0.05, 0.05)
        if isinstance(module, TokenFuser):
            module.reset_token_mix()
