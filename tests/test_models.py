"""Model API tests: every registered variant at a tiny size, config round trips, errors, cost counting."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math

import pytest
import torch

from vivit_tl.models import ModelConfig, VideoTransformer, build_model, create_model, list_models, model_config
from vivit_tl.models.flops import count_flops, model_cost
from vivit_tl.models.registry import VARIANTS
from vivit_tl.models.token_learner import TokenFuser

# Video variants shrink to 2x2 tubelets of 8 px over 4 frames at 32 px, width 32, 3 blocks.
TINY_VIDEO = dict(depth=3, temporal_depth=1, embed_dim=32, num_heads=2, mlp_dim=48, num_frames=4, image_size=32,
                  patch_size=8, num_classes=5)


def tiny_overrides(name: str) -> dict:
    """Overrides that make variant ``name`` tiny (the CIFAR image models are already small)."""
    if name.startswith("vit_cifar"):
        return dict(depth=2, token_learner_loc=1) if VARIANTS[name].get("token_learner") else dict(depth=2)
    overrides = dict(TINY_VIDEO)
    if VARIANTS[name].get("head_dim"):
        overrides["head_dim"] = 8
    if isinstance(VARIANTS[name].get("token_learner_loc"), int):
        overrides["token_learner_loc"] = 1  # e.g. 16at12 of a 24-block model
    return overrides


def tiny_model(name: str, **extra) -> VideoTransformer:
    torch.manual_seed(0)
    return create_model(name, **{**tiny_overrides(name), **extra})


def tiny_input(model: VideoTransformer, batch: int = 2) -> torch.Tensor:
    cfg = model.config
    return torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.image_size, cfg.image_size)


def test_required_variants_are_registered():
    required = {"vit_cifar", "vit_cifar_tl4", "vit_cifar_tl8", "vit_cifar_v11_tl8", "vit_cifar_t2t", "vivit_ti16x2",
                "vivit_b16x2", "vivit_b16x2_fe", "vivit_b16x2_tl8", "vivit_b16x2_tl8_fuse", "vivit_l16x2_tl16"}
    assert required <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_variant_forward_backward(name):
    model = tiny_model(name).train()
    cfg = model.config
    x = tiny_input(model)
    logits, maps = model(x, return_maps=True)
    assert logits.shape == (2, cfg.num_classes)
    assert torch.isfinite(logits).all()
    # one [B, T, S, Hg, Wg] map per TokenLearner layer
    if cfg.token_learner == "none":
        assert maps == []
    else:
        layers = cfg.depth - cfg.token_learner_index if cfg.token_learner_placement == "fuse" else 1
        assert len(maps) == layers
        t = cfg.num_frames // cfg.tubelet_size
        g = model.tokenizer.grid(cfg.num_frames, cfg.image_size, cfg.image_size)
        assert all(m.shape == (2, t, cfg.num_tokens, g[1], g[2]) for m in maps)
    logits.logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"


@pytest.mark.parametrize("name", [n for n in list_models() if VARIANTS[n].get("token_learner_placement") == "fuse"]
                         + ["vit_cifar_tl8", "vivit_b16x2_fe", "vit_cifar_t2t"])
def test_every_parameter_is_used(name):
    """With TokenFuser's zero-initialised mixing M perturbed, every parameter gets a non-zero gradient."""
    model = tiny_model(name)
    for fuser_param in (p for n, p in model.named_parameters() if "token_mix" in n):
        torch.nn.init.normal_(fuser_param, std=0.5)
    model(tiny_input(model)).logsumexp(-1).mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"parameters with zero gradient: {dead}"


@pytest.mark.parametrize("name", list_models())
def test_config_round_trip(name):
    cfg = model_config(name)
    assert ModelConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    assert ModelConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    model = tiny_model(name)
    rebuilt = build_model(dataclasses.asdict(model.config))
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = tiny_input(model)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


