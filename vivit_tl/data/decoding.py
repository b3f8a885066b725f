"""Reading frames: decord (default) with a PyAV fallback, torchcodec on request, and images through PIL.

Only the frames a clip needs are converted to RGB. Every failure becomes a `ReadError` with a
short ``reason`` (one of `REASONS`) and the decoder's message as ``detail``.

decord is optional (it has no wheels for macOS on Apple silicon nor for Linux aarch64) and is
imported on first use. Without it, ``decoder='auto'`` reads with PyAV (logged once) and
``decoder='decord'`` is a one-line :class:`~vivit_tl.errors.UserError` saying how to install it.
torchcodec (PyTorch's decoder, exact frame indices, CPU or CUDA/NVDEC) is optional the same way and
only used with ``decoder='torchcodec'``; it needs the system's FFmpeg libraries.
"""

from __future__ import annotations

import functools
import logging
import os
import types
from typing import Callable, Iterator, NamedTuple

import av
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vivit_tl.errors import UserError
from vivit_tl.system import usable_cpus

log = logging.getLogger("vivit_tl.data")

MISSING = "missing file"
ZERO_BYTE = "zero-byte file"
UNREADABLE = "not a video or unreadable"
NO_VIDEO_STREAM = "no video stream"
NO_FRAMES = "zero decodable frames"
DECODE_ERROR = "decode error"
NOT_AN_IMAGE = "not an image or unreadable"
TIMED_OUT = "decode timed out"  # stopped by the watchdog (vivit_tl.data.watchdog)
REASONS = (MISSING, ZERO_BYTE, UNREADABLE, NO_VIDEO_STREAM, NO_FRAMES, DECODE_ERROR, NOT_AN_IMAGE, TIMED_OUT)

# Maps a frame count to the wanted frame indices (any shape); called again with the true count
# when fewer frames decode than the container claims.
IndexPicker = Callable[[int], np.ndarray]


class ReadError(ValueError):
    """A file that cannot be used; ``reason`` is one of `REASONS`."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        lines = detail.strip().splitlines()
        self.path, self.reason, self.detail = str(path), reason, lines[0][:200] if lines else ""
        super().__init__(f"{self.path}: {reason}" + (f" ({self.detail})" if self.detail else ""))

    def __reduce__(self):  # pickled with its fields (it crosses from the decode helper process)
        return type(self), (self.path, self.reason, self.detail)


def check_file(path: str | os.PathLike) -> None:
    """Raise ReadError for a missing or empty file (before any decoder sees it)."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ReadError(path, MISSING, str(exc)) from None
    if size == 0:
        raise ReadError(path, ZERO_BYTE)


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side equal to ``short_side``, aspect kept."""
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class Probe(NamedTuple):
    """What the header of a video's first video stream says."""

    width: int
    height: int
    guessed_timestamps: bool  # see `_guessed_timestamps`: seeking decoders would pick wrong frames


@functools.lru_cache(maxsize=65536)
def probe(path: str) -> Probe:
    """Size and timestamp trouble of the first video stream, read from the header with PyAV (cached)."""
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            ctx = stream.codec_context
            return Probe(ctx.width, ctx.height, _guessed_timestamps(container, stream))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ReadError(path, UNREADABLE, str(exc)) from None


def probe_size(path: str) -> tuple[int, int]:
    """(width, height) of the first video stream."""
    return probe(path)[:2]


def decode_size(path: str, max_short_side: int | None) -> tuple[int, int] | None:
    """Size to ask the decoder for: downscale at decode time when the video is larger than needed."""
    if max_short_side is None:
        return None
    width, height = probe_size(path)
    if min(width, height) <= max_short_side or height > width:
        return None  # decord 0.6 fails to resize to a portrait size: those are resized later
    return short_side_size(width, height, max_short_side)


