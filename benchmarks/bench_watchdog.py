"""What the decode watchdog costs per clip: training clips read directly against read under the watchdog.

Usage:
    python benchmarks/bench_watchdog.py                          # ../shared/data/videos/h264_340x256_300f.mp4
    python benchmarks/bench_watchdog.py VIDEO --frames 32 --stride 2 --rounds 5 --clips 20

Method. One process, one decoder thread, the dataset's training read (``read_frames`` at random
clip starts, decoded at ``--short-side``). Each round times ``--clips`` clips read directly
(``decode_timeout_s: 0``) and the same clips through the watchdog's helper process (the frames come
back pickled through a pipe), in alternating order from round to round. Reported: per-round
milliseconds per clip, the median over rounds of the ratio watchdog / direct, and the median cost of
the helper's round trip alone (the clip's bytes made by ``np.ones`` in the helper, less the same
made here). The helper is started before timing (once per DataLoader worker in training).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import numpy as np

from vivit_tl.data.decoding import read_frames
from vivit_tl.data.sampling import train_clip_indices
from vivit_tl.data.watchdog import call_with_timeout

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "h264_340x256_300f.mp4"


def time_clips(video: str, picks: list, timeout: float, short_side: int) -> float:
    """Seconds per clip for reading ``picks`` with watchdog ``timeout`` (0: directly)."""
    start = time.perf_counter()
    for pick in picks:
        frames, _ = call_with_timeout(timeout, video, read_frames, video, pick, num_threads=1,
                                      max_short_side=short_side)
    return (time.perf_counter() - start) / len(picks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    first = functools.partial(train_clip_indices, num_frames=args.frames, stride=args.stride, u=0.0)
    frames, _ = call_with_timeout(60, args.video, read_frames, args.video, first, num_threads=1,
                                  max_short_side=args.short_side)  # starts the helper
    print(f"{args.video}: clips of {args.frames} frames at stride {args.stride}, {frames.shape[1:]} per frame "
          f"({frames.nbytes / 2**20:.1f} MiB per clip), one decoder thread")
    print("round  direct_ms  watchdog_ms")
    ratios = []
    for r in range(args.rounds):
        picks = [functools.partial(train_clip_indices, num_frames=args.frames, stride=args.stride, u=float(u))
                 for u in rng.random(args.clips)]
        order = (0, 60) if r % 2 == 0 else (60, 0)
        seconds = {timeout: time_clips(args.video, picks, timeout, args.short_side) for timeout in order}
        ratios.append(seconds[60] / seconds[0])
        print(f"{r:5d}  {1000 * seconds[0]:9.1f}  {1000 * seconds[60]:11.1f}")
    print(f"watchdog / direct time per clip: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    transfer = []
    for _ in range(args.rounds * args.clips):  # the same bytes made without decoding: the helper's round trip
        start = time.perf_counter()
        call_with_timeout(60, args.video, np.ones, frames.shape, dtype=np.uint8)
        middle = time.perf_counter()
        np.ones(frames.shape, dtype=np.uint8)
        transfer.append(1000 * ((middle - start) - (time.perf_counter() - middle)))
    print(f"round trip of one clip's frames through the helper: median {statistics.median(transfer):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