def test_image_model_is_one_frame_video_model():
    """The image ViT and a one-frame ViViT are the same module and code path: the same weights load into a
    ViViT variant with tubelet 1 and give the same logits, and [B, 3, H, W] equals [B, 3, 1, H, W]."""
    image_model = tiny_model("vit_cifar").eval()
    image_fields = dataclasses.asdict(image_model.config)
    video_model = create_model("vivit_ti16x2", **image_fields).eval()
    assert type(video_model) is type(image_model) is VideoTransformer
    video_model.load_state_dict(image_model.state_dict(), strict=True)
    images = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(image_model(images), image_model(images.unsqueeze(2)))
    torch.testing.assert_close(video_model(images.unsqueeze(2)), image_model(images))


def test_keras_cifar_parameter_counts():
    """The Keras example's layer shapes, counted by hand: patch Conv2D 6x6x3->128, Embedding 64x128, per block
    2 LNs, MultiHeadAttention (4 heads, key_dim 128: q/k/v 128->512 and out 512->128, with biases),
    Dense 128->256->128; final LN; Dense 128->10. TokenLearner v1: LN + 4 bias-free 3x3 convs."""
    block = 2 * 256 + 3 * (128 * 512 + 512) + (512 * 128 + 128) + (128 * 256 + 256) + (256 * 128 + 128)
    keras_vit = (6 * 6 * 3 * 128 + 128) + 64 * 128 + 4 * block + 256 + (128 * 10 + 10)
    assert sum(p.numel() for p in create_model("vit_cifar").parameters()) == keras_vit
    for s in (4, 8):
        token_learner = 256 + 3 * 3 * 128 * s + 3 * (3 * 3 * s * s)
        assert sum(p.numel() for p in create_model(f"vit_cifar_tl{s}").parameters()) == keras_vit + token_learner


def test_keras_token_learner_placement():
    """Keras applies the TokenLearner after block i == L // 2 = 2 of 4: blocks see 64, 64, 64, then S tokens."""
    cost = model_cost("vit_cifar_tl8")
    assert cost["tokens_per_block"] == [64, 64, 64, 8]


def test_keras_init_uses_keras_glorot_fans():
    """weight_init='keras': each kernel is U(+-sqrt(6 / (fan_in + fan_out))) with the fans Keras computes from its
    own kernel shape (rank > 2: the leading dims multiply both fans), biases 0, positions Embedding's U(+-0.05)."""
    def glorot(fan_in: int, fan_out: int) -> float:
        return math.sqrt(6 / (fan_in + fan_out))

    bounds = {  # parameter name ending -> bound from the Keras layer's kernel shape
        "tokenizer.proj.weight": glorot(6 * 6 * 3, 6 * 6 * 128),  # Conv2D kernel (6, 6, 3, 128)
        "pos.pos_embed": 0.05,
        "attn.qkv.weight": glorot(4 * 128, 128 * 128),  # query/key/value EinsumDense (128, 4, 128), checked apart
        "attn.proj.weight": glorot(128 * 4, 128 * 4),  # output EinsumDense (4, 128, 128)
        "mlp.fc1.weight": glorot(128, 256),  # Dense (128, 256)
        "mlp.fc2.weight": glorot(256, 128),
        "token_learner.attention.0.weight": glorot(3 * 3 * 128, 3 * 3 * 8),  # Conv2D (3, 3, 128, 8)
        "head.weight": glorot(128, 10),
    }
    for s in (2, 4, 6):
        bounds[f"token_learner.attention.{s}.weight"] = glorot(3 * 3 * 8, 3 * 3 * 8)  # Conv2D (3, 3, 8, 8)
    torch.manual_seed(0)
    model = create_model("vit_cifar_tl8", weight_init="keras")
    checked = set()
    for name, param in model.named_parameters():
        if name.endswith("bias") or ".norm" in name:
            assert param.eq(0 if name.endswith("bias") else 1).all(), name
            continue
        key = next(k for k in bounds if name.endswith(k))
        checked.add(key)
        for part in (param.chunk(3) if key == "attn.qkv.weight" else [param]):
            bound = bounds[key]
            assert 0.95 * bound < part.abs().max() <= bound, name
            assert part.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), name  # uniform's std
    assert checked == set(bounds)
    # head width d != width C, a 2-frame tubelet, TokenFusers (C=32, h=2, d=8, tubelet 2x8x8)
    model = tiny_model("vivit_b16x2_tl8_fuse", head_dim=8, weight_init="keras")
    attn = model.encoder.blocks[0].attn
    for part, bound in [*[(q, glorot(2 * 32, 8 * 32)) for q in attn.qkv.weight.chunk(3)],
                        (attn.proj.weight, glorot(2 * 8, 2 * 32)),
                        (model.tokenizer.proj.weight, glorot(3 * 2 * 8 * 8, 32 * 2 * 8 * 8))]:
        assert 0.9 * bound < part.abs().max() <= bound
    fusers = [m for m in model.modules() if isinstance(m, TokenFuser)]
    assert fusers and all(f.token_mix.weight.eq(0).all() for f in fusers)  # fused layers start as the identity
    default = create_model("vit_cifar_tl8")
    assert default.encoder.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.15)
    with pytest.raises(ValueError, match="weight_init"):
        create_model("vit_cifar", weight_init="glorot")


