"""The fine-tuning regularisation recipe: clip augmentations (colour jitter, greyscale, RandAugment, random
erasing), mixup / CutMix targets, the EMA of the weights, layer-wise lr decay and the mean class accuracy;
and one tiny run with all of them on, killed and resumed, that must end like an uninterrupted one.
"""

from __future__ import annotations

import json
import signal

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torchvision import tv_tensors

from vivit_tl.config import OptimConfig, load_config
from vivit_tl.data import DataConfig
from vivit_tl.data.transforms import clip_eraser, to_model_input, train_transform
from vivit_tl.engine.evaluation import EvalResult, mean_class_accuracy
from vivit_tl.engine.metrics_log import read_metrics
from vivit_tl.engine.optim import build_optimizer, build_scheduler, describe_param_groups, layer_ids, param_groups
from vivit_tl.engine.regularization import build_batch_mixer, build_ema, dominant_label, mix_batch
from vivit_tl.engine.trainer import CRASH_AFTER_STEPS_ENV
from vivit_tl.errors import UserError
from vivit_tl.models import create_model

import test_train
from test_train import run_tool

tiny = test_train.tiny  # the tiny-config fixture (its generated dataset is shared with test_train)

SEEDS = range(40)


def data_config(**keys) -> DataConfig:
    """32 px clips whose crop is the identity (only the keys under test change a clip)."""
    return DataConfig(image_size=32, short_side=32, scale_jitter=[1.0, 1.0], **keys)


def still_clip(frames: int = 4, seed: int = 0) -> tv_tensors.Video:
    """A uint8 video ``[F, 3, 32, 32]`` of one random frame repeated."""
    frame = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return tv_tensors.Video(frame.repeat(frames, 1, 1, 1))


def augmented(cfg: DataConfig, clip: torch.Tensor, seed: int) -> torch.Tensor:
    """The normalised training clip ``[3, F, H, W]`` that ``cfg``'s transforms make of ``clip`` under ``seed``."""
    torch.manual_seed(seed)
    out = to_model_input(train_transform(cfg)(clip), cfg)
    eraser = clip_eraser(cfg)
    return out if eraser is None else eraser(out)


# --------------------------------------------------------------------------- clip augmentations
@pytest.mark.parametrize("keys", [dict(color_jitter=1.0), dict(grayscale=1.0), dict(rand_augment=[2, 9]),
                                  dict(random_erasing=1.0),
                                  dict(color_jitter=0.8, grayscale=0.2, rand_augment=[3, 10], random_erasing=0.5)])
def test_each_augmentation_changes_the_clip_the_same_way_on_every_frame(keys):
    cfg, plain = data_config(**keys), data_config()
    clip = still_clip()
    changed = 0
    for seed in SEEDS:
        out = augmented(cfg, clip, seed)  # [3, F, H, W]
        assert all(torch.equal(out[:, 0], out[:, f]) for f in range(1, out.shape[1])), f"frames differ (seed {seed})"
        changed += not torch.equal(out, augmented(plain, clip, seed))
    assert changed >= len(SEEDS) // 2  # the key does something (RandAugment's identity op aside)


def test_grayscale_drops_the_colour_and_erasing_fills_one_rectangle_with_noise():
    clip = still_clip()
    grey = augmented(data_config(grayscale=1.0, mean=None, std=None), clip, 0)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    plain, erased = augmented(data_config(), clip, 3), augmented(data_config(random_erasing=1.0), clip, 3)
    changed = (plain != erased).any(dim=(0, 1))  # [H, W]
    rows, cols = changed.any(dim=1).nonzero().flatten(), changed.any(dim=0).nonzero().flatten()
    assert 0 < changed.sum() < changed.numel()
    assert changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one filled rectangle
    assert 0.5 < erased[:, 0][:, changed].std() < 1.5  # standard normal noise


def test_augmentation_keys_are_validated():
    for keys in (dict(color_jitter=1.5), dict(grayscale=-0.1), dict(rand_augment=[2]), dict(rand_augment=[2, 11]),
                 dict(random_erasing=0.25, train_crop="batch_crop")):
        with pytest.raises(ValueError):
            data_config(**keys)
    with pytest.raises(UserError, match="optim.ema_decay"):
        load_config(None, ["optim.ema_decay=1.0"])
    with pytest.raises(UserError, match="optim.layer_decay"):
        load_config(None, ["optim.layer_decay=0"])


