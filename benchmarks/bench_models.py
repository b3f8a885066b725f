"""Model speed and memory: vivit-tl against `transformers`' ViViT and `timm`'s ViT, and what TokenLearner saves.

Usage:
    python benchmarks/bench_models.py --preset cpu                 # the issue's ratios on a CPU, ~12 min on 2 cores
    python benchmarks/bench_models.py --preset cpu --threads 1     # the same, steadier on a machine others use
    python benchmarks/bench_models.py --preset full --device cuda  # the whole grid, bf16 autocast on a GPU
    python benchmarks/bench_models.py --preset smoke               # tiny models, seconds (the test)
    python benchmarks/bench_models.py --preset full --groups m1-16 image --repeats 5 --out /tmp/bench

For every model: parameters, GFLOPs (multiply-adds per clip, the papers' convention, counted on the meta
device with `torch.utils.flop_counter`, forward and forward+backward), forward latency, training-step time
and peak memory at a stated batch size. A training step is forward + cross-entropy + backward, gradients
set to None before it (no optimizer update: it is the same per parameter for every contender).

Presets (every row of the output states frames, size, batch, dtype and device):
- ``cpu``: ViViT-B/16x2 Model 1 (16 frames, 224², batch 1) against `transformers`' ``VivitForVideoClassification``
  and against itself with TokenLearner (8 tokens per step at 1/2 depth, "once"); the one-frame ViT-B/16 against
  `timm`'s ``vit_base_patch16_224`` (224², batch 8). fp32.
- ``full``: Models 1 and 2 at 16 and 32 frames, 224², without TokenLearner and with 8 and 16 tokens per step at
  1/4, 1/2 and 3/4 depth, "once" and "fuse"; Model 1 against `transformers` at both frame counts; the one-frame
  model against `timm`. bf16 autocast on CUDA (fp32 on CPU, where it takes hours).
- ``smoke``: the same comparisons with tiny models (for the test).

Method. The models of one group are built once, warmed up (``--warmup`` calls of each), then measured
``--repeats`` times *interleaved*: each repeat times one forward of every model (the order rotated by one per
repeat), then one training step of every model, so a change of machine load hits every contender alike.
A sample is ``k`` back-to-back calls, k chosen after warm-up so a sample lasts at least ``--min-sample-s``
(0.2 s on CUDA; k = 1 on CPU, where one call takes seconds). Each sample records wall-clock time and, on CPU,
the process CPU time (all threads), which other processes sharing the cores disturb less. Reported: the median
over repeats; a ratio between two models is the median of the per-repeat paired ratios (its min-max range is in
the table). The targets are judged on wall-clock time. Threads: torch's default (``torch.get_num_threads()``)
unless ``--threads``, stated in the output with the load average at the start and the end. On a CPU that other
jobs also use, every multi-threaded op waits for its slowest thread, and a thread that lost its core waits a
scheduler slice (milliseconds): small ops (TokenLearner's few tokens) then cost far more than their work, and
wall-clock times swing by 2x with the neighbours' load. One thread measures the implementations, not the queue.

Peak memory is the peak of memory in use during one call minus what was in use just before it (weights,
input and, for the step, no gradients), i.e. activations, gradients and temporaries:
- CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus ``memory_allocated()``.
- CPU (no allocator statistic): in a separate process started with glibc's ``MALLOC_MMAP_THRESHOLD_=65536``
  (every allocation of 64 KiB or more is its own mmap and goes back to the OS when freed, so resident memory
  follows the live tensors), each model is warmed up, then the peak resident set size (``VmHWM``, reset through
  ``/proc/self/clear_refs``) during one call minus the resident size (``VmRSS``) before it. This counts what
  the process really touched (PyTorch tensors plus oneDNN scratch space) in MiB; it needs Linux.

The results go to ``--out`` (default ``docs/generated/benchmarks/<preset>-<device>``): ``results.md`` (the tables),
``results.json`` (every sample) and ``speedup_vs_flops.png`` (measured TokenLearner speedup against FLOP
reduction).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter

from tqdm import tqdm

from vivit_tl.errors import run_cli
from vivit_tl.models import ModelConfig, build_model, model_config

IMPLS = ("vivit-tl", "transformers", "timm")
MEASURES = ("infer", "train", "infer_cpu", "train_cpu")  # wall-clock and process CPU seconds per call
MiB = 2**20


# ----------------------------------------------------------------------------------------------- what to measure
@dataclass
class Spec:
    """One model to measure. Contenders (`transformers`, `timm`) are built from the same `ModelConfig`.

    Args:
        label: unique row name.
        impl: 'vivit-tl', 'transformers' (``VivitForVideoClassification``) or 'timm' (``VisionTransformer``).
        model: a registered vivit-tl variant; ``overrides`` change its config fields.
        frames, size, batch: input clip ``[batch, 3, frames, size, size]``.
        compare_to: label of the row this one is compared with: for a contender, our model (ratio of throughputs);
            for a TokenLearner model, its baseline (speedup / FLOP reduction).
        target: the issue's threshold for that comparison (ours/contender throughput ratio, or the fraction of the
            FLOP reduction reached as wall-clock speedup), None when there is none.
    """

    label: str
    impl: str
    model: str
    overrides: dict[str, Any]
    frames: int
    size: int
    batch: int
    compare_to: str | None = None
    target: float | None = None

    def config(self) -> ModelConfig:
        return model_config(self.model, **self.overrides)


@dataclass
class Preset:
    """Groups of specs; the specs of one group are measured interleaved."""

    groups: dict[str, list[Spec]]
    repeats: int
    warmup: int
    cuda_dtype: str = "bf16"
    description: str = ""


def _tl(num_tokens: int, loc: float, placement: str) -> dict[str, Any]:
    return dict(pool="gap", token_learner="v1.1", num_tokens=num_tokens, token_learner_loc=loc,
                token_learner_placement=placement)


_LOC_NAMES = {0.25: "1/4", 0.5: "1/2", 0.75: "3/4"}


def video_group(base: str, frames: int, size: int, batch: int, *, name: str,
                tokenlearners: list[tuple[int, float, str]], transformers: float | None = None,
                tl_target: tuple[int, float, str] | None = (8, 0.5, "once"), **overrides: Any) -> list[Spec]:
    """Our ``base`` model, optionally `transformers`' ViViT of the same configuration (with its throughput target),
    and TokenLearner versions of ``base`` as ``(tokens, loc, placement)``, each compared with ``base``."""
    ours = Spec(f"{name} {frames}f", "vivit-tl", base, dict(num_frames=frames, image_size=size, **overrides),
                frames, size, batch)
    specs = [ours]
    if transformers is not None:
        specs.append(dataclasses.replace(ours, label=f"transformers {name} {frames}f", impl="transformers",
                                         compare_to=ours.label, target=transformers))
    for tokens, loc, placement in tokenlearners:
        specs.append(dataclasses.replace(
            ours, label=f"{name} {frames}f TL{tokens}@{_LOC_NAMES.get(loc, loc)} {placement}",
            overrides={**ours.overrides, **_tl(tokens, loc, placement)}, compare_to=ours.label,
            target=0.9 if (tokens, loc, placement) == tl_target else None))
    return specs


def image_group(size: int, batch: int, *, name: str, target: float | None = 1.0, **overrides: Any) -> list[Spec]:
    """Our one-frame model (tubelet 1) against `timm`'s ViT of the same configuration."""
    ours = Spec(f"{name} 1f", "vivit-tl", "vivit_b16x2",
                {"num_classes": 1000, **overrides, "num_frames": 1, "tubelet_size": 1, "image_size": size,
                 "gelu_approximate": "none"}, 1, size, batch)
    return [ours, dataclasses.replace(ours, label=f"timm {name} 1f", impl="timm", compare_to=ours.label, target=target)]


