"""Loader throughput: this project's video loader vs pytorchvideo's, and the decode limit.

Usage:
    python benchmarks/bench_loader.py [--clips 48] [--rounds 3] [--workers 0 1 2] [--batch-size 8]
                                      [--videos PATH ...] [--copies 4] [--threads N] [--out results.json]

Task: random 16x4-frame training clips (16 frames, stride 4), 224x224, from 340x256 H.264 videos
(by default 4 copies each of the two long 340x256 clips in ../shared/data/videos, in two class
folders). Both contenders get the same files, the same torchvision v2 transforms (scale jitter
0.9-1.33 of short side 256, random crop 224, flip, normalisation) and DataLoaders with the same
batch size and 0, 1 and 2 workers:

- vivit_tl: ``build_dataset(kind='video_folder')`` with its default decoder threads (the usable CPUs divided
  among the workers; ``--threads`` to fix them), in two settings:
  ``decoder='auto'`` (the default: decord, which seeks to the preceding keyframe, decodes from
  there and converts only the clip's frames) and ``decoder='pyav'`` (PyAV, which in addition
  does not decode unneeded frames that no other frame references);
- pytorchvideo 0.1.5: ``pytorchvideo.data.Kinetics`` (a ``LabeledVideoDataset``) with its decord
  backend (``decode_audio=False``; decord threads left at its default, 0 = auto) and a random
  clip sampler of 61 frames' duration; it decodes every frame of the window, and the transform
  subsamples 16 frames uniformly before the shared v2 transforms (``pytorchvideo.transforms``
  does not import with this torchvision).

The decode limit is the time to decode, in this process with one thread (PyAV), sequentially from
the preceding keyframe to the last frame each sampled clip needs, converting the needed frames to
RGB: no loader can produce clips faster on one core. Contenders are interleaved in rounds and the
median rate per configuration is reported (the machine may be shared). Rates exclude the first
batch (worker start-up).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from vivit_tl.data import DataConfig, build_dataset
from vivit_tl.data.sampling import train_clip_indices
from vivit_tl.data.transforms import as_video, to_model_input, train_transform
from vivit_tl.errors import run_cli

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
DEFAULT_VIDEOS = ["kinetics_arm_wrestling.mp4", "h264_340x256_300f.mp4"]
NUM_FRAMES, STRIDE = 16, 4


def config(root: Path, threads: int | None) -> DataConfig:
    return DataConfig.from_preset("kinetics", kind="video_folder", root=str(root), num_frames=NUM_FRAMES,
                                  frame_stride=STRIDE, num_workers=0, num_threads=threads)


def make_dataset_folder(videos: list[Path], copies: int, out: Path) -> Path:
    """``out/train/class<k>/<name>_<i>.mp4``: each video copied ``copies`` times, class = source video."""
    for k, video in enumerate(videos):
        folder = out / "train" / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(copies):
            shutil.copy(video, folder / f"{video.stem}_{i}{video.suffix}")
    return out


class PtvTransform:
    """pytorchvideo's item dict -> (clip [3, F, H, W], label): uniform 16-frame subsample + our v2 transforms."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg, self.spatial = cfg, train_transform(cfg)

    def __call__(self, item: dict) -> tuple[torch.Tensor, int]:
        video = item["video"]  # [3, T, H, W] float 0..255
        idx = torch.linspace(0, video.shape[1] - 1, NUM_FRAMES).round().long()  # pytorchvideo's uniform subsample
        frames = video[:, idx].permute(1, 2, 3, 0).to(torch.uint8)  # [F, H, W, 3]
        return to_model_input(self.spatial(as_video(frames)), self.cfg), item["label"]


def ours_loader(cfg: DataConfig, clips: int, workers: int, batch_size: int, decoder: str = "auto") -> DataLoader:
    ds = build_dataset(dataclasses.replace(cfg, decoder=decoder), "train", train=True)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers,
                      sampler=RandomSampler(ds, replacement=True, num_samples=clips))


def ptv_loader(cfg: DataConfig, clips: int, workers: int, batch_size: int) -> DataLoader:
    from pytorchvideo.data import Kinetics, make_clip_sampler

    span_s = ((NUM_FRAMES - 1) * STRIDE + 1) / 30.0  # 61 frames at 30 fps
    ds = Kinetics(data_path=str(Path(cfg.root) / "train"), clip_sampler=make_clip_sampler("random", span_s),
                  video_sampler=functools.partial(RandomSampler, replacement=True, num_samples=clips),
                  transform=PtvTransform(cfg), decode_audio=False, decoder="decord")
    return DataLoader(ds, batch_size=batch_size, num_workers=workers)


def clips_per_second(loader: DataLoader) -> float:
    """Clips/s after the first batch (which includes worker start-up)."""
    it = iter(loader)
    first = next(it)[0].shape[0]
    start, count = time.perf_counter(), 0
    for batch in it:
        count += batch[0].shape[0]
    elapsed = time.perf_counter() - start
    del it
    if count == 0:
        raise ValueError(f"only {first} clips: use more --clips than --batch-size")
    return count / elapsed


