"""Decoding: exact frames at sampled indices, fallbacks, bad files, real clips."""

import os

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from vivit_tl import system
from vivit_tl.data import DataConfig, read_video_views
from vivit_tl.data.decoding import ReadError, decoder_threads, read_frames, torchcodec_available
from vivit_tl.data.sampling import eval_clip_indices, train_clip_indices
from vivit_tl.data.writer import write_video
from vivit_tl.errors import UserError

from video_utils import (DECODERS, decode_in_order, make_bad_files, needs_decord, random_frames, write_faststart,
                         write_lossless, write_mpeg4_avi)

TORCHCODEC = DECODERS[2]


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("decoder", DECODERS)
def test_lossless_video_decodes_to_the_source_frames(tmp_path, decoder, threads):
    frames = random_frames(40)
    path = write_lossless(tmp_path / "lossless.mp4", frames)
    for u in (0.0, 0.37, 0.99):
        got, idx = read_frames(path, lambda n: train_clip_indices(n, 8, 3, u), decoder=decoder, num_threads=threads)
        assert idx.shape == (8,) and idx.max() < 40
        np.testing.assert_array_equal(got, frames[idx])
    got, idx = read_frames(path, lambda n: eval_clip_indices(n, 6, 4, num_clips=3), decoder=decoder, num_threads=threads)
    assert got.shape == (3, 6, 32, 32, 3)
    np.testing.assert_array_equal(got, frames[idx])
    # Unsorted and repeated indices come back in the order asked.
    got, _ = read_frames(path, lambda n: np.array([30, 2, 2, 17, 39]), decoder=decoder, num_threads=threads)
    np.testing.assert_array_equal(got, frames[[30, 2, 2, 17, 39]])


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("decoder", ["pyav", TORCHCODEC])
def test_seeking_readers_give_exact_frames_with_b_frames(tmp_path, threads, decoder):
    """Keyframes every 10 frames and B-frames: the seeking readers (PyAV's also skips unneeded
    non-reference frames) return exactly what a plain decode of every frame returns."""
    path = tmp_path / "bframes.mp4"
    write_video(path, random_frames(45, size=48), crf=23,
                x264_params="bframes=3:b-adapt=0:keyint=10:min-keyint=10:scenecut=0")
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
        reference = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
        assert {int(f.pict_type) for f in decoded} == {1, 2, 3}  # I, P and B frames
    for u in np.linspace(0, 0.99, 7):
        got, idx = read_frames(path, lambda n: train_clip_indices(n, 6, 3, u), decoder=decoder, num_threads=threads)
        np.testing.assert_array_equal(got, reference[idx])
    got, idx = read_frames(path, lambda n: eval_clip_indices(n, 4, 5, num_clips=3), decoder=decoder, num_threads=threads)
    np.testing.assert_array_equal(got, reference[idx])


@needs_decord
def test_decord_works_after_pytorchvideo_set_the_torch_bridge(tmp_path):
    import decord

    frames = random_frames(6)
    path = write_lossless(tmp_path / "v.mp4", frames)
    decord.bridge.set_bridge("torch")  # what `import pytorchvideo.data` does
    try:
        got, _ = read_frames(path, np.arange, decoder="decord")
    finally:
        decord.bridge.reset_bridge()
    np.testing.assert_array_equal(got, frames)


@pytest.mark.parametrize("decoder", ["auto", TORCHCODEC])
def test_truncated_video_is_clamped_to_the_frames_that_decode(tmp_path, decoder):
    frames = random_frames(30)
    full = write_faststart(tmp_path / "full.mp4", frames)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # the header still claims 30 frames
    seen = []
    got, idx = read_frames(cut, lambda n: seen.append(n) or np.arange(n), decoder=decoder)
    assert 0 < seen[-1] < 30  # only the frames that are really there
    assert idx.max() < seen[-1]
    np.testing.assert_array_equal(got, frames[idx])


@pytest.mark.parametrize("decoder", DECODERS)
def test_avi_with_b_frames_gives_the_frames_asked_for(tmp_path, decoder):
    # decord 0.6 seeks to wrong frames here (index 30 gives frame 32, 39 gives 38), and PyAV's
    # seeking by FFmpeg's guessed timestamps is off by one: both must decode in order instead.
    x = np.arange(64)
    frames = np.stack([np.broadcast_to((((x + 4 * t) % 64) * 4).astype(np.uint8)[None, :, None], (64, 64, 3)).copy()
                       for t in range(40)])  # [40, 64, 64, 3], a gradient sliding right
    frames[..., 1] = (6 * np.arange(40))[:, None, None]  # and brightening: every frame differs
    path = write_mpeg4_avi(tmp_path / "bframes.avi", frames)
    for pick in ([39], [5, 30], [5, 38, 39], [0, 20, 39]):
        got, _ = read_frames(path, lambda n: np.array(pick), decoder=decoder)
        np.testing.assert_array_equal(got, decode_in_order(path, pick), err_msg=str(pick))