_TINY = dict(embed_dim=64, depth=4, num_heads=2, mlp_dim=128, num_classes=10)
_GRID = [(s, loc, p) for s in (8, 16) for loc in (0.25, 0.5, 0.75) for p in ("once", "fuse")]

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        groups={
            "video": video_group("vivit_b16x2", 4, 32, 2, name="tiny M1", patch_size=8,
                                 tokenlearners=[(4, 0.5, "once"), (4, 0.5, "fuse")], transformers=1.1,
                                 tl_target=(4, 0.5, "once"), **_TINY),
            "image": image_group(32, 4, name="tiny ViT", patch_size=8, **_TINY),
        },
        repeats=2, warmup=1, description="tiny models (width 64, depth 4), for the test; the targets mean nothing "
                                         "at this size"),
    "cpu": Preset(
        groups={
            "video": video_group("vivit_b16x2", 16, 224, 1, name="ViViT-B/16x2 M1", tokenlearners=[(8, 0.5, "once")],
                                 transformers=1.1),
            "image": image_group(224, 8, name="ViT-B/16"),
        },
        repeats=5, warmup=1, description="the issue's ratios at CPU-friendly sizes (fp32)"),
    "full": Preset(
        groups={
            **{f"m1-{f}": video_group("vivit_b16x2", f, 224, 4, name="ViViT-B/16x2 M1", tokenlearners=_GRID,
                                      transformers=1.1) for f in (16, 32)},
            **{f"m2-{f}": video_group("vivit_b16x2_fe", f, 224, 4, name="ViViT-B/16x2 M2", tokenlearners=_GRID,
                                      tl_target=None) for f in (16, 32)},
            "image": image_group(224, 32, name="ViT-B/16"),
        },
        repeats=10, warmup=3, description="the whole grid of the issue (bf16 autocast on CUDA)"),
}


