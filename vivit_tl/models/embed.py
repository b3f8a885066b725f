"""Tokenizers (tubelet embedding, Tokens-to-Token) and positional-table resampling.

A tokenizer maps a video ``[B, C_in, F, H_px, W_px]`` to tokens ``[B, T*H*W, C]`` (time-major) and
returns the token grid ``(T, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vivit_tl.models.layers import Mlp


class TubeletEmbed(nn.Module):
    """Conv3d with kernel = stride = (t, p, p), no padding (ViViT tubelet embedding; t = 1 on one frame is
    the ViT patch embedding). Tokens are flattened time-major, then rows, then columns."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid ``(T, H, W)`` for an input size; ValueError when the size does not divide."""
        t, p = self.tubelet_size, self.patch_size
        if frames % t or height % p or width % p:
            raise ValueError(f"input of {frames} frames x {height}x{width} px does not divide into tubelets of "
                             f"{t}x{p}x{p} (frames by tubelet_size {t}, height and width by patch_size {p})")
        return frames // t, height // p, width // p

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        grid = self.grid(*x.shape[2:])
        x = self.proj(x)  # [B, C, T, H, W]
        # contiguous: the permuted view would make every residual sum of a model without class token (whose
        # concatenation copies) keep its strides, and each LayerNorm copy it (2-5% of a TokenLearner model)
        return rearrange(x, "b c t h w -> b (t h w) c").contiguous(), grid


