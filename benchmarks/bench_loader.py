"""Loader throughput: this project's video loader (decord, PyAV, torchcodec; 1 or 2 clips per decode) vs
pytorchvideo's and the decode limit, on videos as they are and after prepare-videos.

Usage:
    python benchmarks/bench_loader.py [--clips 48] [--rounds 3] [--workers 1] [--batch-size 8]
                                      [--videos PATH ...] [--large-videos PATH ...] [--copies 4]
                                      [--decoders auto pyav torchcodec] [--clips-per-video 1 2]
                                      [--no-prepare] [--threads N] [--out results.json]

Task: random 16x4-frame training clips (16 frames, stride 4), 224x224, from two sets of H.264 videos:
340x256 (by default 4 copies each of the two long 340x256 clips in ../shared/data/videos, in two
class folders) and 1080p (``--large-videos``, by default copies of the 1920x1080 clip there; an
absent file or an empty list skips the set). Each set is measured as it is and after
``prepare_videos`` (short side 320, a keyframe every 16 frames; ``--no-prepare`` skips it). All
contenders get the same files, the same torchvision v2 transforms (scale jitter 0.9-1.33 of short
side 256, random crop 224, flip, normalisation) and DataLoaders with the same batch size (in clips)
and workers:

- vivit_tl: ``build_dataset(kind='video_folder')`` with its default decoder threads (the usable CPUs divided
  among the workers; ``--threads`` to fix them), with each of ``--decoders``:
  ``auto`` (the default: decord, which seeks to the preceding keyframe, decodes from
  there and converts only the clip's frames), ``pyav`` (PyAV, which in addition
  does not decode unneeded frames that no other frame references) and ``torchcodec`` (CPU), each with
  ``clips_per_video`` 1 and 2 (2: two clips per decode, each counted);
- pytorchvideo 0.1.5: ``pytorchvideo.data.Kinetics`` (a ``LabeledVideoDataset``) with its decord
  backend (``decode_audio=False``; decord threads left at its default, 0 = auto) and a random
  clip sampler of 61 frames' duration; it decodes every frame of the window, and the transform
  subsamples 16 frames uniformly before the shared v2 transforms (``pytorchvideo.transforms``
  does not import with this torchvision).

The decode limit is the time to decode, in this process with one thread (PyAV), sequentially from
the preceding keyframe to the last frame each sampled clip needs, converting the needed frames to
RGB: no loader can produce single clips faster on one core (two clips of one decode can share
decoded frames and the file's opening, so ``clips_per_video`` 2 may pass it). Contenders are interleaved in rounds and the
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
from vivit_tl.data.prepare import EncodeSettings, prepare_videos
from vivit_tl.data.transforms import as_video, to_model_input, train_transform
from vivit_tl.engine.loader import collate_clips
from vivit_tl.errors import run_cli

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
DEFAULT_VIDEOS = ["kinetics_arm_wrestling.mp4", "h264_340x256_300f.mp4"]
DEFAULT_LARGE_VIDEOS = ["h264_1920x1080_72f.mp4"]
PREPARE = EncodeSettings(short_side=320, gop=16)  # the documented prepare-videos defaults
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


def ours_loader(cfg: DataConfig, clips: int, workers: int, batch_size: int, decoder: str = "auto",
                clips_per_video: int = 1) -> DataLoader:
    """Batches of ``batch_size`` clips, ``batch_size / clips_per_video`` videos (as the trainer forms them)."""
    ds = build_dataset(dataclasses.replace(cfg, decoder=decoder, clips_per_video=clips_per_video), "train", train=True)
    return DataLoader(ds, batch_size=max(1, batch_size // clips_per_video), num_workers=workers, collate_fn=collate_clips,
                      sampler=RandomSampler(ds, replacement=True, num_samples=max(1, clips // clips_per_video)))


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


def contenders(decoders: list[str], clips_per_video: list[int]) -> dict[str, functools.partial]:
    """Name -> loader factory ``(cfg, clips, workers, batch_size)``."""
    out = {f"{decoder}/k{k}": functools.partial(ours_loader, decoder=decoder, clips_per_video=k)
           for decoder in decoders for k in clips_per_video}
    out["pytorchvideo"] = functools.partial(ptv_loader)
    return out


def datasets(sets: dict[str, list[Path]], copies: int, prepare: bool, tmp: Path) -> dict[str, Path]:
    """``'<set>/original'`` (and ``'<set>/prepared'``) -> a dataset folder with ``train/class<k>/*.mp4``."""
    roots = {}
    for name, videos in sets.items():
        original = make_dataset_folder(videos, copies, tmp / name / "original")
        roots[f"{name}/original"] = original
        if prepare:
            report = prepare_videos(original, tmp / name / "prepared", PREPARE, progress=False)
            if report.bad:
                raise RuntimeError(f"prepare-videos failed on {report.bad}")
            roots[f"{name}/prepared"] = tmp / name / "prepared"
    return roots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--clips", type=int, default=48, help="clips per measurement (default 48)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="DataLoader workers (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch (default 8)")
    parser.add_argument("--videos", type=Path, nargs="+", default=None,
                        help=f"340x256 H.264 source videos (default: {', '.join(DEFAULT_VIDEOS)} from {SHARED_VIDEOS})")
    parser.add_argument("--large-videos", type=Path, nargs="*", default=None,
                        help=f"1080p videos (default: {', '.join(DEFAULT_LARGE_VIDEOS)} from {SHARED_VIDEOS}, "
                             "skipped when absent; none: skip the set)")
    parser.add_argument("--copies", type=int, default=4, help="copies of each video in the dataset folder")
    parser.add_argument("--decoders", nargs="+", default=["auto", "pyav", "torchcodec"],
                        choices=["auto", "decord", "pyav", "torchcodec"], help="this project's decoders to measure")
    parser.add_argument("--clips-per-video", type=int, nargs="+", default=[1, 2], help="data.clips_per_video values")
    parser.add_argument("--no-prepare", action="store_true", help="do not measure prepared copies of the videos")
    parser.add_argument("--threads", type=int, default=None,
                        help="decoder threads of this project's loader (default: its automatic choice, the usable "
                             "CPUs divided among the workers)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    sets = {"340x256": args.videos or [SHARED_VIDEOS / name for name in DEFAULT_VIDEOS]}
    for video in sets["340x256"]:
        if not video.is_file():
            raise FileNotFoundError(f"benchmark video not found: {video} (pass --videos)")
    large = [SHARED_VIDEOS / name for name in DEFAULT_LARGE_VIDEOS] if args.large_videos is None else args.large_videos
    if large and all(v.is_file() for v in large):
        sets["1080p"] = large
    else:
        print(f"1080p set skipped: {[str(v) for v in large if not v.is_file()] or 'no --large-videos'}")
    torch.manual_seed(0)
    loaders = contenders(args.decoders, args.clips_per_video)
    rates: dict[tuple[str, str, int], list[float]] = {}
    limits: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        roots = datasets(sets, args.copies, not args.no_prepare, Path(tmp))
        keys = [(data, name, w) for data in roots for name in loaders for w in args.workers]
        rates = {key: [] for key in keys}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            for data, root in roots.items():
                limits.setdefault(data, []).append(decode_limit(sorted(root.rglob("*.mp4")), args.clips, seed=r))
                print(f"  {data:18s} decode limit {limits[data][-1]:6.1f} clips/s", flush=True)
            for data, name, workers in keys if r % 2 == 0 else reversed(keys):  # alternate who goes first
                loader = loaders[name](config(roots[data], args.threads), args.clips, workers, args.batch_size)
                rates[(data, name, workers)].append(clips_per_second(loader))
                print(f"  {data:18s} {name:16s} workers={workers}: {rates[(data, name, workers)][-1]:6.1f} clips/s",
                      flush=True)
    print_table(rates, limits, args)
    if args.out:
        args.out.write_text(json.dumps({"decode_limit": limits,
                                        "rates": {f"{d}/{c}/{w}": v for (d, c, w), v in rates.items()},
                                        "clips": args.clips, "rounds": args.rounds, "threads": args.threads}, indent=1))
    return 0


def print_table(rates: dict[tuple[str, str, int], list[float]], limits: dict[str, list[float]],
                args: argparse.Namespace) -> None:
    """Median clips/s per setting, its ratio to pytorchvideo on the same files and to the decode limit,
    and to the default decoder (auto, one clip per video) on the original files of the same set."""
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n16x4-frame 224^2 training clips, {args.clips} clips x {args.rounds} rounds, batch {args.batch_size} clips, "
          f"vivit_tl decoder threads {args.threads or 'auto'}; median clips/s per setting")
    print("| videos | loader | workers | clips/s | / pytorchvideo | / decode limit | / default on original |")
    print("|---|---|---|---|---|---|---|")
    for (data, name, w), rate in med.items():
        limit = statistics.median(limits[data])
        ptv = med[(data, "pytorchvideo", w)]
        base = med.get((data.split("/")[0] + "/original", "auto/k1", w))
        print(f"| {data} | {name} | {w} | {rate:.1f} | {rate / ptv:.2f}x | {rate / limit:.0%} | "
              + (f"{rate / base:.2f}x |" if base else "- |"))
    for data, values in limits.items():
        print(f"decode limit {data} (one thread, from the preceding keyframe): {statistics.median(values):.1f} clips/s")


if __name__ == "__main__":
    run_cli(main)