# ----------------------------------------------------------------------------------------------- building models
def build(spec: Spec) -> nn.Module:
    """The model of ``spec`` on the current default device (use ``torch.device('meta')`` to count FLOPs)."""
    cfg = spec.config()
    if spec.impl == "vivit-tl":
        return build_model(cfg)
    if spec.impl == "transformers":
        from transformers import VivitForVideoClassification
        return VivitForVideoClassification(transformers_config(cfg))
    if spec.impl == "timm":
        import timm
        return timm.create_model("vit_base_patch16_224", pretrained=False, **timm_kwargs(cfg))
    raise ValueError(f"unknown impl {spec.impl!r}; valid: {list(IMPLS)}")


def _require_plain_vit(cfg: ModelConfig, who: str) -> None:
    plain = (cfg.model_type == "joint" and cfg.pool == "cls" and cfg.token_learner == "none" and cfg.head_dim is None
             and cfg.tokenizer == "tubelet" and not cfg.mlp_final_gelu)
    if not plain:
        raise ValueError(f"{who} has only the plain joint ViT with a class token; config {cfg.to_dict()} is not one")


def transformers_config(cfg: ModelConfig) -> Any:
    """`transformers.VivitConfig` of the same architecture as ``cfg`` (Model 1, CLS head). Its defaults are kept
    where ours match them: activation 'gelu_fast' (= our tanh GELU), attention implementation its default."""
    from transformers import VivitConfig
    _require_plain_vit(cfg, "transformers' ViViT")
    act = {"tanh": "gelu_fast", "none": "gelu"}[cfg.gelu_approximate]
    return VivitConfig(image_size=cfg.image_size, num_frames=cfg.num_frames, num_channels=cfg.in_chans,
                       tubelet_size=[cfg.tubelet_size, cfg.patch_size, cfg.patch_size], hidden_size=cfg.embed_dim,
                       num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads, intermediate_size=cfg.mlp_dim,
                       hidden_act=act, hidden_dropout_prob=cfg.drop_rate,
                       attention_probs_dropout_prob=cfg.attn_drop_rate,
                       layer_norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, num_labels=cfg.num_classes)


