"""prepare_videos: re-encoded frames match the source at sampled indices, keyframes every gop frames,
reruns skip finished files, bad files are reported and not written, annotations follow, src is untouched."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest

from vivit_tl.data.decoding import read_frames
from vivit_tl.data.prepare import EncodeSettings, prepare_videos, rewrite_annotation
from vivit_tl.errors import UserError

from video_utils import write_lossless, write_mpeg4_avi

SETTINGS = EncodeSettings(short_side=48, gop=8, crf=18, preset="veryfast")
# H.264 4:2:0 at crf 18 on these smooth pictures: mean absolute error per frame (of 255) below this
# (measured 2.9-3.3; the 4:2:0 colour conversion alone costs 2.5). A frame one index off differs
# from the asked one by far more (checked below), so the indices are exact.
TOLERANCE = 4.0


def moving_gradient(num_frames: int, height: int, width: int) -> np.ndarray:
    """Smooth uint8 frames ``[F, H, W, 3]``: a gradient sliding right 6 px per frame, brightening."""
    x = np.arange(width)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = ((np.sin((x + 6 * t) / 9) + 1) * 100).astype(np.uint8)[None, :, None]
        frames[t, ..., 1] = 40 + 4 * t
    return frames


def tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path):
    """src/train/{a,b}/... : a lossless mp4, an MPEG-4 AVI, a corrupt file, a list file naming them."""
    src = tmp_path / "src"
    frames = moving_gradient(40, 48, 64)
    write_lossless(src / "train" / "a" / "v0.mp4", frames)
    (src / "train" / "b").mkdir(parents=True)
    write_mpeg4_avi(src / "train" / "b" / "v1.avi", frames)
    (src / "train" / "b" / "broken.mp4").write_bytes(b"not a video\n" * 50)
    (src / "train.txt").write_text("train/a/v0.mp4 0\ntrain/b/v1.avi 1\n")
    (src / "notes.md").write_text("not an annotation\n")
    return src, frames


def test_prepared_frames_match_the_source_at_sampled_indices(dataset, tmp_path):
    src, frames = dataset
    report = prepare_videos(src, tmp_path / "dst", EncodeSettings(short_side=64, gop=8, crf=18, preset="veryfast"),
                            workers=2, progress=False)
    assert (report.written, report.skipped, report.annotations) == (2, 0, 1)
    out = tmp_path / "dst" / "train" / "a" / "v0.mp4"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert not container.streams.audio and stream.codec_context.name == "h264"
        packets = sorted((p.pts, p.is_keyframe) for p in container.demux(stream) if p.size)
    keys = [i for i, (_, key) in enumerate(packets) if key]
    assert len(packets) == 40 and keys[0] == 0 and max(np.diff(keys + [40])) <= 8  # a keyframe every 8 frames
    pick = np.array([0, 5, 13, 22, 31, 39])
    got, idx = read_frames(out, lambda n: pick, decoder="pyav")
    error = np.abs(got.astype(int) - frames[idx]).mean(axis=(1, 2, 3))  # [6]
    assert error.max() < TOLERANCE, error
    neighbour = np.abs(got[1:].astype(int) - frames[idx[1:] - 1]).mean(axis=(1, 2, 3))
    assert neighbour.min() > 3 * TOLERANCE, neighbour  # one frame off would fail


def test_large_videos_are_downscaled_to_the_short_side(dataset, tmp_path):
    src, frames = dataset
    prepare_videos(src, tmp_path / "dst", SETTINGS, workers=1, progress=False)
    got, _ = read_frames(tmp_path / "dst" / "train" / "a" / "v0.mp4", np.arange, decoder="pyav")
    assert got.shape == (40, 48, 64, 3)  # 48 is the source's short side already: unchanged
    small = EncodeSettings(short_side=24, gop=8, crf=18, preset="veryfast")
    prepare_videos(src, tmp_path / "small", small, workers=1, progress=False)
    got, _ = read_frames(tmp_path / "small" / "train" / "a" / "v0.mp4", np.arange, decoder="pyav")
    assert got.shape == (40, 24, 32, 3)
    assert np.abs(got.astype(int) - frames[:, ::2, ::2]).mean() < 10  # the same pictures, smaller


def test_rerun_skips_finished_files_bad_files_are_reported_and_src_is_untouched(dataset, tmp_path):
    src, _ = dataset
    before = tree_digest(src)
    dst = tmp_path / "dst"
    first = prepare_videos(src, dst, SETTINGS, workers=2, progress=False)
    assert [name for name, _ in first.bad] == ["train/b/broken.mp4"]
    assert "not a video or unreadable" in first.bad[0][1]
    assert sorted(tree_digest(dst)) == ["train.txt", "train/a/v0.mp4", "train/b/v1.mp4"]  # nothing else, no temp files
    assert (dst / "train.txt").read_text() == "train/a/v0.mp4 0\ntrain/b/v1.mp4 1\n"  # the extension followed
    written = {p: p.stat().st_mtime_ns for p in dst.rglob("*.mp4")}
    again = prepare_videos(src, dst, SETTINGS, workers=2, progress=False)
    assert (again.written, again.skipped, len(again.bad)) == (0, 2, 1)
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.mp4")} == written  # not encoded again
    (dst / "train" / "b" / "v1.mp4").unlink()  # an interrupted run's missing file is made on the next
    assert prepare_videos(src, dst, SETTINGS, workers=1, progress=False).written == 1
    assert tree_digest(src) == before


def test_output_inside_the_source_is_refused(dataset):
    src, _ = dataset
    with pytest.raises(UserError, match="outside the source"):
        prepare_videos(src, src / "prepared", SETTINGS, progress=False)
    with pytest.raises(UserError, match="does not exist"):
        prepare_videos(src / "nope", src.parent / "out", SETTINGS, progress=False)


def test_annotation_paths_get_the_mp4_extension():
    assert rewrite_annotation("a/b c.AVI 3\nx.webm,1\n{\"p\": \"y.mkv\"}\nz.mp4 2\n") == \
        "a/b c.mp4 3\nx.mp4,1\n{\"p\": \"y.mp4\"}\nz.mp4 2\n"


def test_prepare_videos_command(dataset, tmp_path, capsys):
    from vivit_tl import cli

    src, _ = dataset
    for expected in (2, 0):  # the rerun writes nothing
        with pytest.raises(SystemExit) as info:
            cli.main(["prepare-videos", str(src), str(tmp_path / "dst"), "--short-side", "48", "--gop", "8",
                      "--workers", "1"])
        out = capsys.readouterr().out
        assert info.value.code == 0 and f"{expected} videos written" in out
        assert "bad file not written" in out and "broken.mp4" in out
    with pytest.raises(SystemExit) as info:
        cli.main(["prepare-videos", str(src), str(src / "inside")])
    assert info.value.code == 2 and "error: prepare-videos: the output folder" in capsys.readouterr().err