def test_fixed_positional_code_is_never_trained_or_decayed():
    """learned_pos_embed=False (the Keras example's untracked Embedding): the positional tables keep their initial
    values through AdamW steps with decay on every parameter, and are still saved; everything else trains."""
    from vivit_tl.config import OptimConfig
    from vivit_tl.engine.optim import build_optimizer

    for name in ("vit_cifar_tl8", "vivit_b16x2_fe"):  # one table; spatial + temporal tables
        model = tiny_model(name, learned_pos_embed=False, weight_init="keras")
        tables = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("pos_embed")}
        assert len(tables) == (2 if name.endswith("_fe") else 1)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if n not in tables}
        optimizer = build_optimizer(model, OptimConfig(lr=1e-2, weight_decay=0.1, decay_all_params=True))
        for _ in range(2):
            model(tiny_input(model)).logsumexp(-1).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        params = dict(model.named_parameters())
        assert all(torch.equal(params[n], value) and params[n].grad is None for n, value in tables.items())
        assert all(not torch.equal(params[n], value) for n, value in before.items())  # decayed and/or trained
        assert set(tables) <= set(model.state_dict())
        assert tables["pos.pos_embed"].abs().max() > 0.04  # Keras' U(+-0.05), not zeros
    assert all(p.requires_grad for p in tiny_model("vit_cifar").parameters())  # the default: learned


def test_other_input_sizes_resample_positions():
    model = tiny_model("vivit_b16x2").eval()
    for frames, size in [(2, 32), (8, 48), (4, 16)]:
        logits = model(torch.randn(1, 3, frames, size, size))
        assert logits.shape == (1, 5) and torch.isfinite(logits).all()
    fe = tiny_model("vivit_b16x2_tl8").eval()
    logits, maps = fe(torch.randn(1, 3, 6, 40, 40), return_maps=True)
    assert maps[0].shape == (1, 3, 8, 5, 5)