def timm_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """`timm.create_model('vit_base_patch16_224', **kwargs)` arguments for the same architecture as ``cfg``
    (a one-frame model). timm's default GELU is the exact form: our 'none'."""
    _require_plain_vit(cfg, "timm's ViT")
    if cfg.num_frames != 1 or cfg.tubelet_size != 1:
        raise ValueError(f"timm's ViT is an image model: needs num_frames = tubelet_size = 1, got "
                         f"{cfg.num_frames}, {cfg.tubelet_size}")
    kwargs = dict(num_classes=cfg.num_classes, img_size=cfg.image_size, patch_size=cfg.patch_size,
                  in_chans=cfg.in_chans, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                  mlp_ratio=cfg.mlp_dim / cfg.embed_dim, qkv_bias=cfg.qkv_bias, drop_rate=cfg.drop_rate,
                  attn_drop_rate=cfg.attn_drop_rate)
    if cfg.gelu_approximate == "tanh":
        kwargs["act_layer"] = "gelu_tanh"
    return kwargs


def make_input(spec: Spec, device: torch.device | str | None = None) -> torch.Tensor:
    """A random clip in the contender's own layout: ours and timm ``[B, 3, F, H, W]`` / ``[B, 3, H, W]``,
    `transformers` ``[B, F, 3, H, W]``."""
    shape = {"vivit-tl": (spec.batch, 3, spec.frames, spec.size, spec.size),
             "transformers": (spec.batch, spec.frames, 3, spec.size, spec.size),
             "timm": (spec.batch, 3, spec.size, spec.size)}[spec.impl]
    return torch.randn(shape, device=device)


