"""vivit_tl.pretrained: parity with timm and transformers (no network: random reference models built
locally), the identical-frames property of central-frame / inflated tubelets, and strict loading."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from vivit_tl.checkpoint import save_model_file
from vivit_tl.errors import UserError
from vivit_tl.models import ModelConfig, build_model, create_model
from vivit_tl.pretrained import (
    convert_hf_vivit,
    convert_timm_vit,
    hf_source,
    load_pretrained,
    load_source,
    pretrained_model,
    timm_source,
)

TOL = 1e-4  # the bound for fp32 logits; the measured differences are printed (pytest -s)


def perturb(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its initialisation (zero biases, unit norms, zero tables) so that
    each one matters for the parity; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return net.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    diff = (a - b).abs().max().item()
    print(f"{what}: max abs difference {diff:.3g}")
    return diff


def load_pretrained_from(model, timm_net):
    return load_source(model, timm_source(timm_net, "timm"))


# --------------------------------------------------------------------------- timm
@pytest.fixture(scope="module")
def timm_vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2, num_classes=7)
    return perturb(net)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_timm_image_model_parity(timm_vit, images):
    source = timm_source(timm_vit, "timm:vit_tiny_patch16_224")
    assert source.config["gelu_approximate"] == "none" and source.config["num_heads"] == 3
    model = build_model(ModelConfig.from_dict(source.config)).eval()
    report = load_source(model, source)
    assert report.missing_keys == {} and report.unexpected_keys == {} and report.notes == []
    assert set(report.loaded) == set(model.state_dict())
    with torch.no_grad():
        assert max_diff(model(images), timm_vit(images), "timm ViT-Ti vs image model, logits") <= TOL
        assert max_diff(model.forward_features(images), timm_vit.forward_features(images), "features") <= TOL


def test_timm_spec_downloads_through_timm(timm_vit, images, monkeypatch):
    timm = pytest.importorskip("timm")
    calls = []

    def fake_create_model(name, pretrained=False, **kwargs):  # stands in for the hub download
        calls.append((name, pretrained))
        return timm_vit

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    model, report = pretrained_model("timm:vit_tiny_patch16_224.augreg_in21k")
    assert calls == [("vit_tiny_patch16_224.augreg_in21k", True)]
    assert report.kind == "timm" and report.preprocessing == {"mean": [0.5] * 3, "std": [0.5] * 3}
    with torch.no_grad():
        assert max_diff(model.eval()(images), timm_vit(images), "timm: spec") <= TOL


@pytest.mark.parametrize("tubelet_init", ["central_frame", "inflate"])
def test_timm_to_vivit_identical_frames(timm_vit, images, tubelet_init):
    """A clip of T*t identical frames through a ViViT initialised from the image ViT.

    Equal to the image model (up to rounding), as the tubelet initialisation predicts:
    - the tubelet embeddings: every time step's tokens are the image's patch embeddings (central frame:
      only the middle kernel slice is non-zero; inflation: the t slices E2d/t sum to E2d);
    - the positional table: the image table repeated over the T steps (class row kept apart);
    - with pool 'gap' (no class token) the logits: each token attends to T identical copies of the image
      tokens, which is the softmax over one copy, so every step carries the image model's tokens;
    - with pool 'cls' and one time step (F = t) the logits equal timm's. With T > 1 the class token sees
      T copies of the image tokens against one class token, so its attention and the logits differ.
    """
    source = timm_source(timm_vit, "timm")
    video = dict(source.config, num_frames=8, tubelet_size=2)
    clip = images.unsqueeze(2).expand(-1, -1, 8, -1, -1)  # [B, 3, 8, H, W], 8 identical frames
    with torch.no_grad():
        for pool in ("cls", "gap"):
            image_model = build_model(ModelConfig.from_dict(dict(source.config, pool=pool))).eval()
            vivit = build_model(ModelConfig.from_dict(dict(video, pool=pool))).eval()
            load_source(image_model, source)
            report = load_source(vivit, source, tubelet_init=tubelet_init)
            assert any("repeated over time" in n for n in report.notes)
            tokens, grid = vivit.tokenizer(clip)  # [B, T*H*W, C]
            image_tokens, _ = image_model.tokenizer(images.unsqueeze(2))  # [B, H*W, C]
            assert grid == (4, 4, 4)
            assert max_diff(tokens, image_tokens.repeat(1, 4, 1), f"{tubelet_init} tubelet tokens") <= 1e-4
            prefix = int(pool == "cls")
            table = vivit.pos.pos_embed[:, prefix:].reshape(4, 16, -1)  # [T, H*W, C]
            assert torch.equal(table, image_model.pos.pos_embed[:, prefix:].expand(4, -1, -1))
        assert max_diff(vivit(clip), image_model(images), f"{tubelet_init}, gap: ViViT vs image logits") <= TOL
        one_step = build_model(ModelConfig.from_dict(dict(video, num_frames=2))).eval()
        load_source(one_step, source, tubelet_init=tubelet_init)
        assert max_diff(one_step(clip[:, :, :2]), timm_vit(images), f"{tubelet_init}, cls, T=1 vs timm") <= TOL
    kernel = vivit.tokenizer.proj.weight  # [C, 3, t, p, p]
    if tubelet_init == "central_frame":
        assert kernel[:, :, 0].abs().max() == 0 and torch.equal(kernel[:, :, 1], timm_vit.patch_embed.proj.weight)


def test_timm_to_token_learner_fuse_model(timm_vit):
    """TokenLearner/TokenFuser stay newly initialised, the head (7 -> 5 classes) and class token are dropped,
    the positional table is resampled to 96 px; the fused layers' blocks get the ViT blocks."""
    model = create_model("vivit_b16x2_tl8_fuse", num_classes=5, num_frames=4, image_size=96, embed_dim=192,
                         num_heads=3, mlp_dim=768, depth=2, token_learner_loc=1, num_tokens=2,
                         gelu_approximate="none")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained_from(model, timm_vit)
    assert set(report.unexpected_keys) == {"cls_token", "head.weight", "head.bias"}
    assert all(re.search(r"token_learner|fuser|^head\.", k) for k in report.missing_keys)
    assert any(".fuser." in k for k in report.missing_keys) and "head.weight" in report.missing_keys
    assert any("(1, 4, 4) -> (2, 6, 6)" in n for n in report.notes)
    state = model.state_dict()
    for k in report.missing_keys:
        assert torch.equal(state[k], before[k])
    assert torch.equal(state["encoder.blocks.1.block.attn.qkv.weight"], timm_vit.blocks[1].attn.qkv.weight)
    assert torch.equal(state["encoder.blocks.0.mlp.fc2.bias"], timm_vit.blocks[0].mlp.fc2.bias)
    logits, maps = model(torch.randn(1, 3, 4, 96, 96), return_maps=True)
    assert logits.shape == (1, 5) and maps[0].shape == (1, 2, 2, 6, 6)


