"""End-to-end runs of tools/train.py and tools/eval.py on a tiny generated video dataset (and on an image
folder: the single-frame case), plus the optimiser, schedule and reproducible-loader units they rely on.

The runs are subprocesses (as users run them): a real SIGKILL mid-epoch followed by ``--resume``
must end with exactly the weights and metrics of an uninterrupted run; a 2-process
``accelerate launch`` must train, save and evaluate; ``tools/eval.py`` under 2 processes must
count every sample once and agree with 1 process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vivit_tl.config import load_config
from vivit_tl.data import build_dataset, dataset_root, prepare_dataset
from vivit_tl.engine.loader import EpochSampler, SeededDataset, build_train_loader
from vivit_tl.errors import UserError
from vivit_tl.engine.metrics_log import read_metrics
from vivit_tl.engine.trainer import CRASH_AFTER_STEPS_ENV
from vivit_tl.engine.optim import build_optimizer, lr_factor, param_groups
from vivit_tl.models import create_model

from video_utils import make_image_folder

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = """
model:
  name: vivit_ti16x2
  embed_dim: 32
  depth: 2
  num_heads: 2
  mlp_dim: 64
  patch_size: 8
  tubelet_size: 2
  pool: gap
  token_learner: v1.1
  num_tokens: 4
  token_learner_loc: 1
  drop_rate: 0.1            # dropout on: resume must restore the RNG states too
data:
  kind: synthetic
  cache_dir: {cache}
  synthetic: {{size: 32, frames: 8, train_per_class: 4, val_per_class: 2, workers: 0}}
  num_frames: 4
  frame_stride: 2
  image_size: 32
  short_side: 32
  hflip: false
  scale_jitter: [1.0, 1.2]  # random augmentation on: resume must reproduce it
  num_workers: 0
optim:
  epochs: 2
  batch_size: 4
  warmup_epochs: 0.5
  grad_clip: 1.0
  label_smoothing: 0.1
run:
  name: tiny
  output_dir: {runs}
  log_every_steps: 2
  save_every_steps: 3
"""
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny config file; its synthetic dataset (8 classes x (4 train + 2 val) videos) is generated."""
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(cache=root / "cache", runs=root / "runs"))
    prepare_dataset(load_config(path).data)
    return path


def run_tool(*args: str, launch: list[str] | None = None, timeout: int = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIVIT_TL_DEBUG": "", "OMP_NUM_THREADS": "1", **(env or {})}
    command = [*(launch or [sys.executable]), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "last" / "model.safetensors"))