# --------------------------------------------------------------------------- mixup / CutMix
def batch(size: int = 6, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(size, 3, 4, 16, 16, generator=generator), torch.tensor([0, 1, 2, 3, 4, 0][:size])


def test_mixup_mixes_whole_clips_with_lambda_and_targets_sum_to_one():
    clips, labels = batch()
    torch.manual_seed(0)
    mixed, targets = mix_batch(build_batch_mixer(OptimConfig(mixup_alpha=0.8), 5), clips, labels)
    lam = targets[1, labels[1]].item()  # clip 1 (label 1) is mixed with clip 0 (label 0)
    assert mixed.shape == clips.shape and mixed.is_contiguous()
    torch.testing.assert_close(mixed, lam * clips + (1 - lam) * clips.roll(1, 0))
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
    assert torch.equal(dominant_label(targets), torch.where(torch.tensor(lam >= 0.5), labels, labels.roll(1, 0)))


def test_cutmix_cuts_one_box_through_every_frame_and_its_area_is_the_target_share():
    clips, labels = batch()
    for seed in range(10):
        torch.manual_seed(seed)
        mixed, targets = mix_batch(build_batch_mixer(OptimConfig(cutmix_alpha=1.0), 5), clips, labels)
        pasted = (mixed != clips).any(dim=0)  # [3, F, H, W]: where a neighbour's pixels are
        assert all(torch.equal(pasted[c, f], pasted[0, 0]) for c in range(3) for f in range(4))  # H, W cut only
        torch.testing.assert_close(mixed[:, :, :, pasted[0, 0]], clips.roll(1, 0)[:, :, :, pasted[0, 0]])
        own = 1 - pasted[0, 0].double().mean().item()
        torch.testing.assert_close(targets[2], own * F.one_hot(labels[2], 5) + (1 - own) * F.one_hot(labels[1], 5))
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))


def test_mixup_and_cutmix_together_pick_one_per_batch():
    clips, labels = batch()
    mixer = build_batch_mixer(OptimConfig(mixup_alpha=0.8, cutmix_alpha=1.0), 5)
    kinds = set()
    for seed in range(20):
        torch.manual_seed(seed)
        mixed, _ = mix_batch(mixer, clips, labels)
        kinds.add("cutmix" if ((mixed == clips) | (mixed == clips.roll(1, 0))).all() else "mixup")
    assert kinds == {"mixup", "cutmix"}
    assert build_batch_mixer(OptimConfig(), 5) is None