def test_timm_factorised_models_and_layer_scale(timm_vit, images):
    """Model 2 gets the ViT as its spatial encoder (temporal encoder new); Model 3's temporal attention starts
    as a copy of the spatial one (scenic), its norm_t new; layer scale is folded exactly."""
    timm = pytest.importorskip("timm")
    scaled = perturb(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2,
                                       num_classes=7, init_values=0.5), seed=3)
    source = timm_source(scaled, "timm")
    image_model = build_model(ModelConfig.from_dict(source.config)).eval()
    load_source(image_model, source)
    with torch.no_grad():
        assert max_diff(image_model(images), scaled(images), "timm ViT with layer scale, logits") <= TOL
    model2 = build_model(ModelConfig.from_dict(dict(source.config, model_type="factorised_encoder", num_frames=4,
                                                    tubelet_size=2, temporal_depth=1))).eval()
    report = load_source(model2, source)
    assert report.missing_keys and all(k.startswith("temporal_") for k in report.missing_keys)
    with torch.no_grad():  # the spatial encoder on one time step = the image model's features
        tokens, _ = model2.tokenizer(images.unsqueeze(2).expand(-1, -1, 4, -1, -1))
        spatial = model2.encoder(model2.pos(tokens[:, :16], (1, 4, 4)), (1, 4, 4))[0]
        assert max_diff(spatial, image_model.forward_features(images), "Model 2 spatial encoder") <= TOL
    model3 = build_model(ModelConfig.from_dict(dict(source.config, model_type="factorised_self_attention", pool="gap",
                                                    num_frames=4, tubelet_size=2)))
    report = load_source(model3, source)
    assert {k.split(".", 3)[-1] for k in report.missing_keys} == {"norm_t.weight", "norm_t.bias"}
    assert torch.equal(model3.encoder.blocks[1].attn_t.proj.weight, model3.encoder.blocks[1].attn.proj.weight)


