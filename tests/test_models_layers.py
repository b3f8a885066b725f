"""Building-block tests: TokenLearner / TokenFuser properties, attention variants against masked full
attention, tokenizers, positional resampling, and torch.compile without graph breaks."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from vivit_tl.models import create_model, inflate_patch_weight, resample_pos_embed
from vivit_tl.models.embed import T2TEmbed, TubeletEmbed
from vivit_tl.models.layers import Block, FactorisedDotProductAttention, FactorisedSelfAttentionBlock
from vivit_tl.models.token_learner import TokenFuser, TokenLearnerV1, TokenLearnerV11
from vivit_tl.models.vivit import FusedLayer, learn_tokens

C, S = 16, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_v1_maps_in_unit_interval_and_pool_on_raw_input():
    x = torch.randn(6, 5 * 7, C) * 3 + 1
    tl = TokenLearnerV1(C, S, pool="mean")
    tokens, maps = tl(x, (5, 7))
    assert maps.shape == (6, S, 35) and tokens.shape == (6, S, C)
    assert maps.min() >= 0 and maps.max() <= 1
    # the Keras formula: mean over positions of maps[..., None] * x (the raw input, not LN(x))
    torch.testing.assert_close(tokens, (maps.unsqueeze(-1) * x.unsqueeze(1)).mean(dim=2))
    tl.pool = "sum"
    torch.testing.assert_close(tl(x, (5, 7))[0], tokens * 35)


def test_v1_maps_keep_the_spatial_layout():
    """A map computed from an image [N, C, H, W] flattened row-major: a conv on a transposed grid differs."""
    x = torch.randn(2, 3 * 5, C)
    tl = TokenLearnerV1(C, S)
    _, maps = tl(x, (3, 5))
    image = tl.norm(x).transpose(1, 2).reshape(2, C, 3, 5)  # [N, C, H, W]
    torch.testing.assert_close(maps, tl.attention(image).flatten(2))


def test_v11_weights_sum_to_one_over_space():
    x = torch.randn(6, 20, C)
    tokens, maps = TokenLearnerV11(C, S, hidden=8)(x, (4, 5))
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(-1), torch.ones(6, S))
    torch.testing.assert_close(tokens, torch.einsum("nsp,npc->nsc", maps, x))


@pytest.mark.parametrize("token_learner", [TokenLearnerV1(C, S), TokenLearnerV11(C, S)])
def test_time_permutation_permutes_per_step_outputs(token_learner):
    b, t, h, w = 2, 5, 3, 4
    x = torch.randn(b, t * h * w, C)
    perm = torch.randperm(t)
    steps = x.reshape(b, t, h * w, C)  # [B, T, H*W, C]
    x_perm = steps[:, perm].reshape(b, t * h * w, C)
    tokens, maps = learn_tokens(token_learner, x, (t, h, w))
    tokens_p, maps_p = learn_tokens(token_learner, x_perm, (t, h, w))
    assert maps.shape == (b, t, S, h, w) and tokens.shape == (b, t * S, C)
    torch.testing.assert_close(maps_p, maps[:, perm])
    torch.testing.assert_close(tokens_p.reshape(b, t, S, C), tokens.reshape(b, t, S, C)[:, perm])


@pytest.mark.parametrize("name", ["vivit_b16x2_tl8_fuse", "vit_cifar_tl8"])
def test_fused_layer_is_identity_at_init(name):
    tiny_video = dict(embed_dim=32, num_heads=2, mlp_dim=48, num_frames=4, image_size=32, patch_size=8)
    model = create_model(name, depth=2, token_learner_loc=0, token_learner_placement="fuse",
                         **(tiny_video if name.startswith("vivit") else {}))
    layers = [m for m in model.modules() if isinstance(m, FusedLayer)]
    assert len(layers) == 2
    grid = (2, 4, 4) if name.startswith("vivit") else (1, 8, 8)
    x = torch.randn(3, grid[0] * grid[1] * grid[2], model.config.embed_dim)
    for layer in layers:
        out, maps = layer.train()(x, grid)
        assert torch.equal(out, x)
        assert maps.shape == (3, grid[0], 8, grid[1], grid[2])
    # not the identity once the token mixing has learned something
    torch.nn.init.normal_(layers[0].fuser.token_mix.weight)
    assert not torch.allclose(layers[0](x, grid)[0], x)


def test_token_fuser_matches_its_formula():
    fuser = TokenFuser(C, S, hidden=8)
    torch.nn.init.normal_(fuser.token_mix.weight)
    y, x = torch.randn(3, S, C), torch.randn(3, 10, C)
    mixed = fuser.norm2((fuser.norm1(y).transpose(1, 2) @ fuser.token_mix.weight.T
                         + fuser.token_mix.bias).transpose(1, 2))  # LN2((LN1(Y)^T M)^T), [N, S, C]
    beta = torch.sigmoid(fuser.mix_mlp(fuser.norm_x(x)))  # [N, H*W, S]
    torch.testing.assert_close(fuser(y, x), beta @ mixed)


def _masked_attention(attn, x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Reference: full attention per head with a boolean mask per head (True = may attend)."""
    n, length, _ = x.shape
    q, k, v = attn.qkv(x).reshape(n, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    heads = [F.scaled_dot_product_attention(q[:, i], k[:, i], v[:, i], attn_mask=masks[i])
             for i in range(attn.num_heads)]
    return attn.proj(torch.stack(heads, 1).transpose(1, 2).reshape(n, length, -1))


def test_factorised_dot_product_attention_matches_masked_attention():
    t, p = 3, 5
    attn = FactorisedDotProductAttention(C, num_heads=4, head_dim=6).eval()
    step = torch.arange(t * p) // p  # time step of each time-major token
    pos = torch.arange(t * p) % p
    same_step, same_pos = step[:, None] == step[None], pos[:, None] == pos[None]
    x = torch.randn(2, t * p, C)
    expected = _masked_attention(attn, x, [same_step, same_step, same_pos, same_pos])
    torch.testing.assert_close(attn(x, num_steps=t), expected)


def test_factorised_self_attention_block_matches_masked_attention():
    t, p = 3, 5
    block = FactorisedSelfAttentionBlock(C, 2, 8, 24).eval()
    step = torch.arange(t * p) // p
    pos = torch.arange(t * p) % p
    same_step, same_pos = step[:, None] == step[None], pos[:, None] == pos[None]
    x = torch.randn(2, t * p, C)
    y = x + _masked_attention(block.attn_t, block.norm_t(x), [same_pos] * 2)
    y = y + _masked_attention(block.attn, block.norm1(y), [same_step] * 2)
    y = y + block.mlp(block.norm2(y))
    torch.testing.assert_close(block(x, num_steps=t), y)


def test_factorised_self_attention_block_drops_each_branch_per_video():
    """Stochastic depth keeps or drops each residual branch (time attention, space attention, MLP) for a whole
    video: every video's output is one of the 8 keep/drop combinations (kept branches scaled by 1/keep)."""
    t, p = 3, 5
    block = FactorisedSelfAttentionBlock(C, 2, 8, 24, drop_path=0.5).train()
    step, pos = torch.arange(t * p) // p, torch.arange(t * p) % p
    same_step, same_pos = step[:, None] == step[None], pos[:, None] == pos[None]
    torch.manual_seed(0)
    x = torch.randn(6, t * p, C)
    with torch.no_grad():
        out = block(x, num_steps=t)
        for video in range(len(x)):
            candidates = []
            for scales in itertools.product((0.0, 2.0), repeat=3):
                y = x[video:video + 1]
                y = y + scales[0] * _masked_attention(block.attn_t, block.norm_t(y), [same_pos] * 2)
                y = y + scales[1] * _masked_attention(block.attn, block.norm1(y), [same_step] * 2)
                candidates.append(y + scales[2] * block.mlp(block.norm2(y)))
            assert any(torch.allclose(out[video:video + 1], y, atol=1e-5) for y in candidates), video


def test_attention_inner_width_differs_from_embedding_width():
    block = Block(128, num_heads=4, head_dim=128, mlp_dim=256)
    assert block.attn.qkv.weight.shape == (3 * 512, 128) and block.attn.proj.weight.shape == (128, 512)
    assert block(torch.randn(2, 9, 128)).shape == (2, 9, 128)


def test_tubelet_embedding_flattens_time_major_like_the_conv_weight():
    embed = TubeletEmbed(3, 8, patch_size=4, tubelet_size=2)
    x = torch.randn(1, 3, 6, 8, 12)
    tokens, grid = embed(x)
    assert grid == (3, 2, 3) and tokens.shape == (1, 18, 8)
    t, i, j = 2, 1, 2  # token (t, i, j) is a dot product with tubelet x[:, :, 2t:2t+2, 4i:4i+4, 4j:4j+4]
    tubelet = x[0, :, 2 * t:2 * t + 2, 4 * i:4 * i + 4, 4 * j:4 * j + 4]
    expected = (embed.proj.weight * tubelet).sum(dim=(1, 2, 3, 4)) + embed.proj.bias
    torch.testing.assert_close(tokens[0, (t * 2 + i) * 3 + j], expected)


def test_t2t_token_grid():
    assert T2TEmbed(3, 8, [[7, 4, 2], [3, 2, 1], [3, 2, 1]]).grid(1, 224, 224) == (1, 14, 14)
    t2t = T2TEmbed(3, 8, [[7, 3, 2], [3, 2, 1], [3, 1, 1]], token_dim=8)
    tokens, grid = t2t(torch.randn(2, 3, 2, 48, 48))
    assert grid == (2, 8, 8) and tokens.shape == (2, 2 * 64, 8)
    with pytest.raises(ValueError, match="too small for the T2T soft splits"):
        t2t.grid(1, 2, 2)


def test_resample_pos_embed_rule():
    table = torch.randn(1, 1 + 2 * 3 * 3, 4)
    assert resample_pos_embed(table, (2, 3, 3), (2, 3, 3), num_prefix=1) is table
    out = resample_pos_embed(table, (2, 3, 3), (4, 5, 5), num_prefix=1)
    assert out.shape == (1, 1 + 4 * 5 * 5, 4)
    torch.testing.assert_close(out[:, :1], table[:, :1])  # class token kept apart
    # constant along time stays constant; the spatial part is bicubic per time step
    steps = torch.randn(1, 1, 9, 4).expand(1, 2, 9, 4).reshape(1, 18, 4)
    resampled = resample_pos_embed(steps, (2, 3, 3), (3, 5, 5)).reshape(3, 25, 4)
    spatial = F.interpolate(steps.reshape(2, 3, 3, 4)[:1].permute(0, 3, 1, 2), size=(5, 5), mode="bicubic")
    for k in range(3):
        torch.testing.assert_close(resampled[k], spatial[0].permute(1, 2, 0).reshape(25, 4))
    with pytest.raises(ValueError, match="positional table has 19 rows"):
        resample_pos_embed(table, (2, 3, 3), (1, 3, 3), num_prefix=0)


@pytest.mark.parametrize("block", [Block(C, 2, 8, 24, drop=0.1, attn_drop=0.1, drop_path=0.1),
                                   Block(C, 2, 8, 24, factorised_dot_product=True),
                                   FactorisedSelfAttentionBlock(C, 2, 8, 24)])
def test_block_compiles_without_graph_breaks(block):
    compiled = torch.compile(block, fullgraph=True, backend="eager")
    x = torch.randn(2, 12, C)
    block.eval()
    torch.testing.assert_close(compiled(x, 3), block(x, 3))
    block.train()
    assert compiled(x, 3).shape == x.shape


def test_inflated_patch_kernel_sees_the_image():
    """On a video of one image repeated over t frames, both inflations give the 2-D patch embedding."""
    conv2d = torch.nn.Conv2d(3, 8, 4, stride=4)
    image = torch.randn(2, 3, 8, 8)
    video = image.unsqueeze(2).expand(2, 3, 3, 8, 8)  # [B, 3, t=3, H, W]
    expected = conv2d(image).flatten(2).transpose(1, 2)  # [B, H*W, C]
    for method in ("central_frame", "inflate"):
        embed = TubeletEmbed(3, 8, patch_size=4, tubelet_size=3)
        embed.proj.weight.data = inflate_patch_weight(conv2d.weight.data, 3, method)
        embed.proj.bias.data = conv2d.bias.data
        torch.testing.assert_close(embed(video)[0], expected)
    central = inflate_patch_weight(conv2d.weight.data, 3)
    assert central[:, :, 0].abs().sum() == 0 and torch.equal(central[:, :, 1], conv2d.weight.data)
    with pytest.raises(ValueError, match="unknown inflation method 'mean'"):
        inflate_patch_weight(conv2d.weight.data, 3, "mean")


def test_block_matches_torch_transformer_encoder_layer():
    """Parity with an independent implementation: `nn.TransformerEncoderLayer` (pre-LN, exact GELU)."""
    dim, heads, mlp = 24, 3, 40
    block = Block(dim, heads, dim // heads, mlp, gelu_approximate="none").eval()
    reference = torch.nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                                 norm_first=True, layer_norm_eps=1e-6).eval()
    with torch.no_grad():
        for p in block.parameters():
            if p.ndim == 1:  # random biases and LayerNorm affines, so that every one of them matters
                p.normal_(0.5, 0.3)
        reference.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)  # q, k, v stacked, heads inside each
        reference.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        pairs = [(block.attn.proj, reference.self_attn.out_proj), (block.mlp.fc1, reference.linear1),
                 (block.mlp.fc2, reference.linear2), (block.norm1, reference.norm1), (block.norm2, reference.norm2)]
        for mine, theirs in pairs:
            theirs.load_state_dict(mine.state_dict())
    x = torch.randn(2, 7, dim, requires_grad=True)
    ours, theirs = block(x), reference(x)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(ours)
    (ours_dx, ours_dqkv), (theirs_dx, theirs_dqkv) = (
        torch.autograd.grad(out, [x, w], grad) for out, w in ((ours, block.attn.qkv.weight),
                                                               (theirs, reference.self_attn.in_proj_weight)))
    torch.testing.assert_close(ours_dx, theirs_dx)
    torch.testing.assert_close(ours_dqkv, theirs_dqkv)
