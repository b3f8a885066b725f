"""A/B of how `Attention` gets q, k, v: from the row blocks of the qkv weight (this project) or by splitting the
[N, L, 3hd] output of one qkv projection (the usual way, and ours before 2026-11-29).

Usage:
    python benchmarks/ab_attention_qkv.py                                   # Keras CIFAR-10 model, batch 256
    python benchmarks/ab_attention_qkv.py --model vivit_ti16x2 --batch 2 --frames 16 --size 224

Training steps (forward, cross-entropy, backward, AdamW) of the same model, weights and input with each
variant, interleaved over ``--rounds`` rounds in one process; prints wall-clock and process CPU seconds per
step per round (CPU time: all threads; less disturbed by other processes), the medians and their ratios. Both variants compute the same function with the same parameters (outputs and gradients
are compared before timing).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from einops import rearrange

from vivit_tl.models import create_model, layers


def split_output_forward(self: layers.Attention, x: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
    """The baseline: one [N, L, 3hd] projection split into q, k, v (backward: one stack + one permute copy)."""
    q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.num_heads).unbind(0)
    x = rearrange(self.attend(q, k, v, num_steps), "n h l d -> n l (h d)")
    return self.proj_drop(self.proj(x))


VARIANTS = {"weight blocks (ours)": layers.Attention.forward, "split output": split_output_forward}


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv)
    finally:
        layers.Attention.forward = VARIANTS["weight blocks (ours)"]


def run(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_cifar")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    y = torch.randint(10, (args.batch,))
    model = create_model(args.model, num_classes=10, num_frames=args.frames, image_size=args.size)
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    grads = {}
    for name, forward in VARIANTS.items():  # the same function: outputs and gradients agree
        layers.Attention.forward = forward
        model.eval().zero_grad()
        F.cross_entropy(model(x[:2]), y[:2]).backward()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    worst = max((a - b).abs().max().item() for a, b in zip(*grads.values()))
    print(f"{args.model}, {args.batch}x{args.frames}x{args.size}², {torch.get_num_threads()} threads; "
          f"max gradient difference between the variants: {worst:.1e}")

    def train_steps(opt: torch.optim.Optimizer, n: int) -> None:
        for _ in range(n):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}  # wall-clock s per step
    cpu_times: dict[str, list[float]] = {name: [] for name in VARIANTS}  # process CPU s per step (all threads)
    model.train()
    for _ in range(args.rounds):
        for name, forward in VARIANTS.items():
            layers.Attention.forward = forward
            model.load_state_dict(initial)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            train_steps(opt, 1)  # warm-up
            start, cpu_start = time.perf_counter(), time.process_time()
            train_steps(opt, args.steps)
            times[name].append((time.perf_counter() - start) / args.steps)
            cpu_times[name].append((time.process_time() - cpu_start) / args.steps)
    for what, table in (("wall", times), ("CPU", cpu_times)):
        for name, values in table.items():
            print(f"{what:>4} {name:>20}: " + " ".join(f"{v:.3f}" for v in values)
                  + f"  median {statistics.median(values):.3f} s/step")
        ours, base = (statistics.median(v) for v in table.values())
        print(f"{what:>4} split output / weight blocks: {base / ours:.2f}x")

if __name__ == "__main__":
    main()