def test_timm_local_files(timm_vit, images, tmp_path):
    """A timm state dict saved as .pth (wrapped, DDP prefix) or .safetensors loads without timm's model."""
    from safetensors.torch import save_file

    state = timm_vit.state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "vit.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "vit.safetensors")
    for name in ("vit.pth", "vit.safetensors"):
        model = build_model(ModelConfig.from_dict(timm_source(timm_vit, "x").config)).eval()
        report = load_pretrained(model, str(tmp_path / name))
        assert report.kind == "timm" and any("num_heads" in n for n in report.notes)
        with torch.no_grad():
            assert max_diff(model(images), timm_vit(images), f"timm file {name}") <= TOL
    with pytest.raises(UserError, match="num_heads"):
        pretrained_model(str(tmp_path / "vit.pth"))


def test_timm_mismatches_are_clear(timm_vit):
    source = timm_source(timm_vit, "timm:vit_tiny")
    small = dict(image_size=64, num_frames=2)
    with pytest.raises(UserError, match=r"has embed_dim=192, the model 384: set model.embed_dim=192"):
        load_source(create_model("vivit_ti16x2", embed_dim=384, num_heads=6, depth=2, **small), source)
    with pytest.raises(UserError, match="has depth=2, the model 4"):
        load_source(create_model("vivit_ti16x2", depth=4, **small), source)
    with pytest.raises(UserError, match=r"timm ViT weights do not fit the model: depth 2 \(model 4\)"):
        convert_timm_vit(timm_vit.state_dict(), create_model("vivit_ti16x2", depth=4, **small).config)
    model = create_model("vivit_ti16x2", depth=2, num_classes=7, num_frames=2, image_size=64)  # tanh GELU
    report = load_source(model, source)
    assert any("gelu_approximate='none'" in n for n in report.notes)


# --------------------------------------------------------------------------- transformers
@pytest.fixture(scope="module")
def hf_vivit():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                      num_labels=5, id2label={i: f"action_{i}" for i in range(5)})
    return perturb(transformers.VivitForVideoClassification(config))


@pytest.fixture(scope="module")
def clips():
    return torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))  # ours: [B, C, F, H, W]


def hf_logits(net, clips):
    with torch.no_grad():
        return net(pixel_values=clips.transpose(1, 2)).logits  # transformers: [B, F, C, H, W]


def test_hf_vivit_parity_through_from_pretrained(hf_vivit, clips, tmp_path):
    """The real `hf:` path (transformers' from_pretrained), offline on a locally saved reference."""
    hf_vivit.save_pretrained(tmp_path / "vivit")
    model, report = pretrained_model(f"hf:{tmp_path / 'vivit'}")
    cfg = model.config
    assert (cfg.gelu_approximate, cfg.norm_eps, cfg.tubelet_size, cfg.patch_size, cfg.num_frames) == \
        ("tanh", 1e-6, 2, 8, 8)
    assert report.missing_keys == {} and report.unexpected_keys == {}
    assert report.classes == [f"action_{i}" for i in range(5)]
    with torch.no_grad():
        assert max_diff(model.eval()(clips), hf_logits(hf_vivit, clips), "transformers ViViT vs Model 1") <= TOL
    # the same folder as a plain path (read without transformers' model classes)
    again = build_model(cfg).eval()
    assert load_pretrained(again, str(tmp_path / "vivit")).kind == "hf"
    with torch.no_grad():
        assert torch.equal(again(clips), model(clips))


