"""The training loop: config -> data -> model -> optimiser -> loop -> eval -> save.

accelerate drives devices and processes (CPU, one GPU, DDP on many GPUs or nodes, mixed precision,
gradient accumulation, ``torch.compile``; FSDP and DeepSpeed are untested: the model files assume the
full parameters on every process). A run directory holds everything
(see :mod:`vivit_tl.checkpoint`); a run killed at any moment resumes from its latest checkpoint
with the same weights, optimiser, schedule, RNG states and position inside the epoch, so it ends
bit-identical to an uninterrupted run (same hardware and process count).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, is_tensorboard_available, set_seed
from safetensors import SafetensorError
from tqdm.auto import tqdm

from vivit_tl.checkpoint import (
    CheckpointDir,
    config_differences,
    load_model_file,
    read_train_state,
    save_model_file,
)
from vivit_tl.config import DATA_DERIVED_MODEL_FIELDS, TrainConfig, load_config
from vivit_tl.data import DataConfig, build_dataset, dataset_root, prepare_dataset
from vivit_tl.data.datasets import TooManyBadFiles
from vivit_tl.engine.distributed import make_accelerator, process_state, set_cpu_threads
from vivit_tl.engine.evaluation import EvalResult, accuracy_line, evaluate, write_report
from vivit_tl.engine.loader import build_eval_loader, build_train_loader
from vivit_tl.engine.metrics_log import METRICS_NAME, JsonlTracker, truncate_metrics
from vivit_tl.engine.optim import build_optimizer, build_scheduler, describe_param_groups
from vivit_tl.engine.regularization import build_batch_mixer, build_ema, dominant_label, mix_batch
from vivit_tl.errors import UserError
from vivit_tl.models import VideoTransformer, create_model, model_config
from vivit_tl.pretrained import load_pretrained

CONFIG_NAME = "config.yaml"
BEST_DIR, LAST_DIR, CHECKPOINTS_DIR = "best", "last", "checkpoints"
BEST_EMA_DIR, LAST_EMA_DIR = "best_ema", "last_ema"  # the EMA weights (optim.ema_decay)


@dataclass
class TrainOutcome:
    """What a finished run produced."""

    run_dir: Path
    best_model: Path  # model folder evaluated at the end (best val, or last)
    final_split: str
    final_metrics: dict[str, Any]
    best_val_top1: float | None
    report_dir: Path
    data_root: Path  # the dataset folder (for vivit-tl eval)
    example_file: Path | None  # one evaluation video/image (for vivit-tl visualize)
    data: DataConfig  # the run's data config (frames per clip; videos or images)


# --------------------------------------------------------------------------- run directory
def find_resume_target(path: str | Path) -> tuple[Path, Path | None]:
    """``(run_dir, checkpoint)`` for ``--resume PATH``: a run directory or one of its checkpoints."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume: no run directory or checkpoint at {path}")
    if (path / "train_state.json").is_file():
        return path.parent.parent, path
    if (path / CONFIG_NAME).is_file() or (path / CHECKPOINTS_DIR).is_dir():
        return path, latest_checkpoint(path)
    raise UserError(f"--resume: {path} is neither a run directory (with {CONFIG_NAME}) nor a checkpoint")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, after cleaning up what a killed save left (main process only)."""
    checkpoints = CheckpointDir(run_dir / CHECKPOINTS_DIR)
    checkpoints.clean_partial()
    return checkpoints.latest()


def load_run_config(run_dir: Path, overrides: list[str]) -> TrainConfig:
    """The saved config of a run, with command-line overrides on top."""
    saved = run_dir / CONFIG_NAME
    if not saved.is_file():
        raise FileNotFoundError(f"--resume: {run_dir} has no {CONFIG_NAME}")
    return load_config(saved, overrides)


def fresh_run_dir(output_dir: str | Path, name: str) -> Path:
    """``output_dir/name``, or ``name-2``, ``name-3``... when that run already has results."""
    base = Path(output_dir) / name
    candidate, n = base, 1
    while (candidate / CHECKPOINTS_DIR).exists() or (candidate / METRICS_NAME).exists():
        n += 1
        candidate = base.with_name(f"{name}-{n}")
    return candidate


def _broadcast(value: Any) -> Any:
    """``value`` of the main process, on every process."""
    box = [value]
    broadcast_object_list(box)
    return box[0]


# --------------------------------------------------------------------------- model
def model_overrides(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """The model section's overrides plus the fields the data decides (conflicts are errors)."""
    derived = {"num_classes": num_classes, "num_frames": cfg.data.num_frames, "image_size": cfg.data.image_size}
    for key in DATA_DERIVED_MODEL_FIELDS:
        if key in cfg.model.overrides and cfg.model.overrides[key] != derived[key]:
            source = "the number of classes in the data" if key == "num_classes" else f"data.{key}={derived[key]}"
            raise UserError(f"model.{key}={cfg.model.overrides[key]} contradicts {source}; remove model.{key}")
    return {**cfg.model.overrides, **derived}