# --------------------------------------------------------------------------- end to end
def test_kill_mid_epoch_and_resume_matches_uninterrupted_run(tiny):
    runs = tiny.parent / "runs"
    full = run_tool("tools/train.py", "--config", str(tiny), "run.name=full")
    assert full.returncode == 0, full.stderr[-3000:]
    full_dir = runs / "full"
    for name in ("config.yaml", "metrics.jsonl", "best/model.safetensors", "best/config.json",
                 "last/model.safetensors", "eval_val/report.json", "eval_val/confusion_matrix.png"):
        assert (full_dir / name).is_file(), name
    assert "vivit-tl eval" in full.stdout and "vivit-tl visualize" in full.stdout
    records = read_metrics(full_dir / "metrics.jsonl")
    assert all("step" in r and "epoch" in r for r in records)
    assert {"train/loss", "train/acc", "lr"} <= set(records[0]) and any("val/top1" in r for r in records)

    # 16 optimizer steps (8 per epoch); checkpoints every 3 steps: the kill after step 11 is mid-epoch 1
    killed = run_tool("tools/train.py", "--config", str(tiny), "run.name=killed", env={CRASH_AFTER_STEPS_ENV: "11"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    killed_dir = runs / "killed"
    latest = sorted(p.name for p in (killed_dir / "checkpoints").iterdir())[-1]
    assert latest == "step_00000009"  # mid-epoch: 1 step into epoch 1 ... resumed from here
    state = json.loads((killed_dir / "checkpoints" / latest / "train_state.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 1)
    assert not (killed_dir / "eval_val").exists()

    # the run's clock goes on from the checkpoint's (made large here to tell the segments apart)
    assert state["elapsed_s"] > 0
    state["elapsed_s"] = 1e6
    (killed_dir / "checkpoints" / latest / "train_state.json").write_text(json.dumps(state))
    started = time.monotonic()
    resumed = run_tool("tools/train.py", "--config", str(tiny), "run.name=killed", "--resume")
    resume_wall = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = weights(full_dir), weights(killed_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run ended with other weights"
    # the metrics log of the resumed run is that of the uninterrupted one (lines after step 9 replaced),
    # but for the clock
    resumed_records = read_metrics(killed_dir / "metrics.jsonl")
    clocks = [r.pop("time/elapsed_s") for r in resumed_records if "time/elapsed_s" in r]
    assert resumed_records == [{k: v for k, v in r.items() if k != "time/elapsed_s"} for r in records]
    assert 1e6 < clocks[-1] < 1e6 + resume_wall and clocks == sorted(clocks)
    assert json.loads((killed_dir / "eval_val" / "report.json").read_text())["top1"] == \
        json.loads((full_dir / "eval_val" / "report.json").read_text())["top1"]

    # a new run with the same name never overwrites: it goes to tiny-2
    again = run_tool("tools/train.py", "--config", str(tiny), "run.name=full", "optim.epochs=1")
    assert again.returncode == 0 and (runs / "full-2" / "last").is_dir()
    assert torch.equal(weights(full_dir)[next(iter(a))], a[next(iter(a))])


def test_resume_with_repeated_sampling_and_persistent_workers_matches_uninterrupted_run(tiny):
    """clips_per_video 2 and one persistent worker: 16 steps per epoch of 32 videos; killed after step 20
    (checkpoint at step 18, epoch 1), the resumed run ends with the uninterrupted run's weights."""
    runs = tiny.parent / "runs"
    options = ["data.clips_per_video=2", "data.num_workers=1", "run.log_every_steps=4"]
    full = run_tool("tools/train.py", "--config", str(tiny), "run.name=k2_full", *options)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = run_tool("tools/train.py", "--config", str(tiny), "run.name=k2_killed", *options,
                      env={CRASH_AFTER_STEPS_ENV: "20"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = json.loads((runs / "k2_killed" / "checkpoints" / "step_00000018" / "train_state.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 2)
    resumed = run_tool("tools/train.py", "--config", str(tiny), "run.name=k2_killed", *options, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(runs / "k2_full"), weights(runs / "k2_killed")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run ended with other weights"


def test_two_processes_train_save_and_evaluate_like_one(tiny):
    runs = tiny.parent / "runs"
    two = run_tool("tools/train.py", "--config", str(tiny), "run.name=ddp", "optim.epochs=1",
                   launch=[*LAUNCH, "--multi_gpu", "--num_processes", "2"])
    assert two.returncode == 0, two.stderr[-3000:]
    run_dir = runs / "ddp"
    assert (run_dir / "best" / "model.safetensors").is_file() and (run_dir / "eval_val" / "report.json").is_file()
    checkpoint = sorted((run_dir / "checkpoints").iterdir())[-1]
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}
    state = json.loads((checkpoint / "train_state.json").read_text())
    assert state["num_processes"] == 2 and state["global_step"] == 4  # 32 clips / (4 x 2) per step

    # evaluation: 16 videos x 2 clips = 32 items; 2 processes x batch 3 = 6 does not divide 32
    data = str(dataset_root(load_config(tiny).data))
    common = ["tools/eval.py", str(run_dir / "best"), data, "--batch-size", "3", "data.eval_clips=2"]
    one = run_tool(*common, "--out", str(run_dir / "eval1"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_tool(*common, "--out", str(run_dir / "eval2"), launch=[*LAUNCH, "--multi_gpu", "--num_processes", "2"])
    assert two.returncode == 0, two.stderr[-3000:]
    r1 = json.loads((run_dir / "eval1" / "report.json").read_text())
    r2 = json.loads((run_dir / "eval2" / "report.json").read_text())
    assert (r1["processes"], r2["processes"]) == (1, 2)
    assert "on 16 videos x 2 views" in one.stdout
    assert r1["num_items"] == r2["num_items"] == 32 and r1["num_evaluated"] == r2["num_evaluated"] == 16
    for key in ("top1", "top5", "per_class", "num_unreadable"):
        assert r1[key] == r2[key], key
    assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-6)
    p1 = (run_dir / "eval1" / "predictions.csv").read_text().splitlines()
    p2 = (run_dir / "eval2" / "predictions.csv").read_text().splitlines()
    assert [line.rsplit(",", 3)[0] for line in p1] == [line.rsplit(",", 3)[0] for line in p2]
    assert all(line.endswith(",2") for line in p1[1:])  # each video: exactly its 2 views

    # the same videos as a plain class folder (no generator meta.json): read as a video folder
    plain = run_dir / "plain_folder"
    shutil.copytree(Path(data) / "val", plain / "val")
    three = run_tool(*common[:2], str(plain), *common[3:], "--out", str(run_dir / "eval3"))
    assert three.returncode == 0, three.stderr[-3000:]
    assert "reading it as data.kind=video_folder" in three.stdout
    assert json.loads((run_dir / "eval3" / "report.json").read_text())["top1"] == r1["top1"]


def test_keras_cifar_config_trains_on_an_image_folder_as_one_frame_clips(tmp_path):
    """The CIFAR-10 TokenLearner config, shrunk, on an image folder: the same trainer and evaluator, 1-frame clips."""
    make_image_folder(tmp_path / "images", per_class=5)  # train: 2 x 5 (2 carved off as val), test: 2 x 5
    trained = run_tool("tools/train.py", "--config", "cifar10_vit_tl", "data.kind=image_folder",
                       f"data.root={tmp_path / 'images'}", "data.split_seed=0", "data.val_size=2", "data.num_workers=0",
                       "model.embed_dim=16", "model.num_heads=2", "model.mlp_dim=32", "model.depth=2",
                       "model.token_learner_loc=1", "model.num_tokens=2", "optim.epochs=1", "optim.batch_size=4",
                       f"run.output_dir={tmp_path / 'runs'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test: top-1" in trained.stdout and "on 10 images;" in trained.stdout
    assert "--shuffle-frames" not in trained.stdout  # no frame order to destroy in an image
    run_dir = tmp_path / "runs" / "cifar10_vit_tl"
    report = json.loads((run_dir / "eval_test" / "report.json").read_text())
    assert (report["num_evaluated"], report["views_per_video"]) == (10, 1)
    state = json.loads(sorted((run_dir / "checkpoints").iterdir())[-1].joinpath("train_state.json").read_text())
    assert state["global_step"] == 2  # 8 training images / batch 4
    saved = json.loads((run_dir / "best" / "config.json").read_text())["model_config"]
    assert (saved["num_frames"], saved["tubelet_size"], saved["token_learner"], saved["embed_dim"]) == (1, 1, "v1", 16)

    evaluated = run_tool("tools/eval.py", str(run_dir / "best"), str(tmp_path / "images"), "--split", "test",
                         "--out", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "(5 images)" in evaluated.stdout and "on 10 images\n" in evaluated.stdout
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["top1"] == report["top1"]


def test_bad_training_files_are_counted_over_all_processes(tiny, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset_root(load_config(tiny).data), data)
    bad = sorted((data / "train").glob("*/*.mp4"))[5]
    bad.write_bytes(b"not a video" * 10)
    two = run_tool("tools/train.py", "--config", str(tiny), "run.name=bad", f"run.output_dir={tmp_path}",
                   "optim.epochs=2", "data.kind=video_folder", f"data.root={data}",
                   launch=[*LAUNCH, "--multi_gpu", "--num_processes", "2"])
    assert two.returncode == 0, two.stderr[-3000:]
    counts = [r["train/bad_file_substitutions"] for r in read_metrics(tmp_path / "bad" / "metrics.jsonl")
              if "train/bad_file_substitutions" in r]
    assert counts == [1, 2]  # the bad clip is drawn once per epoch, by one process or the other
    assert "2 training clips replaced" in two.stdout and bad.name in two.stderr


def test_missing_data_folder_is_one_line_error(tiny, tmp_path):
    result = run_tool("tools/train.py", "--config", str(tiny), "data.kind=video_folder",
                      f"data.root={tmp_path / 'no_such_folder'}", f"run.output_dir={tmp_path}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no_such_folder" in lines[0], result.stderr
    assert not any(tmp_path.glob("*/config.yaml"))  # the failed run left no run folder behind


@pytest.mark.parametrize("name, damage", [
    ("optimizer.bin", lambda data: data[:50]),  # truncated
    ("optimizer.bin", lambda data: b"not a checkpoint" * 8),  # garbage
    ("model.safetensors", lambda data: data[: len(data) // 2]),  # truncated
])
def test_resume_from_corrupt_checkpoint_is_one_line_error(tiny, tmp_path, name, damage):
    source = sorted((tiny.parent / "runs" / "full" / "checkpoints").iterdir())[-1]
    run_dir = tmp_path / "run"
    shutil.copytree(source.parent.parent, run_dir)
    target = run_dir / "checkpoints" / source.name
    damaged = target / name
    damaged.write_bytes(damage(damaged.read_bytes()))
    result = run_tool("tools/train.py", "--resume", str(target))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot resume from {target}"), result.stderr


def test_resume_with_another_model_is_a_clear_error(tiny):
    run_dir = tiny.parent / "runs" / "full"
    result = run_tool("tools/train.py", "--resume", str(run_dir), "model.depth=3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is of another model" in lines[0] and "depth: 2 (checkpoint) vs 3 (now)" in lines[0]


# --------------------------------------------------------------------------- units
def test_weight_decay_groups_skip_norms_biases_and_positional_tables():
    model = create_model("vivit_ti16x2", num_classes=3, num_frames=4, image_size=32, patch_size=16, embed_dim=32,
                         depth=2, num_heads=2, mlp_dim=64)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(model.get_parameter(n).ndim > 1 for n in decayed)
    assert model.no_weight_decay() <= skipped
    assert any("pos" in n for n in skipped) and "head.weight" in decayed
    assert len(decayed) + len(skipped) == len(list(model.parameters()))


def tfa_adamw_steps(params: list[torch.Tensor], grads: list[list[torch.Tensor]], lr: float, weight_decay: float,
                    eps: float = 1e-7, betas: tuple[float, float] = (0.9, 0.999)) -> list[torch.Tensor]:
    """TF-Addons' AdamW (the Keras CIFAR-10 example's optimiser) written out: every variable first
    loses ``weight_decay * var`` (not scaled by the learning rate), then takes Keras' Adam step."""
    params = [p.detach().clone().double() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        lr_t = lr * (1 - betas[1] ** t) ** 0.5 / (1 - betas[0] ** t)
        for i, g in enumerate(step_grads):
            g = g.double()
            params[i] -= weight_decay * params[i]
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            params[i] -= lr_t * m[i] / (v[i].sqrt() + eps)
    return params


def test_keras_cifar_configs_use_tf_addons_adamw_weight_decay():
    """SPEC §5's "AdamW lr 1e-3, weight decay 1e-4" is tfa.optimizers.AdamW: 1e-4 of every variable per
    step. PyTorch's AdamW multiplies weight_decay by lr, so the Keras rows need 0.1 on all parameters."""
    cfg = load_config(REPO / "configs" / "cifar10_vit_tl.yaml")
    model = create_model(cfg.model.name, num_classes=10, **cfg.model.overrides)
    params = [p for p in model.parameters() if p.requires_grad]  # all but the fixed positional code
    fixed = model.pos.pos_embed.detach().clone()
    assert len(params) == len(list(model.parameters())) - 1
    generator = torch.Generator().manual_seed(0)
    # Gradients of magnitude 0.5-1.5: epsilon, which Keras applies outside the bias correction, stays negligible.
    grads = [[(torch.rand(p.shape, generator=generator) + 0.5) * torch.randn(p.shape, generator=generator).sign()
              for p in params] for _ in range(3)]
    expected = tfa_adamw_steps(params, grads, lr=1e-3, weight_decay=1e-4)
    optimizer = build_optimizer(model, cfg.optim)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
    # Weight decay of 1e-7 per step (1e-4 times lr), or norms and biases left undecayed, is off by ~3e-4 here.
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=0, atol=1e-6)
    assert torch.equal(model.pos.pos_embed, fixed)  # Keras held it as a constant: neither trained nor decayed


def test_warmup_then_cosine_schedule():
    values = [lr_factor(s, warmup_steps=4, total_steps=20, min_factor=0.1) for s in range(21)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4] == pytest.approx(1.0) and values[20] == pytest.approx(0.1)
    assert values[12] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert all(a >= b for a, b in zip(values[4:], values[5:]))


class RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(()).item(), np.random.rand(), random.random(), i


def test_seeded_items_do_not_depend_on_order_and_keep_the_callers_rng():
    dataset = SeededDataset(RandomItems(), seed=3)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    forward = [dataset[(2, i)] for i in range(10)]
    backward = [dataset[(2, i)] for i in reversed(range(10))][::-1]
    assert forward == backward
    assert torch.equal(torch.get_rng_state(), before)  # dropout's stream is untouched
    assert dataset[(3, 0)] != dataset[(2, 0)]  # a new epoch, new augmentation


def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch():
    sampler = EpochSampler(20, seed=5)
    sampler.set_epoch(4)
    first = list(sampler)
    sampler.set_epoch(0)
    list(sampler)
    sampler.set_epoch(4)
    assert list(sampler) == first and sorted(i for _, i in first) == list(range(20))
    assert {e for e, _ in first} == {4}


def test_repeated_sampling_batches_hold_batch_size_clips_of_every_video_once(tiny):
    cfg = dataclasses.replace(load_config(tiny).data, clips_per_video=2, num_workers=1)
    dataset = build_dataset(cfg, "train", train=True)
    loader = build_train_loader(dataset, data=cfg, batch_size=4, seed=0)
    assert loader.persistent_workers and len(loader) == len(dataset) // 2  # an epoch: every video once
    for epoch in range(2):  # the same (persistent) workers serve both epochs, each in its own order
        loader.batch_sampler.sampler.set_epoch(epoch)
        batches = list(loader)
        clips, labels, indices = batches[0]
        assert clips.shape == (4, 3, 4, 32, 32) and indices.tolist()[::2] == indices.tolist()[1::2]
        assert labels.tolist() == [dataset.labels[i] for i in indices.tolist()]
        assert not torch.equal(clips[0], clips[1])  # two clips of one video, augmented apart
        seen = torch.cat([b[2] for b in batches]).tolist()
        assert sorted(seen[::2]) == list(range(len(dataset)))
    with pytest.raises(UserError, match="multiple of data.clips_per_video=2"):
        build_train_loader(dataset, data=cfg, batch_size=3, seed=0)


def test_train_dataset_items_are_reproducible(tiny):
    cfg = load_config(tiny).data
    dataset = SeededDataset(build_dataset(cfg, "train", train=True), seed=0)
    a, b = dataset[(1, 5)], dataset[(1, 5)]
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_cpu_threads_default_to_the_cores_per_local_process(monkeypatch):
    from accelerate import PartialState

    from vivit_tl.engine.distributed import set_cpu_threads
    from vivit_tl.errors import UserError

    state, before = PartialState(cpu=True), torch.get_num_threads()
    try:
        assert set_cpu_threads(3, state) == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        alone = set_cpu_threads(None, state)
        assert 1 <= alone <= len(os.sched_getaffinity(0)) and torch.get_num_threads() == alone
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
        assert set_cpu_threads(None, state) == 1  # never fewer than one
        with pytest.raises(UserError, match="cpu_threads"):
            set_cpu_threads(0, state)
    finally:
        torch.set_num_threads(before)


def test_resume_followed_by_an_override_is_not_a_path():
    from viz_utils import load_tool

    parse = load_tool("train").parse_args
    args = parse(["--resume", "run.name=x", "optim.epochs=1"])
    assert (args.resume, args.overrides) == (True, ["run.name=x", "optim.epochs=1"])
    assert parse(["--resume", "runs/demo", "optim.epochs=1"]).resume == "runs/demo"
    assert parse(["optim.epochs=1", "--resume"]).resume is True and parse([]).resume is False