def test_hf_transformers4_names(hf_vivit, clips):
    """Checkpoints saved by transformers 4 (encoder.layer.N.attention.attention.query, ...) convert the same."""
    renamed = {}
    for key, value in hf_vivit.state_dict().items():
        key = key.replace("vivit.layers.", "vivit.encoder.layer.")
        for new, old in (("q_proj", "attention.query"), ("k_proj", "attention.key"), ("v_proj", "attention.value"),
                         ("o_proj", "output.dense")):
            key = key.replace(f"attention.{new}", f"attention.{old}")
        key = key.replace("mlp.fc1", "intermediate.dense").replace("mlp.fc2", "output.dense")
        renamed[key] = value
    assert {"vivit.encoder.layer.1.attention.attention.query.bias", "vivit.encoder.layer.0.output.dense.weight",
            "vivit.encoder.layer.0.attention.output.dense.bias"} <= set(renamed)
    source = hf_source(hf_vivit.state_dict(), hf_vivit.config.to_dict(), "hf")
    cfg = ModelConfig.from_dict(source.config)
    a = convert_hf_vivit(hf_vivit.state_dict(), cfg).state
    b = convert_hf_vivit(renamed, cfg).state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_hf_into_token_learner_model_with_fewer_frames(hf_vivit, clips):
    """Another frame count and a TokenLearner 'gap' model: table resampled in time, class token dropped."""
    source = hf_source(hf_vivit.state_dict(), hf_vivit.config.to_dict(), "hf")
    model = build_model(ModelConfig.from_dict(dict(source.config, num_frames=4, pool="gap", token_learner="v1.1",
                                                   num_tokens=2, token_learner_loc=1, num_classes=3)))
    report = load_source(model, source)
    assert set(report.unexpected_keys) == {"embeddings.cls_token", "classifier.weight", "classifier.bias"}
    assert any("(4, 4, 4) -> (2, 4, 4)" in n for n in report.notes)
    assert model(clips[:, :, :4]).shape == (2, 3)


def test_hf_vivit_model_without_classifier(tmp_path, clips):
    transformers = pytest.importorskip("transformers")
    config = transformers.VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=64,
                                      num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)
    perturb(transformers.VivitModel(config)).save_pretrained(tmp_path / "base")
    model, report = pretrained_model(f"hf:{tmp_path / 'base'}", num_classes=4)
    assert set(report.missing_keys) == {"head.weight", "head.bias"}  # transformers' fresh classifier is not used
    report = load_pretrained(model, str(tmp_path / "base"))  # the raw weights hold the pooler: reported unused
    assert set(report.unexpected_keys) == {"pooler.dense.weight", "pooler.dense.bias"}


# --------------------------------------------------------------------------- vivit-tl model files, errors
def test_vivit_tl_model_file_to_other_config(tmp_path):
    """Fine-tune one of our models elsewhere: same config is exact; other classes/frames/TokenLearner adapt."""
    torch.manual_seed(0)
    small = dict(embed_dim=32, num_heads=2, mlp_dim=64, depth=2, num_frames=4, image_size=32, patch_size=8)
    src = perturb(create_model("vivit_ti16x2", num_classes=3, **small))
    save_model_file(tmp_path / "m", src, classes=["a", "b", "c"], data_config={"mean": [0.5] * 3, "std": [0.5] * 3},
                    step=0, epoch=0)
    same = create_model("vivit_ti16x2", num_classes=3, **small)
    report = load_pretrained(same, str(tmp_path / "m"))
    assert report.kind == "vivit_tl" and report.missing_keys == {} and report.classes == ["a", "b", "c"]
    assert report.preprocessing == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in same.state_dict().items())
    other = create_model("vivit_b16x2_tl8", num_classes=10, **dict(small, num_frames=8))
    report = load_pretrained(other, str(tmp_path / "m" / "model.safetensors"))
    assert set(report.unexpected_keys) == {"pos.cls_token", "head.weight", "head.bias"}
    assert any("token_learner" in k for k in report.missing_keys)
    assert torch.equal(other.state_dict()["encoder.blocks.1.mlp.fc1.weight"], src.encoder.blocks[1].mlp.fc1.weight)


def test_bad_specs(tmp_path, monkeypatch):
    model = create_model("vivit_ti16x2", depth=1, num_frames=2, image_size=32)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pretrained(model, str(tmp_path / "nothing.pth"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="unknown weights file type"):
        load_pretrained(model, str(tmp_path / "notes.txt"))
    (tmp_path / "broken.pth").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cannot read weights"):
        load_pretrained(model, str(tmp_path / "broken.pth"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a timm ViT, transformers ViViT or vivit-tl"):
        load_pretrained(model, str(tmp_path / "other.pth"))
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(UserError, match=r"optional package 'timm'.*pip install"):
        load_pretrained(model, "timm:vit_base_patch16_224")


def test_hf_spec_of_another_model_type(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match="'bert' is not a transformers ViViT"):
        load_pretrained(create_model("vivit_ti16x2", depth=1, num_frames=2, image_size=32), f"hf:{tmp_path}")