def check_model_config(cfg: TrainConfig) -> None:
    """Validate model name + overrides against the data shapes before any data is prepared."""
    try:
        model_config(cfg.model.name, **model_overrides(cfg, num_classes=cfg.model.overrides.get("num_classes", 2)))
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise UserError(f"model section: {exc}") from None


# --------------------------------------------------------------------------- the run
#: Environment variable for crash-and-resume tests: a positive N kills the process (SIGKILL) right after
#: optimizer step N, as a power cut would. Unset or 0 in normal use.
CRASH_AFTER_STEPS_ENV = "VIVIT_TL_CRASH_AFTER_STEPS"


class Trainer:
    """One training run. ``Trainer(cfg, run_dir, checkpoint).fit()``."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, checkpoint: Path | None):
        self.cfg = cfg
        self.run_dir = run_dir
        self.resume_from = checkpoint
        # crash tests: SIGKILL right after this optimizer step (see CRASH_AFTER_STEPS_ENV)
        self.crash_after_step = int(os.environ.get(CRASH_AFTER_STEPS_ENV) or 0)
        # the run's wall time, across resumes (None: resumed from a checkpoint that did not record it)
        self.clock_start, self.elapsed_before = time.monotonic(), 0.0
        trackers: list[Any] = [JsonlTracker(run_dir / METRICS_NAME)]
        if is_tensorboard_available():
            trackers.append("tensorboard")
        run = cfg.run
        self.accelerator = make_accelerator(
            mixed_precision=run.mixed_precision,
            gradient_accumulation_steps=cfg.optim.grad_accum_steps,
            log_with=trackers,
            project_dir=str(run_dir),
            step_scheduler_with_optimizer=False,  # stepped once per optimizer step, below
            dynamo_backend="inductor" if run.compile else None,
        )
        self.checkpoints = CheckpointDir(run_dir / CHECKPOINTS_DIR, keep_last=run.keep_last)

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        with acc.main_process_first(), acc.local_main_process_first():
            prepare_dataset(cfg.data)
        self.train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
        self.val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
        self.classes = list(self.train_set.classes)
        if list(self.val_set.classes) != self.classes:
            raise UserError(f"split {cfg.data.val_split!r} has other classes than {cfg.data.train_split!r}")
        set_seed(cfg.run.seed)  # same initial weights on every process
        model = create_model(cfg.model.name, **model_overrides(cfg, len(self.classes)))
        if cfg.model.init_from and self.resume_from is None:
            with acc.main_process_first():  # the main process downloads, the others read its cache
                report = load_pretrained(model, cfg.model.init_from)
            acc.print(report.summary())
        optimizer = build_optimizer(model, cfg.optim)
        acc.print("parameter groups:\n" + describe_param_groups(optimizer.param_groups))
        per_process = cfg.optim.batch_size
        train_loader = build_train_loader(self.train_set, data=cfg.data, batch_size=per_process, seed=cfg.run.seed)
        val_loader = build_eval_loader(
            self.val_set, batch_size=cfg.optim.eval_batch_size or per_process, num_workers=cfg.data.num_workers
        )
        self.sampler = train_loader.batch_sampler.sampler
        model, optimizer, train_loader, val_loader = acc.prepare(model, optimizer, train_loader, val_loader)
        if len(train_loader) == 0:
            raise UserError(
                f"the {cfg.data.train_split!r} split has {len(self.train_set)} samples, fewer than one batch "
                f"({per_process} per process x {acc.num_processes} processes): lower optim.batch_size"
            )
        self.steps_per_epoch = math.ceil(len(train_loader) / cfg.optim.grad_accum_steps)
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        scheduler = build_scheduler(optimizer, cfg.optim, self.steps_per_epoch)
        self.scheduler = acc.prepare(scheduler)
        self.model, self.optimizer, self.train_loader, self.val_loader = model, optimizer, train_loader, val_loader
        # with mixup/CutMix the targets are soft [B, C]; the smoothing then applies to the mixed targets
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        self.mixer = build_batch_mixer(cfg.optim, len(self.classes))
        self.ema = build_ema(acc.unwrap_model(model, keep_torch_compile=False), cfg.optim.ema_decay)
        if self.ema is not None:
            acc.register_for_checkpointing(self.ema)  # resumable: part of every checkpoint
        set_seed(cfg.run.seed, device_specific=True)  # each process its own dropout stream
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.best: dict[str, Any] = {"val/top1": None, "step": None, "epoch": None}
        self.best_ema: dict[str, Any] = dict(self.best)
        self.window = torch.zeros(3, device=acc.device)  # train loss sum, correct, count since the last log
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
        elif acc.is_main_process:
            (self.run_dir / METRICS_NAME).unlink(missing_ok=True)
        acc.init_trackers("tensorboard", config=_flat(cfg.to_dict()))

    @property
    def unwrapped(self) -> VideoTransformer:
        return self.accelerator.unwrap_model(self.model)

    def elapsed_s(self) -> float | None:
        """Wall time of this run so far: this process's, plus that of the segments before a resume."""
        return None if self.elapsed_before is None else self.elapsed_before + time.monotonic() - self.clock_start

    def clock_record(self) -> dict[str, float]:
        """``{"time/elapsed_s": ...}`` for a metrics line, empty when the run's total time is unknown."""
        elapsed = self.elapsed_s()
        return {} if elapsed is None else {"time/elapsed_s": elapsed}

    # ----------------------------------------------------------------- checkpoints
    def train_state(self, log_window: list[float]) -> dict[str, Any]:
        """What ``train_state.json`` records besides accelerate's files."""
        return {
            "format": "vivit_tl.train_state",
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "best": self.best,
            "best_ema": self.best_ema,
            "log_window": log_window,  # train loss/acc sums (all processes) since the last log line
            "model_name": self.cfg.model.name,
            "model_config": dataclasses.asdict(self.unwrapped.config),
            "num_processes": self.accelerator.num_processes,
            "batch_size": self.cfg.optim.batch_size,
            "grad_accum_steps": self.cfg.optim.grad_accum_steps,
            "time": time.time(),
            "elapsed_s": self.elapsed_s(),
        }

    def save_checkpoint(self, metrics: dict[str, float] | None = None) -> None:
        """Atomic ``checkpoints/step_N`` (every process writes its RNG state) + ``last/`` model file."""
        acc, step = self.accelerator, self.global_step
        staging = self.checkpoints.staging(step)
        if acc.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        log_window = acc.reduce(self.window, "sum").tolist()
        acc.wait_for_everyone()
        acc.save_state(str(staging))
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.save_model(self.run_dir / LAST_DIR, metrics)
            if self.ema is not None:
                self.save_model(self.run_dir / LAST_EMA_DIR, None, self.ema.module)
            self.checkpoints.commit(step, self.train_state(log_window))
        acc.wait_for_everyone()

    def save_model(self, directory: Path, metrics: dict[str, float] | None, model: VideoTransformer | None = None) -> None:
        """Write the model file of ``model`` (default: the trained weights) into ``directory``."""
        save_model_file(
            directory,
            model if model is not None else self.unwrapped,
            classes=self.classes,
            data_config=self.cfg.data,
            step=self.global_step,
            epoch=self.epoch,
            metrics=metrics,
            model_name=self.cfg.model.name,
        )

    def load_checkpoint(self, checkpoint: Path) -> None:
        acc = self.accelerator
        state = read_train_state(checkpoint)
        saved, now = state.get("model_config", {}), dataclasses.asdict(self.unwrapped.config)
        if saved != now:
            diff = "; ".join(config_differences(saved, now)[:4])
            raise UserError(
                f"checkpoint {checkpoint} is of another model ({state.get('model_name')}): {diff}"
            )
        try:
            acc.load_state(str(checkpoint))
        except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise UserError(f"cannot resume from {checkpoint}: corrupt or incompatible checkpoint ({reason})") from None
        if not (checkpoint / f"random_states_{acc.process_index}.pkl").is_file():
            acc.print(f"warning: {checkpoint} has no RNG state for process {acc.process_index}; "
                      "the resumed run will not be bit-identical")
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best = state.get("best", self.best)
        self.best_ema = state.get("best_ema", self.best_ema)
        # work lost after the checkpoint is not counted; an older checkpoint without it leaves the total unknown
        self.elapsed_before = state.get("elapsed_s")
        if acc.is_main_process:  # the other processes restart their sums from zero
            self.window = torch.tensor(state.get("log_window", [0.0, 0.0, 0.0]), device=acc.device)
        saved_procs, saved_batch = int(state.get("num_processes", 1)), int(state.get("batch_size", 0))
        if (saved_procs, saved_batch) != (acc.num_processes, self.cfg.optim.batch_size):
            samples = self.batch_in_epoch * saved_batch * saved_procs
            self.batch_in_epoch = samples // (self.cfg.optim.batch_size * acc.num_processes)
            acc.print(f"warning: checkpoint was written with {saved_procs} processes x batch {saved_batch}; "
                      f"resuming at batch {self.batch_in_epoch} of the epoch (not bit-identical)")
        if acc.is_main_process:
            truncate_metrics(self.run_dir / METRICS_NAME, self.global_step)
        acc.print(f"resumed from {checkpoint} (epoch {self.epoch}, step {self.global_step})")

    # ----------------------------------------------------------------- loop
    def fit(self) -> TrainOutcome:
        self.setup()
        cfg, acc = self.cfg, self.accelerator
        with tqdm(total=self.total_steps, initial=self.global_step, desc="train",
                  disable=not acc.is_main_process, dynamic_ncols=True) as bar:  # closed before an error is shown
            while self.epoch < cfg.optim.epochs:
                self.train_epoch(bar)
                metrics = None
                if (self.epoch + 1) % cfg.run.eval_every_epochs == 0 or self.epoch + 1 == cfg.optim.epochs:
                    metrics = self.validate()
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self.save_checkpoint(metrics)
        outcome = self.final_evaluation()
        acc.end_training()
        return outcome

    def train_epoch(self, bar: tqdm) -> None:
        cfg, acc = self.cfg, self.accelerator
        self.sampler.set_epoch(self.epoch)
        loader = self.train_loader
        if self.batch_in_epoch:
            loader = acc.skip_first_batches(self.train_loader, self.batch_in_epoch)
        loader.set_epoch(self.epoch)
        self.model.train()
        for clips, labels, _ in _batches(loader):
            targets = labels  # int [B], or soft [B, C] after mixup/CutMix
            if self.mixer is not None:
                clips, targets = mix_batch(self.mixer, clips, labels)
            with acc.accumulate(self.model):
                logits = self.model(clips)
                loss = self.criterion(logits, targets)
                acc.backward(loss)
                if acc.sync_gradients and cfg.optim.grad_clip > 0:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                self.optimizer.step()
                if acc.sync_gradients:
                    self.scheduler.step()
                    if self.ema is not None:
                        self.ema.update_parameters(self.unwrapped)
                self.optimizer.zero_grad(set_to_none=True)
            n = labels.shape[0]
            correct = (logits.argmax(1) == dominant_label(targets)).sum().float()
            self.window += torch.stack([loss.detach().float() * n, correct,
                                        torch.tensor(float(n), device=acc.device)])
            self.batch_in_epoch += 1
            if not acc.sync_gradients:
                continue
            self.global_step += 1
            bar.update(1)
            if self.global_step % cfg.run.log_every_steps == 0:
                loss_sum, correct, count = acc.reduce(self.window, "sum").tolist()
                values = {"train/loss": loss_sum / count, "train/acc": correct / count, "lr": self.current_lr()}
                acc.log({**values, "epoch": self.epoch}, step=self.global_step)
                bar.set_postfix(loss=f"{values['train/loss']:.3f}", acc=f"{values['train/acc']:.3f}", epoch=self.epoch)
                self.window.zero_()
            end_of_epoch = self.batch_in_epoch == len(self.train_loader)
            if cfg.run.save_every_steps and self.global_step % cfg.run.save_every_steps == 0 and not end_of_epoch:
                self.save_checkpoint()
            if self.global_step == self.crash_after_step:
                os.kill(os.getpid(), signal.SIGKILL)  # a crash right here

    def current_lr(self) -> float:
        """The learning rate of the schedule (that of the top layer with optim.layer_decay)."""
        return max(group["lr"] for group in self.optimizer.param_groups)

    def validate(self) -> dict[str, float]:
        result = self.run_eval(self.val_loader, self.val_set, f"val (epoch {self.epoch})")
        summary = result.summary()
        metrics = {f"val/{k}": summary[k] for k in ("loss", "top1", "top5", "mean_class_acc") if summary[k] is not None}
        # Training clips served by a substitute because their file was bad, since the start of this
        # process, summed over processes (each process counts its own DataLoader workers).
        local = torch.tensor([self.train_set.num_skipped], device=self.accelerator.device)
        substituted = int(self.accelerator.reduce(local, "sum").item())
        self.accelerator.log({**metrics, "train/bad_file_substitutions": substituted,
                              **self.clock_record(), "epoch": self.epoch}, step=self.global_step)
        top1 = metrics.get("val/top1")
        self.accelerator.print(
            f"epoch {self.epoch}: val {accuracy_line(summary)} "
            f"({summary['num_evaluated']} {self.cfg.data.samples_noun}, "
            f"{summary['num_unreadable']} unreadable)"
            + (f"; {substituted} training clips replaced (bad files, see the warnings)" if substituted else "")
        )
        best = self.best.get("val/top1")
        if top1 is not None and (best is None or top1 > best):
            self.best = {"val/top1": top1, "step": self.global_step, "epoch": self.epoch}
            if self.accelerator.is_main_process:
                self.save_model(self.run_dir / BEST_DIR, metrics)
        if self.ema is not None:
            self.validate_ema()
        self.accelerator.wait_for_everyone()
        return metrics

    def validate_ema(self) -> None:
        """Validate the EMA weights (logged as ``val_ema/*``); the best of them go to ``best_ema/``."""
        with self.accelerator.autocast():  # the EMA copy is not wrapped by accelerate.prepare
            summary = self.run_eval(self.val_loader, self.val_set, f"val EMA (epoch {self.epoch})",
                                    model=self.ema.module).summary()
        metrics = {f"val_ema/{k}": summary[k] for k in ("loss", "top1", "top5", "mean_class_acc")
                   if summary[k] is not None}
        self.accelerator.log({**metrics, "epoch": self.epoch}, step=self.global_step)
        self.accelerator.print(f"epoch {self.epoch}: EMA val {accuracy_line(summary)}")
        top1, best = metrics.get("val_ema/top1"), self.best_ema.get("val/top1")
        if top1 is not None and (best is None or top1 > best):
            self.best_ema = {"val/top1": top1, "step": self.global_step, "epoch": self.epoch}
            if self.accelerator.is_main_process:
                self.save_model(self.run_dir / BEST_EMA_DIR, metrics, self.ema.module)

    def run_eval(self, loader, dataset, desc: str, shuffle_frames_seed: int | None = None,
                 model: torch.nn.Module | None = None) -> EvalResult:
        return evaluate(self.model if model is None else model, loader, self.accelerator, num_views=dataset.num_views,
                        classes=self.classes, shuffle_frames_seed=shuffle_frames_seed, desc=desc)

    def final_evaluation(self) -> TrainOutcome:
        """Evaluate the best-val weights on ``run.test_split`` (or val) and write the report."""
        cfg, acc = self.cfg, self.accelerator
        model_dir = self.run_dir / (BEST_DIR if (self.run_dir / BEST_DIR).is_dir() else LAST_DIR)
        best_model, _ = load_model_file(model_dir)
        self.unwrapped.load_state_dict(best_model.state_dict())
        split = cfg.run.test_split or cfg.data.val_split
        if split == cfg.data.val_split:
            dataset, loader = self.val_set, self.val_loader
        else:
            dataset = build_dataset(cfg.data, split, train=False)
            if list(dataset.classes) != self.classes:
                raise UserError(f"split {split!r} has other classes than {cfg.data.train_split!r}")
            loader = acc.prepare(build_eval_loader(dataset, batch_size=cfg.optim.eval_batch_size or cfg.optim.batch_size,
                                                   num_workers=cfg.data.num_workers))
        result = self.run_eval(loader, dataset, f"final eval ({split})")
        report_dir = self.run_dir / f"eval_{split}"
        report: dict[str, Any] = result.summary()
        if acc.is_main_process:
            report = write_report(result, report_dir, {"model": str(model_dir), "split": split,
                                                        "views_per_video": dataset.num_views})
            acc.log({f"{split}/top1": report["top1"], f"{split}/top5": report["top5"],
                     f"{split}/mean_class_acc": report["mean_class_acc"],
                     **self.clock_record(), "epoch": self.epoch}, step=self.global_step)
        acc.wait_for_everyone()
        root = dataset_root(cfg.data)
        bad = {name for name, _ in dataset.bad_files()}  # the example for vivit-tl visualize must be readable
        readable = [name for name in dataset.video_names if name not in bad]
        example = root / readable[0] if readable and cfg.data.kind != "cifar10" else None
        return TrainOutcome(self.run_dir, model_dir, split, report, self.best.get("val/top1"), report_dir, root, example,
                            cfg.data)


