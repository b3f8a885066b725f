"""TokenLearner (v1 and v1.1) and TokenFuser (Ryoo et al. 2021), following scenic's
``projects/token_learner/model.py``. All three act on one time step: ``x [N, H*W, C]`` with N = B*T
(weights shared across time)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vivit_tl.models.layers import Mlp


class TokenLearnerV1(nn.Module):
    """TokenLearner v1: ``alpha = sigmoid(conv stack(LN(x)))`` and ``token_i = pool(x * alpha_i)``.

    The conv stack is conv3x3 C->S, GELU, then 3x (conv3x3 S->S) with GELU, GELU and finally sigmoid;
    no biases (scenic and the Keras example). Pooling is over the RAW input ``x``, not ``LN(x)``.

    Args:
        dim: token width C.
        num_tokens: learned tokens S.
        pool: 'sum' (scenic default) or 'mean' (Keras example).
    """

    def __init__(self, dim: int, num_tokens: int, pool: str = "sum", norm_eps: float = 1e-6,
                 gelu_approximate: str = "tanh") -> None:
        super().__init__()
        self.pool = pool
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Conv2d(dim if i == 0 else num_tokens, num_tokens, 3, padding=1, bias=False))
            layers.append(nn.GELU(approximate=gelu_approximate) if i < 3 else nn.Sigmoid())
        self.attention = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, H*W, C]`` -> tokens ``[N, S, C]`` and attention maps ``[N, S, H*W]`` in [0, 1]."""
        a = rearrange(self.norm(x), "n (h w) c -> n c h w", h=grid[0], w=grid[1])
        maps = rearrange(self.attention(a), "n s h w -> n s (h w)")  # [N, S, H*W]
        tokens = torch.einsum("nsp,npc->nsc", maps, x)  # [N, S, C]
        if self.pool == "mean":
            tokens = tokens / x.shape[1]
        return tokens, maps


class TokenLearnerV11(nn.Module):
    """TokenLearner v1.1: ``w = softmax_over_space(MLP(LN(x)))``, ``tokens = w @ x`` (convex combinations
    of raw input positions). MLP: Linear C->hidden, GELU, dropout, Linear hidden->S, dropout."""

    def __init__(self, dim: int, num_tokens: int, hidden: int = 64, drop: float = 0.0, norm_eps: float = 1e-6,
                 gelu_approximate: str = "tanh") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden, num_tokens, drop=drop, approximate=gelu_approximate)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, H*W, C]`` -> tokens ``[N, S, C]`` and softmax weights ``[N, S, H*W]`` (sum 1 over H*W)."""
        logits = rearrange(self.mlp(self.norm(x)), "n p s -> n s p")  # [N, S, H*W]
        maps = logits.softmax(dim=-1)
        return maps @ x, maps  # [N, S, C], [N, S, H*W]


class TokenFuser(nn.Module):
    """TokenFuser: maps S tokens back to the H*W grid (SPEC §4, scenic ``TokenFuser``).

    ``Y' = LN2((LN1(Y)^T M)^T)`` with M (a Linear over the token axis, with bias) initialised to zero;
    ``beta = sigmoid(MLP(LN(X)))`` from the pre-TokenLearner input X; ``out = dropout(beta @ Y')``.
    The caller adds the residual X, so TokenLearner -> block -> TokenFuser is the identity at init.
    """

    def __init__(self, dim: int, num_tokens: int, hidden: int = 64, drop: float = 0.0, norm_eps: float = 1e-6,
                 gelu_approximate: str = "tanh") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.token_mix = nn.Linear(num_tokens, num_tokens)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm_x = nn.LayerNorm(dim, eps=norm_eps)
        self.mix_mlp = Mlp(dim, hidden, num_tokens, drop=drop, approximate=gelu_approximate)
        self.drop = nn.Dropout(drop)
        self.reset_token_mix()

    def reset_token_mix(self) -> None:
        """Zero the token mixing M (its weight and bias): the fuser then outputs zeros."""
        nn.init.zeros_(self.token_mix.weight)
        nn.init.zeros_(self.token_mix.bias)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y [N, S, C]`` (tokens after the block), ``x [N, H*W, C]`` (TokenLearner input) -> ``[N, H*W, C]``."""
        y = rearrange(self.norm1(y), "n s c -> n c s")
        y = rearrange(self.token_mix(y), "n c s -> n s c")  # [N, S, C]
        y = self.norm2(y)
        beta = torch.sigmoid(self.mix_mlp(self.norm_x(x)))  # [N, H*W, S]
        return self.drop(beta @ y)  # [N, H*W, C]


def build_token_learner(kind: str, dim: int, num_tokens: int, *, pool: str, hidden: int, drop: float,
                        norm_eps: float, gelu_approximate: str) -> nn.Module:
    """The TokenLearner of version ``kind`` ('v1' or 'v1.1')."""
    if kind == "v1":
        return TokenLearnerV1(dim, num_tokens, pool, norm_eps, gelu_approximate)
    if kind == "v1.1":
        return TokenLearnerV11(dim, num_tokens, hidden, drop, norm_eps, gelu_approximate)
    raise ValueError(f"unknown token_learner {kind!r}; valid: 'v1', 'v1.1'")