@pytest.mark.parametrize("overrides, match", [
    (dict(num_frames=5), "num_frames 5 is not divisible by tubelet_size 2"),
    (dict(image_size=36), "image_size 36 is not divisible by patch_size 8"),
    (dict(embed_dim=30, num_heads=4), "embed_dim 30 is not divisible by num_heads 4"),
    (dict(model_type="joint3d"), "model_type must be one of"),
    (dict(token_learner="v1", pool="cls"), "needs pool 'gap'"),
    (dict(token_learner="v1", pool="gap", token_learner_loc=3), "outside 0..2"),
    (dict(token_learner="v1", pool="gap", token_learner_loc=1.5), "fraction of depth must lie in"),
    (dict(drop_rate=1.0), "drop_rate must be in"),
    (dict(tokenizer="t2t"), "needs tubelet_size 1"),
    (dict(depth=0), "depth must be a positive int"),
])
def test_bad_configs_refuse_to_build(overrides, match):
    with pytest.raises(ValueError, match=match):
        create_model("vivit_b16x2", **{**TINY_VIDEO, **overrides})


def test_bad_inputs_and_names_raise_clear_errors():
    model = tiny_model("vivit_b16x2")
    with pytest.raises(ValueError, match="input of 5 frames x 32x32 px does not divide"):
        model(torch.randn(1, 3, 5, 32, 32))
    with pytest.raises(ValueError, match="input of 4 frames x 30x32 px does not divide"):
        model(torch.randn(1, 3, 4, 30, 32))
    with pytest.raises(ValueError, match=r"expected input \[B, 3, F, H, W\]"):
        model(torch.randn(1, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="unknown model 'vivit_zz'.*vivit_b16x2"):
        create_model("vivit_zz")
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['dept'\] \(did you mean 'depth'\?\); valid"):
        create_model("vivit_b16x2", dept=3)
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['widht'\]; valid keys: \[.*embed_dim"):
        ModelConfig.from_dict({"widht": 3})


def test_no_weight_decay_names():
    model = tiny_model("vivit_b16x2_fe")
    names = model.no_weight_decay()
    assert {"pos.pos_embed", "pos.cls_token", "temporal_pos.pos_embed", "temporal_pos.cls_token"} <= names
    params = dict(model.named_parameters())
    assert all(params[n].ndim <= 1 for n in names if not n.endswith(("pos_embed", "cls_token")))
    assert {n for n, p in params.items() if p.ndim <= 1} <= names
    assert "encoder.blocks.0.attn.qkv.weight" not in names


def test_grad_checkpointing_gives_same_gradients():
    model = tiny_model("vivit_b16x2_tl8_fuse").train()
    x = tiny_input(model)
    model(x).sum().backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    assert model.config.grad_checkpointing
    model(x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], msg=n)


def test_bf16_autocast_on_cpu():
    model = tiny_model("vivit_b16x2_tl8")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, maps = model(tiny_input(model), return_maps=True)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_flops_match_the_vivit_paper():
    """ViViT B/16x2 at 32x224²: the paper reports 455.2 GFLOPs (multiply-adds) for Model 1; TokenLearner 8 tokens
    per step at 1/2 must cost at most 55% of it. Counted on the meta device (no compute)."""
    base = model_cost("vivit_b16x2")
    assert abs(base["gflops"] - 455.2) / 455.2 < 0.02
    assert base["tokens_per_block"] == [16 * 14 * 14 + 1] * 12
    tl8 = model_cost("vivit_b16x2_tl8")
    assert tl8["gflops"] <= 0.55 * 455.2
    assert tl8["tokens_per_block"] == [3136] * 6 + [16 * 8] * 6
    for name, paper in [("vivit_b16x2_fe", 284.4), ("vivit_b16x2_fsa", 372.3), ("vivit_b16x2_fdp", 277.1)]:
        assert abs(model_cost(name)["gflops"] - paper) / paper < 0.02, name


def test_flops_on_cpu_equal_flops_on_meta():
    """The CPU fused attention kernel is counted (its formula is registered), so real and meta counts agree."""
    model = tiny_model("vivit_b16x2")
    with torch.device("meta"):
        meta_model = build_model(model.config)
    cpu, meta = count_flops(model, 4, 32), count_flops(meta_model, 4, 32)
    # by hand: 2x4x4 = 32 tubelets of 3x2x8x8 inputs, 33 tokens with CLS, width 32, MLP 48, 3 blocks, 5 classes
    n, c = 33, 32
    block = n * c * 3 * c + n * c * c + 2 * n * n * c + 2 * n * c * 48  # qkv, proj, QK^T and AV, MLP
    expected = 32 * (3 * 2 * 8 * 8) * c + 3 * block + c * 5
    assert meta["gflops"] * 1e9 == pytest.approx(expected)
    assert cpu["gflops"] * 1e9 == pytest.approx(expected)


@pytest.mark.parametrize("placement", ["once", "fuse"])
def test_factorised_encoder_with_token_learner(placement):
    """Model 2 learns tokens in the spatial encoder, per frame; the maps come back as [B, T, S, Hg, Wg]."""
    model = tiny_model("vivit_b16x2_fe", pool="gap", token_learner="v1", token_learner_loc=1,
                       token_learner_placement=placement)
    logits, maps = model(torch.randn(3, 3, 6, 32, 32), return_maps=True)
    assert logits.shape == (3, 5)
    assert [m.shape for m in maps] == [(3, 3, 8, 4, 4)] * (1 if placement == "once" else 2)
    one_video = model(torch.randn(1, 3, 6, 32, 32), return_maps=True)[1]
    assert one_video[0].shape == (1, 3, 8, 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast(dtype):
    model = tiny_model("vivit_b16x2_tl8_fuse", grad_checkpointing=True).cuda().train()
    with torch.autocast("cuda", dtype=dtype):
        logits, maps = model(tiny_input(model).cuda(), return_maps=True)
    assert logits.dtype == dtype and torch.isfinite(logits.float()).all()
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_whole_model_compiles_without_graph_breaks():
    model = tiny_model("vivit_b16x2_tl8_fuse", grad_checkpointing=True).train()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    logits, maps = compiled(tiny_input(model), return_maps=True)
    assert logits.shape == (2, 5) and len(maps) == 2


def _flops_tool():
    return importlib.import_module("vivit_tl.cli.flops")


def test_flops_tool_json(capsys):
    tool = _flops_tool()
    assert tool.main(["--model", "vivit_b16x2_tl8", "--frames", "8", "--size", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens_per_block"] == [4 * 4 * 4] * 6 + [4 * 8] * 6
    with torch.device("meta"):
        assert out["params"] == sum(p.numel() for p in create_model("vivit_b16x2_tl8").parameters())
    assert out["gflops"] == pytest.approx(model_cost("vivit_b16x2_tl8", 8, 64)["gflops"])
    with pytest.raises(ValueError, match="'vivit_b16x2_tl'.* is neither a registered variant .did you mean 'vivit_b16x2_tl8'"):
        tool.main(["--model", "vivit_b16x2_tl"])


def test_flops_tool_reads_a_trained_model_file(tmp_path, capsys):
    """A run directory (or model folder) is counted from the config in its header, at the model's own sizes."""
    from vivit_tl.checkpoint import save_model_file

    tool = _flops_tool()
    model = tiny_model("vivit_b16x2_tl8")
    save_model_file(tmp_path / "run" / "best", model, classes=list("abcde"), data_config={}, step=1, epoch=0)
    assert tool.main(["--model", str(tmp_path / "run"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = model.config
    assert (out["model"], out["frames"], out["size"]) == (str(tmp_path / "run"), cfg.num_frames, cfg.image_size)
    expected = count_flops(model, cfg.num_frames, cfg.image_size)
    assert (out["params"], out["tokens_per_block"]) == (expected["params"], expected["tokens_per_block"])
    assert out["gflops"] == pytest.approx(expected["gflops"])
    assert tool.main(["--model", str(tmp_path / "run" / "best"), "--set", "num_tokens=4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens_per_block"][-1] == 2 * 4  # 2 time steps x 4 tokens
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model file"):
        tool.main(["--model", str(tmp_path / "empty")])
