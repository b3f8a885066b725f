"""Prepared videos: re-encode a dataset once so that every training clip decodes fast.

``prepare_videos(src, dst)`` writes every video under ``src`` to the same relative path under
``dst`` as H.264 in MP4 (``.mp4``: H.264 does not go in WebM), downscaled to a short side (never
upscaled), with a keyframe every ``gop`` frames and no audio. A clip then decodes from a keyframe
at most ``gop - 1`` frames before it, and from pictures no larger than the transforms need.

- Parallel: a process pool of ``workers`` files at a time, with a progress bar and its ETA.
- Resumable and atomic per file: a file is encoded into a hidden temporary name next to its
  target and renamed (``os.replace``) only when complete, so a file under ``dst`` is always
  whole, and a rerun skips the files that exist.
- Bad files (unreadable, no video stream, a decode error anywhere) are reported, not written.
- ``src`` is only read. Annotation files (``.txt``, ``.csv``, ``.json``) are copied, with every
  path ending in a video extension rewritten to end in ``.mp4``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from tqdm import tqdm

from vivit_tl.errors import UserError
from vivit_tl.system import usable_cpus

from .config import VIDEO_EXTENSIONS
from .decoding import DECODE_ERROR, NO_FRAMES, UNREADABLE, ReadError, short_side_size, check_file, probe

log = logging.getLogger("vivit_tl.data")

ANNOTATION_EXTENSIONS = (".txt", ".csv", ".json")
OUT_EXTENSION = ".mp4"
TMP_PREFIX = ".prepare-"  # temporary files: f"{TMP_PREFIX}{name}" next to their target
_VIDEO_PATH = re.compile(r"([^\s,\"';]+?)(" + "|".join(re.escape(e) for e in VIDEO_EXTENSIONS) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class EncodeSettings:
    """How each video is re-encoded (x264's ``crf`` and ``preset``)."""

    short_side: int = 320
    gop: int = 16
    crf: int = 23
    preset: str = "medium"
    threads: int = 1  # encoder and decoder threads per file


@dataclass
class PrepareReport:
    """What a `prepare_videos` run did: counts and the bad files with their reasons."""

    written: int = 0
    skipped: int = 0  # already prepared by an earlier run
    annotations: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path relative to src, error)

    def summary(self) -> str:
        return (f"{self.written} videos written, {self.skipped} already prepared, {len(self.bad)} bad "
                f"(not written), {self.annotations} annotation files copied")


def prepared_name(relative: Path) -> Path:
    """The path a video gets under ``dst``: the same, with the extension ``.mp4``."""
    return relative.with_suffix(OUT_EXTENSION)


def rewrite_annotation(text: str) -> str:
    """Annotation text with every path ending in a video extension ending in ``.mp4`` instead."""
    return _VIDEO_PATH.sub(lambda m: m.group(1) + OUT_EXTENSION, text)


def encode_video(src: Path, dst: Path, settings: EncodeSettings) -> int:
    """Re-encode ``src`` into ``dst`` (an .mp4 path, written in place: the caller handles atomicity).

    Returns:
        The number of frames written (every frame of the source).

    Raises:
        ReadError: the source cannot be read or fails to decode (``dst`` may then be partly written).
    """
    path = str(src)
    check_file(path)
    width, height = probe(path)[:2]
    if min(width, height) > settings.short_side:
        width, height = short_side_size(width, height, settings.short_side)
    width, height = width // 2 * 2, height // 2 * 2  # even sizes for 4:2:0
    frames = 0
    try:
        with av.open(path) as source, av.open(str(dst), mode="w", format="mp4") as out:
            stream_in = source.streams.video[0]
            stream_in.codec_context.thread_count = settings.threads
            rate = stream_in.average_rate or stream_in.guessed_rate or Fraction(30)
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = 1 / Fraction(rate)
            stream.options = {"crf": str(settings.crf), "preset": settings.preset, "threads": str(settings.threads),
                              "g": str(settings.gop), "keyint_min": str(settings.gop), "sc_threshold": "0"}
            for frame in source.decode(stream_in):
                picture = frame.reformat(width, height, format="yuv420p", interpolation="AREA",
                                         dst_color_range=av.video.reformatter.ColorRange.MPEG)  # limited range, as flagged
                picture.pts, picture.time_base = frames, stream.codec_context.time_base  # constant frame rate
                out.mux(stream.encode(picture))
                frames += 1
            out.mux(stream.encode())
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ReadError(path, DECODE_ERROR if frames else UNREADABLE, str(exc)) from None
    if frames == 0:
        raise ReadError(path, NO_FRAMES)
    return frames


def _prepare_one(job: tuple[Path, Path, EncodeSettings]) -> tuple[Path, str | None]:
    """Encode one file atomically; (source, None) or (source, the error). Runs in a pool worker."""
    src, dst, settings = job
    tmp = dst.with_name(TMP_PREFIX + dst.name)
    try:
        encode_video(src, tmp, settings)
        os.replace(tmp, dst)
    except ReadError as error:
        return src, str(error)
    finally:
        tmp.unlink(missing_ok=True)
    return src, None


def _copy_annotation(src: Path, dst: Path) -> None:
    """Copy an annotation file, paths rewritten (`rewrite_annotation`), atomically."""
    tmp = dst.with_name(TMP_PREFIX + dst.name)
    try:
        tmp.write_text(rewrite_annotation(src.read_text(encoding="utf-8")), encoding="utf-8")
    except UnicodeDecodeError:  # not text after all: an exact copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def prepare_videos(src: str | os.PathLike, dst: str | os.PathLike, settings: EncodeSettings = EncodeSettings(),
                   workers: int | None = None, progress: bool = True) -> PrepareReport:
    """Re-encode every video under ``src`` into the same layout under ``dst`` (see the module doc).

    Args:
        src: dataset folder (read only).
        dst: output folder (created); must not be inside ``src`` nor contain it.
        settings: target short side, keyframe interval and x264 quality.
        workers: files encoded at once (None: the usable CPUs).
        progress: show a tqdm progress bar.

    Raises:
        UserError: ``src`` is not a folder, or ``dst`` overlaps it.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise UserError(f"prepare-videos: source folder {src} does not exist")
    if dst == src or src in dst.parents or dst in src.parents:
        raise UserError(f"prepare-videos: the output folder {dst} must be outside the source folder {src}")
    workers = workers or usable_cpus()
    report = PrepareReport()
    jobs = []
    others = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith(TMP_PREFIX)):
        relative = path.relative_to(src)
        suffix = path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            target = dst / prepared_name(relative)
            if target.exists():
                report.skipped += 1
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                jobs.append((path, target, settings))
        elif suffix in ANNOTATION_EXTENSIONS:
            (dst / relative).parent.mkdir(parents=True, exist_ok=True)
            _copy_annotation(path, dst / relative)
            report.annotations += 1
        else:
            others += 1
    if others:
        log.info("prepare-videos: %d files that are neither videos nor annotations were not copied", others)
    bar = tqdm(total=len(jobs), desc="prepare-videos", unit="video", disable=not progress, dynamic_ncols=True)
    with multiprocessing.Pool(min(workers, max(len(jobs), 1))) as pool:
        for source, error in pool.imap_unordered(_prepare_one, jobs):
            bar.update(1)
            if error is None:
                report.written += 1
            else:
                report.bad.append((str(source.relative_to(src)), error))
    bar.close()
    report.bad.sort()
    return report