def logits_of(spec: Spec, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward to logits ``[B, num_classes]``."""
    return model(pixel_values=x).logits if spec.impl == "transformers" else model(x)


def count_cost(spec: Spec) -> dict[str, float]:
    """Parameters and GFLOPs per clip (multiply-adds = torch's flop count / 2) of the forward pass and of
    forward + backward, counted on the meta device (no memory, no arithmetic)."""
    with torch.device("meta"):
        model = build(spec)
        x = make_input(spec)
    model.train()
    gflops = []
    for backward in (False, True):
        with flop_counter.FlopCounterMode(display=False) as counter:
            out = logits_of(spec, model, x)
            if backward:
                out.sum().backward()
        gflops.append(counter.get_total_flops() / 2 / spec.batch / 1e9)
    return {"params": sum(p.numel() for p in model.parameters()), "gflops": gflops[0], "train_gflops": gflops[1]}


class Runner:
    """A built model with its input, timing one forward (inference mode) or one training step."""

    def __init__(self, spec: Spec, device: torch.device, dtype: str) -> None:
        torch.manual_seed(0)
        self.spec, self.device = spec, device
        self.model = build(spec).to(device)
        self.x = make_input(spec, device)
        self.y = torch.randint(0, spec.config().num_classes, (spec.batch,), device=device)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
        self.params = list(self.model.parameters())
        self.repeat = 1  # calls per timed sample, set after the warm-up (`run_group`)

    def infer(self) -> None:
        self.model.eval()
        with torch.inference_mode(), self.autocast:
            logits_of(self.spec, self.model, self.x)

    def train_step(self) -> None:
        self.model.train()
        self.zero_grad()
        with self.autocast:
            loss = F.cross_entropy(logits_of(self.spec, self.model, self.x).float(), self.y)
        loss.backward()

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def timed(self, fn: Callable[[], None], calls: int = 1) -> tuple[float, float]:
        """Wall-clock and process CPU seconds per call of ``fn``, over ``calls`` back-to-back calls."""
        self._sync()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        self._sync()
        return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ----------------------------------------------------------------------------------------------- peak memory
def _proc_status_kib(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1))


def _peak_cpu(fn: Callable[[], None]) -> float:
    """MiB: peak resident set during ``fn`` minus the resident set before it (Linux ``/proc``)."""
    gc.collect()
    before = _proc_status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    fn()
    return (_proc_status_kib("VmHWM") - before) / 1024


def _peak_cuda(fn: Callable[[], None], device: torch.device) -> float:
    """MiB: ``max_memory_allocated`` during ``fn`` minus ``memory_allocated`` before it."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MiB


def measure_memory(runner: Runner) -> dict[str, float]:
    """Peak memory (MiB above weights and input) of one forward and of one training step, after a warm-up."""
    peak = _peak_cpu if runner.device.type == "cpu" else (lambda fn: _peak_cuda(fn, runner.device))
    runner.infer()
    runner.train_step()
    runner.zero_grad()
    infer = peak(runner.infer)
    train = peak(runner.train_step)
    runner.zero_grad()
    return {"mem_infer_mib": infer, "mem_train_mib": train}


def memory_probe_main() -> None:
    """Child process of `cpu_memory`: specs (JSON on stdin) -> peak memory per label (JSON on stdout)."""
    request = json.loads(sys.stdin.read())
    torch.set_num_threads(request["threads"])
    out = {}
    for d in request["specs"]:
        spec = Spec(**d)
        runner = Runner(spec, torch.device("cpu"), request["dtype"])
        out[spec.label] = measure_memory(runner)
        del runner
        gc.collect()
    print(json.dumps(out))


def cpu_memory(specs: list[Spec], dtype: str) -> dict[str, dict[str, float]]:
    """`measure_memory` of every spec, in one fresh process whose large allocations are returned to the OS."""
    if not Path("/proc/self/clear_refs").exists():
        raise RuntimeError("CPU peak memory needs Linux /proc (run with --no-memory elsewhere)")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    request = json.dumps({"specs": [dataclasses.asdict(s) for s in specs], "dtype": dtype,
                          "threads": torch.get_num_threads()})
    proc = subprocess.run([sys.executable, __file__, "--memory-probe"], input=request, capture_output=True,
                          text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"memory probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- timing
def rotated(items: list[Any], shift: int) -> list[Any]:
    shift %= max(len(items), 1)
    return items[shift:] + items[:shift]


def run_group(specs: list[Spec], device: torch.device, dtype: str, repeats: int, warmup: int, min_sample_s: float,
              memory: bool, bar: tqdm, profiles: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure one group interleaved; one result dict per spec. Peak memory is measured here on CUDA (after the
    timings); on CPU the caller measures it for every group at once in a separate process (`cpu_memory`).
    With ``profiles`` (a list), a `torch.profiler` table of one forward and one step per model is appended."""
    load_start = os.getloadavg()
    rows = {s.label: {**_describe(s, device, dtype), **count_cost(s)} for s in specs}
    runners = [Runner(s, device, dtype) for s in specs]
    for runner in runners:  # warm-up; the last warm-up call sizes the sample
        for _ in range(warmup):
            t_infer, _ = runner.timed(runner.infer)
            t_train, _ = runner.timed(runner.train_step)
            bar.update(2)
        runner.repeat = max(1, round(min_sample_s / max(min(t_infer, t_train), 1e-9)))
        runner.zero_grad()
    samples = {s.label: {k: [] for k in MEASURES} for s in specs}
    for rep in range(repeats):
        order = rotated(runners, rep)
        for kind in ("infer", "train"):
            for runner in order:
                fn = runner.infer if kind == "infer" else runner.train_step
                wall, cpu = runner.timed(fn, runner.repeat)
                samples[runner.spec.label][kind].append(wall)
                samples[runner.spec.label][f"{kind}_cpu"].append(cpu)
                runner.zero_grad()
                bar.update(1)
    if profiles is not None:
        profiles += [profile_table(r) for r in runners]
    mem = {r.spec.label: measure_memory(r) for r in runners} if memory and device.type == "cuda" else {}
    load_end = os.getloadavg()
    for spec in specs:
        row = rows[spec.label]
        for k, values in samples[spec.label].items():
            row[f"{k}_s"], row[f"{k}_samples"] = statistics.median(values), values
        row["infer_clips_s"] = spec.batch / row["infer_s"]
        row["train_clips_s"] = spec.batch / row["train_s"]
        row["load_1min"] = [round(load_start[0], 2), round(load_end[0], 2)]
        row.update(mem.get(spec.label, {"mem_infer_mib": None, "mem_train_mib": None}))
    return [rows[s.label] for s in specs]


def profile_table(runner: Runner, rows: int = 25) -> str:
    """Markdown section: `torch.profiler` ops of one forward and of one training step, by self time."""
    from torch.profiler import ProfilerActivity, profile
    cuda = runner.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    text = [f"## {runner.spec.label}\n"]
    for kind, fn in (("forward", runner.infer), ("training step", runner.train_step)):
        with profile(activities=activities) as prof:
            runner.timed(fn)
        runner.zero_grad()
        table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                          row_limit=rows)
        text.append(f"### {kind}\n\n```\n{table}\n```\n")
    return "\n".join(text)


def _describe(spec: Spec, device: torch.device, dtype: str) -> dict[str, Any]:
    return {"label": spec.label, "impl": spec.impl, "model": spec.model, "overrides": spec.overrides,
            "frames": spec.frames, "size": spec.size, "batch": spec.batch, "dtype": dtype,
            "device": device.type, "compare_to": spec.compare_to, "target": spec.target}


# ----------------------------------------------------------------------------------------------- comparisons
def _paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Median and range of the per-repeat ratios a[i] / b[i]."""
    ratios = [x / y for x, y in zip(a, b)]
    return {"ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contenders: throughput of ours / theirs (= their time / ours, per repeat). TokenLearner models: wall-clock
    speedup over the baseline divided by the FLOP reduction (forward FLOPs for inference, forward+backward for
    the step), and the training peak memory relative to the baseline."""
    by_label = {r["label"]: r for r in rows}
    out = []
    for row in rows:
        ref = by_label.get(row["compare_to"])
        if ref is None:
            continue
        if row["impl"] != "vivit-tl":
            c = {"kind": "throughput", "ours": ref["label"], "other": row["label"], "target": row["target"]}
            for k in MEASURES:
                c[k] = _paired(row[f"{k}_samples"], ref[f"{k}_samples"])
            if row["target"] is None:
                c["met"] = None
            else:
                c["met"] = all(c[k]["ratio"] >= row["target"] for k in ("infer", "train"))
        else:
            c = {"kind": "tokenlearner", "model": row["label"], "baseline": ref["label"], "target": row["target"]}
            for k in MEASURES:
                speedup = _paired(ref[f"{k}_samples"], row[f"{k}_samples"])
                flops = "gflops" if k.startswith("infer") else "train_gflops"
                reduction = ref[flops] / row[flops]
                c[k] = {"flop_reduction": reduction, "speedup": speedup,
                        "efficiency": speedup["ratio"] / reduction}
            mems = (row["mem_train_mib"], ref["mem_train_mib"])
            c["mem_train_ratio"] = mems[0] / mems[1] if None not in mems and mems[1] > 0 else None
            if row["target"] is not None:
                c["met"] = (all(c[k]["efficiency"] >= row["target"] for k in ("infer", "train"))
                            and c["mem_train_ratio"] is not None and c["mem_train_ratio"] < 1)
            else:
                c["met"] = None
        out.append(c)
    return out


# ----------------------------------------------------------------------------------------------- report
def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": _cpu_model(), "cpus": os.cpu_count()}
    for name in ("transformers", "timm"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mib(v: float | None) -> str:
    return "–" if v is None else f"{max(v, 0.0):,.0f}"  # a few MiB below 0 is noise


def _range(r: dict[str, float]) -> str:
    return f"{r['ratio']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"


def _met(v: bool | None) -> str:
    return "" if v is None else ("**met**" if v else "**not met**")


def to_markdown(result: dict[str, Any]) -> str:
    info, rows = result["machine"], result["rows"]
    device = info.get("gpu") or f"CPU {info['cpu']}"
    lines = [
        f"Command: `{result['command']}` ({result['started']}, {result['wall_s'] / 60:.1f} min)",
        "",
        f"Machine: {device}, {info['cpus']} logical CPUs, torch {info['torch']} with {info['threads']} threads, "
        f"transformers {info['transformers']}, timm {info['timm']}; load average (1 min) "
        f"{result['load_start'][0]:.2f} at the start, {result['load_end'][0]:.2f} at the end. "
        f"{result['repeats']} interleaved repeats after {result['warmup']} warm-up call(s); medians.",
        "",
        "| model | impl | frames × size² | batch | dtype | device | params (M) | GFLOPs/clip | forward s/batch "
        "| forward clips/s | train step s/batch | train clips/s | peak mem fwd (MiB) | peak mem train (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['impl']} | {r['frames']}×{r['size']}² | {r['batch']} | {r['dtype']} | "
                     f"{r['device']} | {r['params'] / 1e6:.2f} | {r['gflops']:.4g} | {r['infer_s']:.3g} | "
                     f"{r['infer_clips_s']:.3g} | {r['train_s']:.3g} | {r['train_clips_s']:.3g} | "
                     f"{_mib(r['mem_infer_mib'])} | {_mib(r['mem_train_mib'])} |")
    comps = result["comparisons"]
    cpu = rows[0]["device"] == "cpu"  # process CPU time is meaningful only when the work runs on the CPU
    thr = [c for c in comps if c["kind"] == "throughput"]
    if thr:
        extra = " forward (CPU time) | train step (CPU time) |" if cpu else ""
        lines += ["", "Throughput of ours / theirs: same configuration, same input; median of the per-repeat ratios "
                  "of wall-clock time (range in brackets)" + ("; the same from process CPU time, which other "
                                                              "processes on the machine disturb less" if cpu else "")
                  + ":", "",
                  f"| ours | contender | forward | train step |{extra} target | |",
                  "|---|---|---|---|" + ("---|---|" if cpu else "") + "---|---|"]
        for c in thr:
            target = "–" if c["target"] is None else f"≥ {c['target']:.1f}×"
            cols = [c["ours"], c["other"], _range(c["infer"]), _range(c["train"])]
            cols += [_range(c["infer_cpu"]), _range(c["train_cpu"])] if cpu else []
            lines.append("| " + " | ".join(cols + [target, _met(c["met"])]) + " |")
    tls = [c for c in comps if c["kind"] == "tokenlearner"]
    if tls:
        extra = " efficiency fwd / step (CPU time) |" if cpu else ""
        lines += ["", "TokenLearner: wall-clock speedup over the baseline and how much of the FLOP reduction it is "
                  "(efficiency = speedup / FLOP reduction; forward FLOPs for the forward, forward+backward FLOPs "
                  "for the step):", "",
                  f"| model | baseline | FLOP reduction fwd / step | forward speedup | efficiency | step speedup "
                  f"| efficiency |{extra} train peak mem vs baseline | target | |",
                  "|---|---|---|---|---|---|---|" + ("---|" if cpu else "") + "---|---|---|"]
        for c in tls:
            mem = "–" if c["mem_train_ratio"] is None else f"{c['mem_train_ratio']:.2f}×"
            target = "–" if c["target"] is None else f"efficiency ≥ {c['target']:.1f}, mem < 1"
            cols = [c["model"], c["baseline"],
                    f"{c['infer']['flop_reduction']:.2f}× / {c['train']['flop_reduction']:.2f}×",
                    _range(c["infer"]["speedup"]), f"{c['infer']['efficiency']:.2f}", _range(c["train"]["speedup"]),
                    f"{c['train']['efficiency']:.2f}"]
            cols += [f"{c['infer_cpu']['efficiency']:.2f} / {c['train_cpu']['efficiency']:.2f}"] if cpu else []
            lines.append("| " + " | ".join(cols + [mem, target, _met(c["met"])]) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Measured TokenLearner speedup against FLOP reduction (y = x: all of the saving is real)."""
    tls = [c for c in result["comparisons"] if c["kind"] == "tokenlearner"]
    if not tls:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    top = max(max(c[k]["flop_reduction"], c[k]["speedup"]["ratio"]) for c in tls for k in ("infer", "train"))
    ax.plot([1, top * 1.05], [1, top * 1.05], "k--", lw=1, label="speedup = FLOP reduction")
    for k, marker in (("infer", "o"), ("train", "s")):
        ax.scatter([c[k]["flop_reduction"] for c in tls], [c[k]["speedup"]["ratio"] for c in tls], marker=marker,
                   label="forward" if k == "infer" else "train step")
    ax.set_xlabel("FLOP reduction vs baseline (×)")
    ax.set_ylabel("measured speedup vs baseline (×)")
    first = result["rows"][0]
    ax.set_title(f"TokenLearner on {first['device']} ({first['dtype']})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="what to measure (default: cpu)")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda' or 'cuda:N' (default: cuda when available)")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                        help="fp32, or bf16 autocast (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default: the preset's)")
    parser.add_argument("--warmup", type=int, help="warm-up calls per model (default: the preset's)")
    parser.add_argument("--min-sample-s", type=float,
                        help="shortest timed sample; fast calls are repeated (default: 0.2 on CUDA, 0 on CPU)")
    parser.add_argument("--groups", nargs="+", help="only these groups of the preset")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--profile", action="store_true",
                        help="also write profiles.md: torch.profiler ops of one forward and one step per model")
    parser.add_argument("--out", type=Path, help="output folder (default: docs/generated/benchmarks/<preset>-<device>)")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe_main()
        return 0
    preset = PRESETS[args.preset]
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    dtype = args.dtype if args.dtype != "auto" else (preset.cuda_dtype if device.type == "cuda" else "fp32")
    repeats = preset.repeats if args.repeats is None else args.repeats
    warmup = preset.warmup if args.warmup is None else args.warmup
    if repeats < 1 or warmup < 1:
        raise ValueError(f"--repeats and --warmup must be >= 1, got {repeats} and {warmup}")
    min_sample_s = args.min_sample_s if args.min_sample_s is not None else (0.2 if device.type == "cuda" else 0.0)
    groups = preset.groups
    if args.groups:
        unknown = sorted(set(args.groups) - set(groups))
        if unknown:
            raise ValueError(f"unknown group(s) {unknown} in preset {args.preset!r}; valid: {sorted(groups)}")
        groups = {k: v for k, v in groups.items() if k in args.groups}
    out = args.out or Path(__file__).resolve().parents[1] / "docs" / "generated" / "benchmarks" / f"{args.preset}-{device.type}"
    out.mkdir(parents=True, exist_ok=True)

    started, t0 = datetime.datetime.now().isoformat(timespec="seconds"), time.perf_counter()
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    profiles: list[str] | None = [] if args.profile else None
    total = sum(len(specs) * 2 * (warmup + repeats) for specs in groups.values())
    with tqdm(total=total, desc=f"bench {args.preset} on {device.type}", unit="call", file=sys.stderr) as bar:
        for name, specs in groups.items():
            bar.set_postfix_str(name)
            rows += run_group(specs, device, dtype, repeats, warmup, min_sample_s, not args.no_memory, bar,
                              profiles)
    if device.type == "cpu" and not args.no_memory:
        print("measuring peak memory in a separate process ...", file=sys.stderr)
        mem = cpu_memory([spec for specs in groups.values() for spec in specs], dtype)
        for row in rows:
            row.update(mem[row["label"]])
    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    result = {"command": f"python benchmarks/bench_models.py {argv_text}".strip(), "preset": args.preset,
              "description": preset.description, "started": started, "wall_s": time.perf_counter() - t0,
              "load_start": load_start, "load_end": os.getloadavg(), "repeats": repeats, "warmup": warmup,
              "machine": machine_info(device), "rows": rows, "comparisons": compare(rows)}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    markdown = to_markdown(result)
    (out / "results.md").write_text(markdown)
    plotted = plot(result, out / "speedup_vs_flops.png")
    if profiles is not None:
        header = f"Profiles of `{result['command']}` (self time per op)\n\n"
        (out / "profiles.md").write_text(header + "\n".join(profiles))
    print(markdown)
    written = ["results.md", "results.json"] + ["speedup_vs_flops.png"] * plotted + ["profiles.md"] * bool(profiles)
    print(f"wrote {', '.join(str(out / name) for name in written)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