@pytest.mark.parametrize("decoder", ["auto", TORCHCODEC])
def test_every_kind_of_bad_file_raises_a_read_error_with_its_reason(tmp_path, decoder):
    good = write_lossless(tmp_path / "good.mp4", random_frames(12))
    expected = make_bad_files(tmp_path / "bad", good)
    for name, reason in expected.items():
        with pytest.raises(ReadError) as info:
            read_frames(tmp_path / "bad" / name, np.arange, decoder=decoder)
        assert info.value.reason == reason, name
        assert name in str(info.value)


@pytest.mark.parametrize("decoder", DECODERS[:3])
def test_decoding_downscales_large_videos(tmp_path, decoder):
    frames = np.repeat(np.repeat(random_frames(4, size=16), 8, axis=1), 8, axis=2)[:, :96]  # [4, 96, 128, 3]
    landscape = write_lossless(tmp_path / "landscape.mp4", frames)
    portrait = write_lossless(tmp_path / "portrait.mp4", frames.transpose(0, 2, 1, 3).copy())
    got, _ = read_frames(landscape, np.arange, decoder=decoder, max_short_side=48)
    assert got.shape == (4, 48, 64, 3)
    assert np.abs(got.astype(int) - frames[:, ::2, ::2]).mean() < 40  # the same picture, smaller
    got, _ = read_frames(portrait, np.arange, decoder=decoder, max_short_side=48)
    assert got.shape == (4, 128, 96, 3)  # decord cannot resize to portrait: done later


def test_cuda_decoding_without_cuda_is_a_one_line_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    path = write_lossless(tmp_path / "v.mp4", random_frames(4))
    with pytest.raises(UserError, match="decode_device=cuda"):
        read_frames(path, np.arange, decoder="torchcodec", device="cuda")
    with pytest.raises(ValueError, match="decoder='torchcodec'"):
        DataConfig(decoder="pyav", decode_device="cuda")


@pytest.mark.skipif(not (torch.cuda.is_available() and torchcodec_available()), reason="needs CUDA and torchcodec")
def test_nvdec_frames_match_cpu_decoding(tmp_path):
    path = tmp_path / "yuv420.mp4"  # NVDEC decodes 4:2:0 H.264 (not the lossless RGB files)
    write_video(path, random_frames(40, size=64), crf=18, x264_params="bframes=2:keyint=10")
    pick = lambda n: np.array([0, 7, 21, n - 1])  # noqa: E731
    cpu, _ = read_frames(path, pick, decoder="torchcodec")
    gpu, _ = read_frames(path, pick, decoder="torchcodec", device="cuda")
    assert gpu.shape == cpu.shape and np.abs(gpu.astype(int) - cpu).mean() < 3  # colour conversion may differ


class _ThreadsSeen(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        return decoder_threads(None)


def test_decoder_threads_share_the_cpus_among_the_readers(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))  # an 8-CPU machine (workers fork)
    monkeypatch.setattr(system, "CGROUP_ROOT", tmp_path)  # without a container quota
    monkeypatch.setattr(system, "PROC_CGROUP", tmp_path / "self_cgroup")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert decoder_threads(3) == 3 and decoder_threads(None) == 8  # one reader: the main process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two training processes on this machine
    assert decoder_threads(None) == 4
    seen = torch.cat(list(DataLoader(_ThreadsSeen(), num_workers=2, batch_size=1)))  # each of 2 processes x 2 workers
    assert seen.tolist() == [2, 2]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert decoder_threads(None) == 16  # FFmpeg's cap
    (tmp_path / "cpu.max").write_text("300000 100000\n")  # a container limited to 3 of the 64 CPUs
    assert decoder_threads(None) == 3
    for bad in (0, True, "4"):
        with pytest.raises(ValueError, match="num_threads"):
            cfg = DataConfig()
            cfg.num_threads = bad
            cfg.validate()


REAL_CLIPS = {  # file: (frames, height, width)
    "kinetics_arm_wrestling.mp4": (280, 256, 340),
    "h264_340x256_300f.mp4": (300, 256, 340),
    "h264_32f.mp4": (32, 256, 340),
    "mpeg4_audio_320x240.avi": (164, 240, 320),
    "h264_1920x1080_72f.mp4": (72, 1080, 1920),
}


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clips_decode(shared_data, name):
    path = shared_data / "videos" / name
    frames, height, width = REAL_CLIPS[name]
    seen = []
    got, idx = read_frames(path, lambda n: seen.append(n) or np.array([0, n // 2, n - 1]), decoder="auto")
    assert seen == [frames] and got.shape == (3, height, width, 3)
    assert got.std() > 5  # real pictures, not blank frames
    ref = decode_in_order(path, [0, frames // 2, frames - 1])
    assert np.abs(got.astype(int) - ref).mean() < 3  # the frames asked for, up to colour conversion
    for decoder in ("pyav",) + (("torchcodec",) if torchcodec_available() else ()):
        got, _ = read_frames(path, lambda n: np.array([0, n // 2, n - 1]), decoder=decoder)
        assert np.abs(got.astype(int) - ref).mean() < 3, decoder
    cfg = DataConfig.from_preset("kinetics", kind="video_folder", num_frames=8, frame_stride=4, eval_clips=2)
    views, raw = read_video_views(path, cfg, return_frames=True)
    assert views.shape == (6, 3, 8, 224, 224) and raw.shape == (6, 8, 224, 224, 3)
    assert np.isfinite(views.numpy()).all()
