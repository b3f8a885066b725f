"""Transformer building blocks shared by every model: MLP, attention, stochastic depth, blocks.

All blocks take ``x [N, L, C]`` and ``num_steps`` (the number of time steps T the L tokens are
laid out in, time-major: ``L = T * P``); only the factorised blocks (ViViT Models 3 and 4) use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear [-> GELU] -> dropout (scenic's ``MlpBlock``; Keras' ``mlp``).

    Args:
        in_features: input width.
        hidden_features: hidden width.
        out_features: output width (default: ``in_features``).
        drop: dropout after each Linear.
        final_gelu: also apply GELU after the second Linear (the Keras example).
        approximate: GELU form, 'none' or 'tanh'.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 drop: float = 0.0, final_gelu: bool = False, approximate: str = "tanh") -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=approximate)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.act2 = nn.GELU(approximate=approximate) if final_gelu else nn.Identity()
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.act2(self.fc2(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # [N, 1, 1]
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`.

    The inner width ``num_heads * head_dim`` may differ from the token width ``dim``
    (Keras ``MultiHeadAttention(num_heads=4, key_dim=128)`` at width 128 has inner width 512).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(num_heads * head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Attention of ``q, k, v [N, h, L, d]`` over all L tokens -> ``[N, h, L, d]``."""
        return self._sdpa(q, k, v)

    def forward(self, x: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
        # unbind, not qkv[0], qkv[1], qkv[2]: the backward of three selects zero-fills, copies and sums three
        # full-size [3, N, h, L, d] gradients; unbind's backward is one stack (1.5-3% of a ViT-B training step).
        # self.qkv is called as a module (not F.linear on slices of its weight, which measured ~1.07x faster on
        # the Keras CIFAR model) so that LoRA, quantisation and hooks that replace or wrap it take effect.
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.num_heads).unbind(0)
        x = self.attend(q, k, v, num_steps)  # [N, h, L, d]
        x = rearrange(x, "n h l d -> n l (h d)")
        return self.proj_drop(self.proj(x))


class FactorisedDotProductAttention(Attention):
    """ViViT Model 4: the first half of the heads attends over space (within a time step), the other
    half over time (same spatial position). Tokens are time-major, ``L = num_steps * P``."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_steps: int) -> torch.Tensor:
        half, n = self.num_heads // 2, q.shape[0]
        space = "n h (t p) d -> (n t) h p d"
        time = "n h (t p) d -> (n p) h t d"
        xs = self._sdpa(*(rearrange(a[:, :half], space, t=num_steps) for a in (q, k, v)))  # [N*T, h/2, P, d]
        xt = self._sdpa(*(rearrange(a[:, half:], time, t=num_steps) for a in (q, k, v)))  # [N*P, h/2, T, d]
        xs = rearrange(xs, "(n t) h p d -> n h (t p) d", n=n)  # [N, h/2, L, d]
        xt = rearrange(xt, "(n p) h t d -> n h (t p) d", n=n)  # [N, h/2, L, d]
        return torch.cat([xs, xt], dim=1)  # [N, h, L, d]


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``, with stochastic depth.

    Args:
        dim: token width C.
        num_heads, head_dim: attention heads and the width of each.
        mlp_dim: MLP hidden width.
        drop, proj_drop, attn_drop, drop_path: dropout rates (MLP, attention output, attention weights,
            stochastic depth).
        factorised_dot_product: use ViViT Model 4 attention (heads split between space and time).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, *, qkv_bias: bool = True,
                 drop: float = 0.0, proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6, mlp_final_gelu: bool = False, gelu_approximate: str = "tanh",
                 factorised_dot_product: bool = False) -> None:
        super().__init__()
        attn_cls = FactorisedDotProductAttention if factorised_dot_product else Attention
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn_cls(dim, num_heads, head_dim, qkv_bias, attn_drop, proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, drop=drop, final_gelu=mlp_final_gelu, approximate=gelu_approximate)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), num_steps))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FactorisedSelfAttentionBlock(Block):
    """ViViT Model 3: attention over time (tokens at one spatial position), then over space (tokens of one
    time step), each pre-LN with its residual, then the MLP. Tokens are time-major, ``L = num_steps * P``."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, **kwargs) -> None:
        super().__init__(dim, num_heads, head_dim, mlp_dim, **kwargs)
        self.norm_t = nn.LayerNorm(dim, eps=self.norm1.eps)
        self.attn_t = Attention(dim, num_heads, head_dim, kwargs.get("qkv_bias", True),
                                kwargs.get("attn_drop", 0.0), kwargs.get("proj_drop", 0.0))

    def forward(self, x: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
        # Each branch is laid back out as [N, L, C] before DropPath, which drops it for a whole video (not for
        # one spatial position or one time step, the batch rows of the factorised attentions).
        n = x.shape[0]
        xt = rearrange(x, "n (t p) c -> (n p) t c", t=num_steps)  # [N*P, T, C]
        x = x + self.drop_path(rearrange(self.attn_t(self.norm_t(xt)), "(n p) t c -> n (t p) c", n=n))
        xs = rearrange(x, "n (t p) c -> (n t) p c", t=num_steps)  # [N*T, P, C]
        x = x + self.drop_path(rearrange(self.attn(self.norm1(xs)), "(n t) p c -> n (t p) c", n=n))
        return x + self.drop_path(self.mlp(self.norm2(x)))
