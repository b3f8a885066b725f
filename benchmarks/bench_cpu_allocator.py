"""CPU training steps under glibc's default malloc settings against settings that keep freed memory.

Usage:
    python benchmarks/bench_cpu_allocator.py                              # vit_cifar, batch 256, 3 rounds
    python benchmarks/bench_cpu_allocator.py --model vit_cifar_tl8 --rounds 5 --steps 5
    python benchmarks/bench_cpu_allocator.py --model vit_cifar --batch 8 --rounds 1 --steps 1  # seconds

Why. On CPU, PyTorch allocates tensors with malloc. glibc gives a freed block above its mmap threshold
straight back to the OS, and trims free memory above its trim threshold off the top of the heap, so the
activations of every training step come back as fresh pages: one page fault per 4 KiB, each page zeroed
by the kernel. ``TUNED`` keeps that memory in the process (mmap threshold at glibc's 32 MiB maximum, no
trimming, a 256 MiB top pad, one arena), which is what jemalloc or tcmalloc would do too:

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456 MALLOC_ARENA_MAX=1 \\
        accelerate launch tools/train.py --config configs/cifar10_vit.yaml ...

Method. Each round starts one child process per setting (the order alternates between rounds, so a change
of machine load hits both alike). A child builds the model and AdamW, runs ``--warmup`` training steps
(forward, cross-entropy, backward, optimizer step) on one random batch, then times ``--steps`` more: wall
clock, user and system CPU time and minor page faults per step (``getrusage``). Reported: the per-round
values and the median of the per-round ratios default / tuned. Glibc (Linux) only; elsewhere the variables
are ignored and the ratio is about 1. Threads: torch's default unless ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

TUNED = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "2147483647",
         "MALLOC_TOP_PAD_": "268435456", "MALLOC_ARENA_MAX": "1"}
SETTINGS = ("default", "tuned")


def child(args: argparse.Namespace) -> None:
    """Time training steps in this process; print one JSON line."""
    import torch

    from vivit_tl.models.registry import create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10)
    cfg = model.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 3, cfg.num_frames, cfg.image_size, cfg.image_size)  # [N, 3, T, H, W]
    y = torch.randint(0, 10, (args.batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    n = args.steps
    print(json.dumps({"wall_s": wall / n, "user_s": (after.ru_utime - before.ru_utime) / n,
                      "sys_s": (after.ru_stime - before.ru_stime) / n,
                      "minflt": (after.ru_minflt - before.ru_minflt) / n, "threads": torch.get_num_threads(),
                      "malloc_env": sorted(k for k in TUNED if k in os.environ)}))


def run_child(setting: str, args: argparse.Namespace) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in TUNED}
    if setting == "tuned":
        env.update(TUNED)
    argv = [sys.executable, __file__, "--child", "--model", args.model, "--batch", str(args.batch),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {setting} child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = sorted(TUNED) if setting == "tuned" else []
    if result["malloc_env"] != expected:  # not an assert: it must hold under python -O too
        raise SystemExit(f"the {setting} child saw MALLOC variables {result['malloc_env']}, expected {expected}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_cifar", help="a registered model name (default: vit_cifar)")
    parser.add_argument("--batch", type=int, default=256, help="batch size (default: 256, the Keras recipe's)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per child (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one child per setting (default: 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(f"{args.model}, batch {args.batch}, {args.steps} timed steps after {args.warmup} per child, "
          f"{args.rounds} rounds; {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print("tuned: " + " ".join(f"{k}={v}" for k, v in TUNED.items()))
    print(f"{'round':>5} {'setting':>8} {'s/step':>7} {'user s':>7} {'sys s':>6} {'faults/step':>12}")
    ratios = []
    for r in range(args.rounds):
        order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
        results = {setting: run_child(setting, args) for setting in order}
        for setting in SETTINGS:
            m = results[setting]
            print(f"{r:>5} {setting:>8} {m['wall_s']:>7.3f} {m['user_s']:>7.2f} {m['sys_s']:>6.2f} {m['minflt']:>12,.0f}")
        ratios.append(results["default"]["wall_s"] / results["tuned"]["wall_s"])
    print(f"default / tuned wall time per step: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{q:.2f}' for q in ratios)}); threads {results['default']['threads']}, "
          f"load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