class T2TTokenTransformer(nn.Module):
    """T2T-ViT ``Token_transformer``: one-head attention from width ``dim`` to ``inner`` whose residual is the
    value ``v`` (the widths differ), then ``x + MLP(LN(x))`` at width ``inner`` (MLP ratio 1)."""

    def __init__(self, dim: int, inner: int, norm_eps: float = 1e-6, gelu_approximate: str = "tanh") -> None:
        super().__init__()
        self.scale = dim ** -0.5  # as T2T-ViT: the scale uses the input width
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, inner)
        self.norm2 = nn.LayerNorm(inner, eps=norm_eps)
        self.mlp = Mlp(inner, inner, approximate=gelu_approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unsqueeze(1).chunk(3, dim=-1)  # 3 x [N, 1, L, inner]
        x = self.proj(F.scaled_dot_product_attention(q, k, v, scale=self.scale).squeeze(1))  # [N, L, inner]
        x = v.squeeze(1) + x
        return x + self.mlp(self.norm2(x))


class T2TEmbed(nn.Module):
    """Tokens-to-Token tokenizer (T2T-ViT), applied to every frame with shared weights.

    Soft split ``nn.Unfold(k, s, p)`` -> token transformer -> back to an image, repeated, and a last soft
    split -> Linear to width ``dim``. With the default splits (7,4,2), (3,2,1), (3,2,1) a 224 px frame gives
    14x14 tokens; per axis ``n -> floor((n + 2p - k) / s) + 1``.
    """

    def __init__(self, in_chans: int, dim: int, soft_splits: list[list[int]], token_dim: int = 64,
                 norm_eps: float = 1e-6, gelu_approximate: str = "tanh") -> None:
        super().__init__()
        self.soft_splits = [tuple(s) for s in soft_splits]
        self.unfolds = nn.ModuleList(nn.Unfold(k, padding=p, stride=s) for k, s, p in self.soft_splits)
        widths = [in_chans] + [token_dim] * (len(soft_splits) - 1)
        self.transformers = nn.ModuleList(
            T2TTokenTransformer(c * k * k, token_dim, norm_eps, gelu_approximate)
            for c, (k, _, _) in zip(widths[:-1], self.soft_splits[:-1]))
        self.proj = nn.Linear(widths[-1] * self.soft_splits[-1][0] ** 2, dim)

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid ``(F, H, W)`` for an input size; ValueError when a soft split leaves no token."""
        h, w = height, width
        for k, s, p in self.soft_splits:
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if h < 1 or w < 1:
                raise ValueError(f"input of {height}x{width} px is too small for the T2T soft splits "
                                 f"{[list(x) for x in self.soft_splits]}")
        return frames, h, w

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        b, _, frames, height, width = x.shape
        grid = self.grid(frames, height, width)
        x = rearrange(x, "b c f h w -> (b f) c h w")
        h, w = height, width
        for unfold, transformer, (k, s, p) in zip(self.unfolds, self.transformers, self.soft_splits):
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            x = transformer(rearrange(unfold(x), "n ckk l -> n l ckk"))  # [B*F, h*w, token_dim]
            x = rearrange(x, "n (h w) c -> n c h w", h=h, w=w)
        x = self.proj(rearrange(self.unfolds[-1](x), "n ckk l -> n l ckk"))  # [B*F, H*W, C]
        return rearrange(x, "(b f) l c -> b (f l) c", b=b), grid


def resample_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int, int], new_grid: tuple[int, int, int],
                       num_prefix: int = 0) -> torch.Tensor:
    """Resample a learned positional table to another token grid.

    The rule: the ``num_prefix`` leading rows (class token) are kept apart and unchanged; the grid part
    ``[T0*H0*W0]`` is resampled spatially with bicubic interpolation (each time step on its own), then
    along time with linear interpolation (``align_corners=False``). Computed in float32.

    Args:
        pos_embed: ``[1, num_prefix + T0*H0*W0, C]``.
        old_grid: ``(T0, H0, W0)`` the table was learned for.
        new_grid: ``(T, H, W)`` wanted.
        num_prefix: leading rows that belong to no grid position.

    Returns:
        ``[1, num_prefix + T*H*W, C]`` in the dtype of ``pos_embed``.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    t0, h0, w0 = old_grid
    t, h, w = new_grid
    if pos_embed.shape[1] != num_prefix + t0 * h0 * w0:
        raise ValueError(f"positional table has {pos_embed.shape[1]} rows, expected {num_prefix} + "
                         f"{t0}*{h0}*{w0} for grid {tuple(old_grid)}")
    prefix, table = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:].float()
    table = rearrange(table, "1 (t h w) c -> t c h w", t=t0, h=h0, w=w0)
    if (h, w) != (h0, w0):
        table = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)  # [T0, C, H, W]
    table = rearrange(table, "t c h w -> (h w) c t")
    if t != t0:
        table = F.interpolate(table, size=t, mode="linear", align_corners=False)  # [H*W, C, T]
    table = rearrange(table, "(h w) c t -> 1 (t h w) c", h=h, w=w)
    return torch.cat([prefix, table.to(pos_embed.dtype)], dim=1)


def inflate_patch_weight(weight: torch.Tensor, tubelet_size: int, method: str = "central_frame") -> torch.Tensor:
    """A 2-D image patch-embedding kernel ``[C, C_in, p, p]`` as a tubelet kernel ``[C, C_in, t, p, p]``.

    Args:
        weight: the Conv2d weight of an image ViT.
        tubelet_size: t.
        method: 'central_frame' (the kernel at frame ``t // 2``, zeros elsewhere: the released ViViT Kinetics
            configs, best in the paper) or 'inflate' (the kernel divided by t at every frame).
    """
    if weight.ndim != 4:
        raise ValueError(f"expected a 2-D patch kernel [C, C_in, p, p], got shape {list(weight.shape)}")
    if method == "inflate":
        return weight.unsqueeze(2).repeat(1, 1, tubelet_size, 1, 1) / tubelet_size
    if method == "central_frame":
        out = weight.new_zeros(weight.shape[:2] + (tubelet_size,) + weight.shape[2:])  # [C, C_in, t, p, p]
        out[:, :, tubelet_size // 2] = weight
        return out
    raise ValueError(f"unknown inflation method {method!r}; valid: 'central_frame', 'inflate'")
