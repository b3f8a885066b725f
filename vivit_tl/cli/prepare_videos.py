"""Re-encode every video of a dataset for fast training: H.264, a short side, a keyframe every GOP frames.

Usage:
    vivit-tl prepare-videos SRC DST [--short-side 320] [--gop 16] [--crf 23] [--preset medium] [--workers N]

Writes each video under SRC to the same relative path under DST with the extension .mp4 (no audio,
downscaled so that its short side is at most --short-side, never upscaled). Annotation files
(.txt, .csv, .json) are copied with their video paths changed to .mp4. A rerun skips the videos
already written (each file appears under DST only once complete), so an interrupted run is resumed
by running it again. Unreadable videos are listed and not written. SRC is never changed.
Then train with data.root pointing at DST.
"""

from __future__ import annotations

from pathlib import Path

from vivit_tl.cli import make_parser
from vivit_tl.data.prepare import EncodeSettings, prepare_videos
from vivit_tl.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    defaults = EncodeSettings()
    parser = make_parser("prepare-videos", __doc__)
    parser.add_argument("src", type=Path, help="dataset folder to read (never changed)")
    parser.add_argument("dst", type=Path, help="output folder (created; outside SRC)")
    parser.add_argument("--short-side", type=int, default=defaults.short_side,
                        help=f"largest short side in pixels (default: {defaults.short_side})")
    parser.add_argument("--gop", type=int, default=defaults.gop, help=f"keyframe interval in frames (default: {defaults.gop})")
    parser.add_argument("--crf", type=int, default=defaults.crf, help=f"x264 quality, lower is better (default: {defaults.crf})")
    parser.add_argument("--preset", default=defaults.preset, help=f"x264 speed preset (default: {defaults.preset})")
    parser.add_argument("--workers", type=int, default=None, help="videos encoded at once (default: the usable CPUs)")
    args = parser.parse_args(argv)
    for name in ("short_side", "gop", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    settings = EncodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset)
    report = prepare_videos(args.src, args.dst, settings, workers=args.workers)
    for name, error in report.bad:
        print(f"bad file not written: {error}")
    print(f"{report.summary()} -> {args.dst}")
    return 0


if __name__ == "__main__":
    run_cli(main)