def keyframe_table(path: Path) -> tuple[list[int], list[int]]:
    """Presentation timestamps in frame order and the indices of keyframes (one demux pass)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
    packets.sort()
    return [pts for pts, _ in packets], [i for i, (_, key) in enumerate(packets) if key]


def decode_limit(paths: list[Path], clips: int, seed: int = 0) -> float:
    """Clips/s of decoding only what each random clip needs, from its preceding keyframe, one thread."""
    rng = np.random.default_rng(seed)
    tables = {p: keyframe_table(p) for p in paths}
    elapsed = 0.0
    for _ in range(clips):
        path = paths[rng.integers(len(paths))]
        pts, keys = tables[path]
        idx = train_clip_indices(len(pts), NUM_FRAMES, STRIDE, rng.uniform())
        key = max(k for k in keys if k <= idx[0])
        wanted, last = set(idx.tolist()), int(idx[-1])
        start = time.perf_counter()
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            container.seek(pts[key], stream=stream, backward=True, any_frame=False)
            index_of = {p: i for i, p in enumerate(pts)}
            got = 0
            for frame in container.decode(stream):
                i = index_of.get(frame.pts, -1)
                if i in wanted:
                    frame.to_ndarray(format="rgb24")
                    got += 1
                if i >= last:
                    break
        elapsed += time.perf_counter() - start
        if got != len(wanted):
            raise RuntimeError(f"decode-limit reader got {got} of {len(wanted)} frames of {path}")
    return clips / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--clips", type=int, default=48, help="clips per measurement (default 48)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers (default 0 1 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--videos", type=Path, nargs="+", default=None,
                        help=f"340x256 H.264 source videos (default: {', '.join(DEFAULT_VIDEOS)} from {SHARED_VIDEOS})")
    parser.add_argument("--copies", type=int, default=4, help="copies of each video in the dataset folder")
    parser.add_argument("--threads", type=int, default=None,
                        help="decoder threads of this project's loader (default: its automatic choice, the usable "
                             "CPUs divided among the workers)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    videos = args.videos or [SHARED_VIDEOS / name for name in DEFAULT_VIDEOS]
    for video in videos:
        if not video.is_file():
            raise FileNotFoundError(f"benchmark video not found: {video} (pass --videos)")
    torch.manual_seed(0)
    contenders = {"vivit_tl": ours_loader, "vivit_tl_pyav": functools.partial(ours_loader, decoder="pyav"),
                  "pytorchvideo": ptv_loader}
    rates: dict[tuple[str, int], list[float]] = {(c, w): [] for c in contenders for w in args.workers}
    limits = []
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = make_dataset_folder(videos, args.copies, Path(tmp))
        cfg = config(root, args.threads)
        files = sorted(root.rglob("*.mp4"))
        for r in range(args.rounds):
            limits.append(decode_limit(files, args.clips, seed=r))
            print(f"round {r + 1}/{args.rounds}: decode limit {limits[-1]:.1f} clips/s", flush=True)
            order = list(rates) if r % 2 == 0 else list(reversed(rates))  # alternate who goes first
            for name, workers in order:
                rate = clips_per_second(contenders[name](cfg, args.clips, workers, args.batch_size))
                rates[(name, workers)].append(rate)
                print(f"  {name:13s} workers={workers}: {rate:6.1f} clips/s", flush=True)
    limit = statistics.median(limits)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n16x4-frame 224^2 training clips from 340x256 H.264, {len(files)} videos, {args.clips} clips x "
          f"{args.rounds} rounds, batch {args.batch_size}, vivit_tl decoder threads {args.threads or 'auto'}; median clips/s")
    print("| workers | vivit_tl (decord) | vivit_tl (pyav) | pytorchvideo | decord / ptv | pyav / ptv "
          "| decord / limit | pyav / limit |")
    print("|---|---|---|---|---|---|---|---|")
    for w in args.workers:
        ours, pyav, ptv = med[("vivit_tl", w)], med[("vivit_tl_pyav", w)], med[("pytorchvideo", w)]
        print(f"| {w} | {ours:.1f} | {pyav:.1f} | {ptv:.1f} | {ours / ptv:.2f}x | {pyav / ptv:.2f}x "
              f"| {ours / limit:.0%} | {pyav / limit:.0%} |")
    print(f"decode limit (one thread, from the preceding keyframe): {limit:.1f} clips/s")
    if args.out:
        args.out.write_text(json.dumps({"decode_limit": limits, "rates": {f"{c}/{w}": v for (c, w), v in rates.items()},
                                        "clips": args.clips, "rounds": args.rounds, "threads": args.threads}, indent=1))
    return 0


if __name__ == "__main__":
    run_cli(main)