def _gather(frames: np.ndarray, uniq: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Frames decoded at sorted unique indices -> frames at ``idx`` (shape ``idx.shape + [H, W, 3]``)."""
    pos = np.searchsorted(uniq, idx.reshape(-1))
    return frames[pos].reshape(idx.shape + frames.shape[1:])


class _UnorderedTimestamps(Exception):
    """decord's frame index has missing or unordered timestamps (e.g. MPEG-4 with B-frames in AVI).

    decord 0.6 then seeks to the wrong frames (checked on such files: index 30 gives frame 32, the
    last index gives the one before it), so these files are read with PyAV, which decodes in order.
    """


@functools.lru_cache(maxsize=1)
def _import_decord() -> tuple[types.ModuleType | None, str]:
    """(decord, "") or (None, why it does not import); imported once, after torch."""
    try:
        import decord
    except (ImportError, OSError) as exc:  # OSError: a wheel whose native library does not load
        return None, str(exc)
    return decord, ""


def decord_available() -> bool:
    return _import_decord()[0] is not None


@functools.lru_cache(maxsize=1)
def _pyav_instead_of_decord() -> bool:
    """True when 'auto' means PyAV because decord is missing; says so once per process."""
    decord, why = _import_decord()
    if decord is None:
        log.warning("decord is not available (%s): videos are read with PyAV", why)
    return decord is None


def check_decoder(decoder: str, device: str = "cpu") -> None:
    """Resolve ``decoder`` (on ``device``) up front, in the main process: a UserError for a decoder that
    is not installed (decord, torchcodec) or a CUDA device this torch lacks, and the one log line for
    'auto' without decord (DataLoader workers forked later inherit the answer)."""
    if decoder == "decord":
        _require_decord()
    elif decoder == "auto":
        _pyav_instead_of_decord()
    elif decoder == "torchcodec" and not torchcodec_available():
        raise UserError("data.decoder=torchcodec but torchcodec does not load: pip install 'vivit-tl[torchcodec]' "
                        "and install FFmpeg (e.g. apt-get install ffmpeg), or use data.decoder=auto")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("data.decode_device=cuda but this torch has no usable CUDA device: use data.decode_device=cpu")


def _require_decord() -> types.ModuleType:
    decord, _ = _import_decord()
    if decord is None:
        raise UserError("data.decoder=decord but decord is not installed: pip install decord (Linux x86-64, "
                        "Windows, macOS x86-64), or use data.decoder=pyav / auto")
    return decord


@functools.lru_cache(maxsize=1)
def import_torchcodec() -> types.ModuleType | None:
    """``torchcodec.decoders``, or None when torchcodec (or the FFmpeg libraries it loads) is missing."""
    try:
        from torchcodec import decoders
    except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: no loadable FFmpeg
        log.warning("torchcodec is not available (%s)", str(exc).splitlines()[0] if str(exc) else exc)
        return None
    return decoders


def torchcodec_available() -> bool:
    return import_torchcodec() is not None


def _read_torchcodec(path: str, pick: IndexPicker, num_threads: int, size: tuple[int, int] | None,
                     device: str) -> tuple[np.ndarray, np.ndarray]:
    """torchcodec reader in exact seek mode (its frame index comes from a scan of every packet).

    ``device='cuda'`` decodes with NVDEC; the frames are copied back to the CPU for the transforms.
    """
    check_decoder("torchcodec", device)
    decoders = import_torchcodec()
    from torchcodec.transforms import Resize

    try:
        reader = decoders.VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=num_threads, device=device,
                                       seek_mode="exact", transforms=[Resize((size[1], size[0]))] if size else None)
    except (RuntimeError, ValueError) as exc:
        reason = NO_VIDEO_STREAM if "video stream" in str(exc).lower() else UNREADABLE
        raise ReadError(path, reason, str(exc)) from None
    if len(reader) == 0:
        raise ReadError(path, NO_FRAMES)
    idx = np.asarray(pick(len(reader)), dtype=np.int64)
    uniq = np.unique(idx)
    try:
        frames = reader.get_frames_at(uniq.tolist()).data.cpu().numpy()  # [U, H, W, 3]
    except (RuntimeError, IndexError) as exc:
        raise ReadError(path, DECODE_ERROR, str(exc)) from None
    return _gather(frames, uniq, idx), idx


def _read_decord(path: str, pick: IndexPicker, num_threads: int, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    decord = _require_decord()
    from decord._ffi.base import DECORDError

    width, height = size or (-1, -1)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads, width=width, height=height)
    except (DECORDError, RuntimeError) as exc:
        raise ReadError(path, UNREADABLE, str(exc)) from None
    if len(reader) == 0:
        raise ReadError(path, NO_FRAMES)
    start_times = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0]  # [N] seconds
    if not np.all(np.diff(start_times) > 0):
        raise _UnorderedTimestamps(path)
    idx = np.asarray(pick(len(reader)), dtype=np.int64)
    uniq = np.unique(idx)
    try:
        batch = reader.get_batch(uniq.tolist())
        # Another library (pytorchvideo) may have set decord's global bridge to torch.
        frames = batch.asnumpy() if hasattr(batch, "asnumpy") else batch.numpy()  # [U, H, W, 3]
    except (DECORDError, RuntimeError, IndexError) as exc:
        raise ReadError(path, DECODE_ERROR, str(exc)) from None
    return _gather(frames, uniq, idx), idx


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise ReadError(path, NO_VIDEO_STREAM)
    return container.streams.video[0]


def _packet_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[list, list[int]]:
    """One demux pass (no decoding): frame timestamps in presentation order and keyframe positions.

    Like decord's index. A truncated file yields the packets before the damage.
    """
    packets = []
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets.append((packet.pts, packet.is_keyframe))
    except av.error.FFmpegError:
        pass
    if _guessed_timestamps(container, stream) or any(pts is None for pts, _ in packets):
        return [None] * len(packets), []  # no keyframes: the caller decodes from the start
    packets.sort()
    return [pts for pts, _ in packets], [i for i, (_, key) in enumerate(packets) if key]


def _guessed_timestamps(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> bool:
    """AVI stores no presentation times: with B-frames the ones FFmpeg guesses are out of order."""
    return container.format.name == "avi" and bool(stream.codec_context.has_b_frames)


def _decode_seeking(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: list[int],
                    keys: list[int], wanted: list[int], size: tuple[int, int] | None) -> dict[int, np.ndarray]:
    """Decode from the keyframe before ``wanted[0]`` until every wanted frame is out.

    For H.264/HEVC, frames that are not wanted and that no other frame references are not decoded
    at all (``skip_frame='NONREF'`` for their packets).
    """
    kwargs = {"width": size[0], "height": size[1]} if size else {}
    ctx = stream.codec_context
    may_skip = ctx.name in ("h264", "hevc")
    index_of = {p: i for i, p in enumerate(pts)}
    need = set(wanted)
    got: dict[int, np.ndarray] = {}
    key = max((k for k in keys if k <= wanted[0]), default=0)
    try:
        container.seek(pts[key], stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            i = index_of.get(packet.pts)
            ctx.skip_frame = "NONREF" if may_skip and i is not None and i not in need else "DEFAULT"
            for frame in packet.decode():
                j = index_of.get(frame.pts)
                if j in need and j not in got:
                    got[j] = frame.to_ndarray(format="rgb24", **kwargs)
            if len(got) == len(need):
                break
    except av.error.FFmpegError:
        pass  # the seek failed or the file is damaged from here on: the caller falls back to counting frames
    return got


def _decode_sequential(path: str, wanted: set[int], last: int, num_threads: int,
                       size: tuple[int, int] | None) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the start up to frame ``last`` counting output frames; return the wanted ones
    and how many frames decoded (fewer than asked when the file is damaged)."""
    kwargs = {"width": size[0], "height": size[1]} if size else {}
    got: dict[int, np.ndarray] = {}
    count = 0
    with av.open(path) as container:
        stream = _video_stream(container, path)
        stream.codec_context.thread_count = num_threads
        try:
            for frame in container.decode(stream):
                if count in wanted:
                    got[count] = frame.to_ndarray(format="rgb24", **kwargs)
                count += 1
                if count > last:
                    break
        except av.error.FFmpegError:
            pass  # truncated or corrupt from here on: keep the frames that decoded
    return got, count


def _read_pyav(path: str, pick: IndexPicker, num_threads: int, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """PyAV reader: seek to the keyframe before the clip, decode only what the clip needs; if
    timestamps are missing or frames fail to decode, count frames from the start and re-pick."""
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            stream.codec_context.thread_count = num_threads
            pts, keys = _packet_index(container, stream)
            available = len(pts)
            if available and keys:
                idx = np.asarray(pick(available), dtype=np.int64)
                uniq = np.unique(idx)
                got = _decode_seeking(container, stream, pts, keys, uniq.tolist(), size)
                if len(got) == len(uniq):
                    return _gather(np.stack([got[i] for i in uniq.tolist()]), uniq, idx), idx
        for _ in range(2):  # sequential: a second pass only if fewer frames decode than indexed
            if available < 1:
                raise ReadError(path, NO_FRAMES)
            idx = np.asarray(pick(available), dtype=np.int64)
            uniq = np.unique(idx)
            got, count = _decode_sequential(path, set(uniq.tolist()), int(uniq[-1]), num_threads, size)
            if len(got) == len(uniq):
                return _gather(np.stack([got[i] for i in uniq.tolist()]), uniq, idx), idx
            available = count
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ReadError(path, UNREADABLE, str(exc)) from None
    raise ReadError(path, DECODE_ERROR, "frame count changed between passes")


def stream_frames(path: str | os.PathLike, *, num_threads: int = 1, max_short_side: int | None = None,
                  ) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a whole video in order with PyAV, one frame at a time: ``(time in seconds from the first frame,
    uint8 RGB frame [H, W, 3])``, downscaled while decoding to ``max_short_side`` (as `read_frames`).

    Memory stays at one frame however long the video. Raises ReadError for a file that cannot be opened
    or has no frames; a file damaged part-way ends the stream at the last frame that decoded.
    """
    path = str(path)
    check_file(path)
    size = decode_size(path, max_short_side) if max_short_side else None
    kwargs = {"width": size[0], "height": size[1]} if size else {}
    count, first = 0, None
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            stream.codec_context.thread_count = num_threads
            rate = float(stream.average_rate or 0) or None
            try:
                for frame in container.decode(stream):
                    time = frame.time if frame.time is not None else count / (rate or 1.0)
                    first = time if first is None else first
                    count += 1
                    yield time - first, frame.to_ndarray(format="rgb24", **kwargs)
            except av.error.FFmpegError:
                pass  # truncated or corrupt from here on: the frames that decoded were yielded
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ReadError(path, UNREADABLE, str(exc)) from None
    if count == 0:
        raise ReadError(path, NO_FRAMES)


MAX_AUTO_THREADS = 16  # FFmpeg's own cap for automatic threads (more is "not recommended" for H.264)


def decoder_threads(requested: int | None) -> int:
    """Decoder threads for one reader: ``requested``, or with None this machine's usable CPUs shared by
    the readers that run at once (the DataLoader workers of every local training process), 1 to 16.

    pytorchvideo's decord reader (and decord's own default) let FFmpeg choose, min(CPUs + 1, 16) in
    every reader, which oversubscribes the CPU as soon as there are several workers. The usable CPUs
    include a container's CPU quota (cgroup v1 or v2) (:func:`vivit_tl.system.usable_cpus`).
    """
    if requested is not None:
        return requested
    worker = torch.utils.data.get_worker_info()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)  # set by accelerate launch / torchrun
    readers = (worker.num_workers if worker is not None else 1) * max(1, local_processes)
    return min(MAX_AUTO_THREADS, max(1, usable_cpus() // readers))


def read_frames(path: str | os.PathLike, pick: IndexPicker, *, decoder: str = "auto", num_threads: int | None = 1,
                max_short_side: int | None = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames ``pick(num_frames)`` asks for, clamped to the frames that really decode.

    Args:
        path: video file.
        pick: frame count -> indices (any shape).
        decoder: 'decord', 'pyav', 'torchcodec' or 'auto' (decord, then PyAV for files decord cannot
            read; PyAV alone where decord is not installed). Files whose timestamps decord cannot order go
            to PyAV with either decord setting: decord would return wrong frames for them.
        num_threads: decoder threads (None: :func:`decoder_threads`' automatic share of the CPUs).
        max_short_side: downscale at decode time to this short side when the video is larger.
        device: 'cpu', or 'cuda' to decode with NVDEC (torchcodec only).

    Returns:
        (frames uint8 ``idx.shape + [H, W, 3]``, idx) with the indices actually used.

    Raises:
        ReadError: the file cannot give a single frame.
    """
    path = str(path)
    check_file(path)
    num_threads = decoder_threads(num_threads)
    size = decode_size(path, max_short_side)
    if decoder == "torchcodec":
        if probe(path).guessed_timestamps:  # torchcodec, like decord, would seek to the wrong frames
            return _read_pyav(path, pick, num_threads, size)
        try:
            return _read_torchcodec(path, pick, num_threads, size, device)
        except ReadError as error:
            if error.reason != DECODE_ERROR:
                raise
            return _read_pyav(path, pick, num_threads, size)  # damaged: PyAV keeps the frames that decode
    if decoder == "pyav" or (decoder == "auto" and _pyav_instead_of_decord()):
        return _read_pyav(path, pick, num_threads, size)
    try:
        return _read_decord(path, pick, num_threads, size)
    except _UnorderedTimestamps:
        return _read_pyav(path, pick, num_threads, size)
    except ReadError as decord_error:
        if decoder == "decord":
            raise
        try:
            return _read_pyav(path, pick, num_threads, size)
        except ReadError as pyav_error:
            if decord_error.reason == DECODE_ERROR and pyav_error.reason == UNREADABLE:
                raise decord_error from None
            raise pyav_error from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB image as a one-frame clip: uint8 ``[1, H, W, 3]``."""
    check_file(path)
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))[None]  # [1, H, W, 3], writable
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ReadError(path, NOT_AN_IMAGE, str(exc)) from None


def read_rawframes(frame_dir: str | os.PathLike, pick: IndexPicker, num_frames: int, *,
                   filename_tmpl: str = "img_{:05d}.jpg", start_index: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The frames ``pick(num_frames)`` of a folder of frame images (mmaction2's rawframes).

    Frame ``i`` (counted from 0) is ``frame_dir/filename_tmpl.format(i + start_index)``.

    Returns:
        (frames uint8 ``idx.shape + [H, W, 3]``, idx).

    Raises:
        ReadError: the folder or a needed frame is missing or unreadable, or frames differ in size.
    """
    if not os.path.isdir(frame_dir):
        raise ReadError(frame_dir, MISSING, "no such frame folder")
    idx = np.asarray(pick(num_frames), dtype=np.int64)
    uniq = np.unique(idx)
    frames = [read_image(os.path.join(frame_dir, filename_tmpl.format(int(i) + start_index)))[0] for i in uniq]
    if len({f.shape for f in frames}) > 1:
        raise ReadError(frame_dir, DECODE_ERROR, f"frames of different sizes {sorted({f.shape for f in frames})}")
    return _gather(np.stack(frames), uniq, idx), idx  # [U, H, W, 3] -> idx.shape + [H, W, 3]