def train(cfg: TrainConfig, *, resume: bool | str | Path = False, overrides: list[str] | None = None) -> TrainOutcome:
    """Train (or resume) a run and evaluate its best weights.

    Args:
        cfg: the config (ignored in favour of the run's saved config when resuming, see below).
        resume: False: a new run in ``run.output_dir/run.name`` (``name-2``... if that run has
            results). True: continue the latest checkpoint of that run (start it if there is none).
            A path: continue that run directory or checkpoint. A resumed run uses its saved
            ``config.yaml`` with ``overrides`` applied on top.
        overrides: the command-line overrides (re-applied to the saved config when resuming).
    """
    state = process_state()
    set_cpu_threads(cfg.run.cpu_threads, state)
    check_model_config(cfg)
    target: tuple[Path, Path | None] | None = None
    error = None
    if state.is_main_process:  # decided once (a new run's name must not race), then shared
        try:
            if resume is False:
                target = (fresh_run_dir(cfg.run.output_dir, cfg.run.name), None)
            elif resume is True:
                run_dir = Path(cfg.run.output_dir) / cfg.run.name
                target = (run_dir, latest_checkpoint(run_dir))
            else:
                target = find_resume_target(resume)
        except (UserError, FileNotFoundError) as exc:
            error = exc
    target, error = _broadcast((target, error))
    if error is not None:
        raise error
    run_dir, checkpoint = target
    if resume is not False and (run_dir / CONFIG_NAME).is_file():
        cfg = load_run_config(run_dir, overrides or [])
        check_model_config(cfg)
    if resume is not False and checkpoint is None:
        state.print(f"nothing to resume in {run_dir}: starting a new run there")
    created = not run_dir.exists()
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        CheckpointDir(run_dir / CHECKPOINTS_DIR).clean_partial()
        cfg.save(run_dir / CONFIG_NAME)
    state.wait_for_everyone()
    state.print(f"run directory: {run_dir}")
    try:
        return Trainer(cfg, run_dir, checkpoint).fit()
    except BaseException:
        # a run that failed before writing anything (a missing data folder, bad init_from, ...) leaves no folder
        if state.is_main_process and created and [p.name for p in run_dir.iterdir()] == [CONFIG_NAME]:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _batches(loader: Any) -> Any:
    """The batches of ``loader``; `TooManyBadFiles` from a worker is raised again once the loader's
    iterator (and with it its workers, still decoding) is gone, so that the one-line error is the
    last thing the run prints."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except TooManyBadFiles as exc:  # the frames of its traceback hold the iterator: keep only the message
            message = str(exc)
            traceback.clear_frames(exc.__traceback__)
            break
        yield batch
    del iterator
    _stop_persistent_workers(loader)
    raise TooManyBadFiles(message)


def _stop_persistent_workers(loader: Any) -> None:
    """Shut down the workers a DataLoader with ``persistent_workers`` keeps between epochs (through
    accelerate's wrapper, whose ``base_dataloader`` is the torch DataLoader)."""
    torch_loader = getattr(loader, "base_dataloader", loader)
    workers = getattr(torch_loader, "_iterator", None)
    if workers is not None and hasattr(workers, "_shutdown_workers"):
        workers._shutdown_workers()
        torch_loader._iterator = None


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flat ``{"optim.lr": 0.001}`` with scalar values (for TensorBoard hparams)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out