def test_label_smoothing_applies_to_the_mixed_targets():
    """nn.CrossEntropyLoss(label_smoothing=s) on mixed targets == timm's mixup_target (smooth, then mix)."""
    clips, labels = batch()
    torch.manual_seed(0)
    _, targets = mix_batch(build_batch_mixer(OptimConfig(mixup_alpha=0.8), 5), clips, labels)
    lam, s = targets[1, 1].item(), 0.1
    smooth = F.one_hot(labels, 5) * (1 - s) + s / 5  # [B, C]
    timm_target = lam * smooth + (1 - lam) * smooth.roll(1, 0)
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    expected = -(timm_target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(torch.nn.CrossEntropyLoss(label_smoothing=s)(logits, targets), expected)


# --------------------------------------------------------------------------- EMA
def tiny_model(**overrides):
    keys = dict(num_classes=3, num_frames=4, image_size=32, patch_size=16, embed_dim=32, depth=3, num_heads=2,
                mlp_dim=64, pool="gap", token_learner="v1.1", num_tokens=4, token_learner_loc=1)
    return create_model("vivit_ti16x2", **{**keys, **overrides})


def test_ema_follows_its_formula():
    decay, model = 0.9, tiny_model()
    ema = build_ema(model, decay)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = None
    for step in range(4):
        model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update_parameters(model)
        weights = {n: p.detach().clone() for n, p in model.named_parameters()}
        expected = weights if expected is None else {n: decay * expected[n] + (1 - decay) * weights[n] for n in weights}
    averaged = dict(ema.module.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, msg=name)
    assert not torch.equal(averaged["head.weight"], model.head.weight)
    assert build_ema(model, None) is None


# --------------------------------------------------------------------------- layer decay
def test_layer_decay_gives_each_layer_its_learning_rate():
    model, decay, lr = tiny_model(), 0.5, 1e-3
    groups = build_optimizer(model, OptimConfig(lr=lr, layer_decay=decay, weight_decay=0.05)).param_groups
    lr_of = {name: g["lr"] for g in groups for name, p in model.named_parameters() if any(p is q for q in g["params"])}
    depth = 3  # L = 3 blocks: the embeddings are layer 0, block i is i + 1, the head is L + 1 = 4
    assert lr_of["tokenizer.proj.weight"] == lr_of["pos.pos_embed"] == pytest.approx(lr * decay ** (depth + 1))
    assert lr_of["encoder.blocks.0.attn.qkv.weight"] == pytest.approx(lr * decay ** depth)
    assert lr_of["encoder.token_learner.norm.weight"] == pytest.approx(lr * decay ** (depth - 1))  # feeds block 1
    assert lr_of["encoder.blocks.2.mlp.fc2.bias"] == pytest.approx(lr * decay)
    assert lr_of["head.weight"] == lr_of["encoder.norm.weight"] == pytest.approx(lr)
    for g in groups:  # weight decay as without layer decay
        assert g["weight_decay"] == (0.05 if g["name"].endswith("/decay") else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # the schedule scales every group alike
    optimizer = torch.optim.AdamW(groups)
    scheduler = build_scheduler(optimizer, OptimConfig(lr=lr, epochs=2, warmup_epochs=1), 10)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert groups[0]["lr"] / groups[-1]["lr"] == pytest.approx(decay ** (depth + 1))
    table = describe_param_groups(groups)
    assert table.splitlines()[0].split() == ["group", "lr", "scale", "weight", "decay", "tensors"]
    assert "layer_0/no_decay" in table and "layer_4/decay" in table


def test_layer_ids_of_the_factorised_encoder_stack_temporal_after_spatial():
    model = create_model("vivit_ti16x2", num_classes=3, num_frames=4, image_size=32, patch_size=16, embed_dim=32,
                         depth=2, num_heads=2, mlp_dim=64, model_type="factorised_encoder", temporal_depth=2)
    ids, num_layers = layer_ids(model)
    assert num_layers == 4
    assert ids["pos.cls_token"] == 0 and ids["encoder.blocks.1.norm1.weight"] == ids["encoder.norm.weight"] == 2
    assert ids["temporal_pos.pos_embed"] == ids["temporal_encoder.blocks.0.attn.qkv.weight"] == 3
    assert ids["temporal_encoder.norm.weight"] == ids["head.bias"] == 5


def test_without_layer_decay_the_two_groups_stay():
    groups = param_groups(tiny_model(), 0.05)
    assert [g["name"] for g in groups] == ["decay", "no_decay"] and all(g["lr_scale"] == 1 for g in groups)


# --------------------------------------------------------------------------- mean class accuracy
def test_mean_class_accuracy_by_hand():
    # true 0 0 0 1 1 2 3 3 ; predicted 0 0 1 1 3 2 3 0 -> recalls 2/3, 1/2, 1/1, 1/2; class 4 never occurs
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    pred = torch.tensor([0, 0, 1, 1, 3, 2, 3, 0])
    logits = F.one_hot(pred, 5).double()
    result = EvalResult(logits, labels, torch.ones(8, dtype=torch.int64), 8, list("abcde"))
    summary = result.summary()
    assert summary["mean_class_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1 + 1 / 2) / 4)
    assert summary["top1"] == pytest.approx(5 / 8)
    # a class that is predicted but has no samples counts 0 (mmaction2's confusion matrix covers it)
    pred[-1] = 4
    assert mean_class_accuracy(EvalResult(F.one_hot(pred, 5).double(), labels, torch.ones(8, dtype=torch.int64), 8,
                                          list("abcde")).confusion()) == pytest.approx((2 / 3 + 1 / 2 + 1 + 1 / 2) / 5)


# --------------------------------------------------------------------------- a run with the whole recipe
RECIPE = ["optim.epochs=1", "optim.mixup_alpha=0.8", "optim.cutmix_alpha=1.0", "optim.ema_decay=0.9",
          "optim.layer_decay=0.75", "data.color_jitter=0.8", "data.grayscale=0.2", "data.rand_augment=[2,9]",
          "data.random_erasing=0.25"]


def test_recipe_run_saves_the_ema_and_resumes_it_exactly(tiny):
    runs = tiny.parent / "runs"
    full = run_tool("tools/train.py", "--config", str(tiny), "run.name=recipe_full", *RECIPE)
    assert full.returncode == 0, full.stderr[-3000:]
    assert "parameter groups:" in full.stdout and "layer_0/no_decay" in full.stdout
    assert "EMA val top-1" in full.stdout and "mean class" in full.stdout
    full_dir = runs / "recipe_full"
    for name in ("best_ema", "last_ema", "best", "last"):
        assert (full_dir / name / "model.safetensors").is_file(), name
    records = read_metrics(full_dir / "metrics.jsonl")
    assert any("val_ema/top1" in r for r in records) and any("val/mean_class_acc" in r for r in records)
    assert 0 <= records[0]["train/acc"] <= 1

    # 8 steps, checkpoints every 3: killed after step 5, resumed from step 3
    killed = run_tool("tools/train.py", "--config", str(tiny), "run.name=recipe_killed", *RECIPE,
                      env={CRASH_AFTER_STEPS_ENV: "5"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    killed_dir = runs / "recipe_killed"
    state = json.loads(sorted((killed_dir / "checkpoints").iterdir())[-1].joinpath("train_state.json").read_text())
    assert state["global_step"] == 3
    resumed = run_tool("tools/train.py", "--config", str(tiny), "run.name=recipe_killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("last", "last_ema", "best_ema"):
        a = load_file(str(full_dir / name / "model.safetensors"))
        b = load_file(str(killed_dir / name / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: the resumed run ended with other weights"
    ema, last = (load_file(str(full_dir / n / "model.safetensors")) for n in ("last_ema", "last"))
    assert not torch.equal(ema["head.weight"], last["head.weight"])
