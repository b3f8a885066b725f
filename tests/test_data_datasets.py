"""Video datasets: config, items, bad files across workers, evaluation views, class maps, list/CSV layouts."""

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vivit_tl.data import DataConfig, build_dataset, prepare_dataset, read_video_views
from vivit_tl.data.datasets import TooManyBadFiles
from vivit_tl.errors import UserError

from video_utils import make_bad_files, make_video_folder, random_frames, write_lossless

PLAIN = dict(num_frames=4, frame_stride=2, image_size=32, short_side=32, scale_jitter=[1.0, 1.0],
             hflip=False, mean=None, std=None)  # no resize, no flip, no normalisation: exact pixels


def folder_cfg(root, **overrides) -> DataConfig:
    return DataConfig.from_dict({"kind": "video_folder", "root": str(root), **PLAIN, **overrides})


def test_config_from_dict_validates_and_round_trips():
    with pytest.raises(ValueError, match=r"unknown data config key\(s\) \['num_frame'\] \(did you mean 'num_frames'\?\); valid keys: \[.*'num_frames'"):
        DataConfig.from_dict({"num_frame": 8})
    with pytest.raises(ValueError, match="unknown data preset 'kinetic'"):
        DataConfig.from_dict({"preset": "kinetic"})
    with pytest.raises(ValueError, match="kind='videos'"):
        DataConfig(kind="videos")
    with pytest.raises(ValueError, match="eval_crops=2"):
        DataConfig(eval_crops=2)
    cfg = DataConfig.from_preset("kinetics", kind="video_folder", root="/data", eval_clips=2)
    assert (cfg.num_frames, cfg.frame_stride, cfg.image_size, cfg.num_views) == (32, 2, 224, 6)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg


def test_training_clip_is_the_source_frames(tmp_path):
    make_video_folder(tmp_path, {"a": 1, "b": 1}, num_frames=12)
    source = random_frames(12, seed=100)  # class 'b', video 0
    ds = build_dataset(folder_cfg(tmp_path), "train", train=True)
    assert ds.video_names == ["train/a/v0.mp4", "train/b/v0.mp4"]
    for _ in range(5):
        clip, label, index = ds[1]
        assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32 and (label, index) == (1, 1)
        frames = (clip.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()  # [F, H, W, 3]
        start = [s for s in range(12 - 6) if np.array_equal(source[s: s + 7: 2], frames)]
        assert len(start) == 1


def test_clips_per_video_are_random_clips_of_one_decode(tmp_path, monkeypatch):
    from vivit_tl.data import datasets

    make_video_folder(tmp_path, {"a": 1, "b": 1}, num_frames=40)
    source = random_frames(40, seed=100)  # class 'b', video 0
    decodes = []
    read_frames = datasets.read_frames
    monkeypatch.setattr(datasets, "read_frames", lambda *a, **k: decodes.append(a[0]) or read_frames(*a, **k))
    # decode_timeout_s=0: decoded in this process, where the counting reader is (the watchdog forks a helper)
    ds = build_dataset(folder_cfg(tmp_path, clips_per_video=3, decode_timeout_s=0), "train", train=True)
    starts = set()
    for _ in range(4):
        clips, label, index = ds[1]
        assert clips.shape == (3, 3, 4, 32, 32) and (label, index) == (1, 1)
        for clip in clips:  # each one of the video's clips
            frames = (clip.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()  # [F, H, W, 3]
            start = [s for s in range(40 - 6) if np.array_equal(source[s: s + 7: 2], frames)]
            assert len(start) == 1
            starts.add(start[0])
    assert len(decodes) == 4  # one decode per item, not per clip
    assert len(starts) > 4  # the clips of an item start at different places


def test_training_transforms_and_normalisation(tmp_path):
    make_video_folder(tmp_path, {"a": 2}, num_frames=12, size=48)
    cfg = DataConfig.from_dict({"kind": "video_folder", "root": str(tmp_path), "num_frames": 4, "image_size": 32,
                                "short_side": 40, "hflip": True, "scale_jitter": [0.9, 1.3]})
    ds = build_dataset(cfg, "train", train=True)
    clips = torch.stack([ds[0][0] for _ in range(6)])
    assert clips.shape == (6, 3, 4, 32, 32)
    assert abs(clips.mean()) < 0.5 and 0.5 < clips.std() < 2  # ImageNet-normalised uniform noise
    assert not torch.equal(clips[0], clips[1])  # random crops differ
    loader = DataLoader(ds, batch_size=2)
    x, y, i = next(iter(loader))
    assert x.shape == (2, 3, 4, 32, 32) and y.tolist() == [0, 0] and i.tolist() == [0, 1]


@pytest.mark.parametrize("num_workers,start", [(0, None), (2, "fork"), (2, "spawn")])
def test_bad_files_are_skipped_and_counted_and_good_files_all_seen(tmp_path, num_workers, start, caplog):
    good = make_video_folder(tmp_path, {"a": 3, "b": 3}, num_frames=10)
    expected = make_bad_files(tmp_path / "train" / "b", good[0])
    ds = build_dataset(folder_cfg(tmp_path), "train", train=True)
    assert len(ds) == 6 + len(expected)
    bad_index = {i for i, name in enumerate(ds.video_names) if name.split("/")[-1] in expected}
    loader = DataLoader(ds, batch_size=3, num_workers=num_workers, multiprocessing_context=start,
                        persistent_workers=start == "spawn")  # spawn: start the workers once
    with caplog.at_level(logging.WARNING, logger="vivit_tl.data"):
        for epoch in (1, 2):
            seen = [int(i) for _, _, batch in loader for i in batch]
            assert len(seen) == len(ds)
            assert set(range(len(ds))) - bad_index <= set(seen)  # every good file is seen
            assert not set(seen) & bad_index  # bad files are never served
            assert ds.num_skipped == epoch * len(expected)  # total over all workers
    assert {name.split("/")[-1]: reason for name, reason in ds.bad_files()} == expected
    if num_workers == 0:  # worker logs do not reach caplog; with workers the shared flags give the same once-only
        logged = [r.getMessage() for r in caplog.records if "bad file skipped" in r.getMessage()]
        assert len(logged) == len(expected)
        assert all(any(name in m for m in logged) for name in expected)


def test_too_many_bad_files_in_a_row_is_a_clear_error(tmp_path):
    good = make_video_folder(tmp_path / "src", {"a": 1})
    make_bad_files(tmp_path / "train" / "a", good[0])
    ds = build_dataset(folder_cfg(tmp_path, max_tries=3), "train", train=True)
    with pytest.raises(TooManyBadFiles, match="bad files.*check-dataset"):
        ds[0]


def test_evaluation_views_clips_crops_and_video_ids(tmp_path):
    frames = [random_frames(20, size=40, seed=s)[:, :32] for s in range(3)]  # [20, 32, 40, 3]: landscape
    for s, f in enumerate(frames):
        write_lossless(tmp_path / "val" / ("a" if s < 2 else "b") / f"v{s}.mp4", f)
    (tmp_path / "val" / "b" / "broken.mp4").write_bytes(b"not a video")
    cfg = folder_cfg(tmp_path, image_size=24, eval_clips=2, eval_crops=3)
    ds = build_dataset(cfg, "val", train=False)
    assert ds.num_views == 6 and len(ds) == 4 * 6
    assert ds.video_names == ["val/a/v0.mp4", "val/a/v1.mp4", "val/b/broken.mp4", "val/b/v2.mp4"]
    items = [ds[i] for i in range(len(ds))]
    assert [i for _, _, i in items] == [v for v in range(4) for _ in range(6)]
    assert [y for _, y, _ in items] == [0] * 12 + [-1] * 6 + [1] * 6
    assert all(not x.any() for x, y, _ in items if y == -1)  # unreadable video: zero clips
    assert ds.bad_files() == [("val/b/broken.mp4", "not a video or unreadable")]
    clips = [[3, 5, 7, 9], [10, 12, 14, 16]]  # span 7, slack 13: 2 segments of 7 starts, centred
    for view, (clip, _, _) in enumerate(items[18:24]):
        idx, crop = clips[view // 3], view % 3
        left = (0, 8, 16)[crop]  # left / centre / right along the long side
        expected = frames[2][idx][:, 4:28, left: left + 24]
        got = (clip.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(got, expected)
    views, raw = read_video_views(tmp_path / "val" / "b" / "v2.mp4", cfg, return_frames=True)
    assert torch.equal(views, torch.stack([x for x, _, _ in items[18:24]]))
    assert raw.shape == (6, 4, 24, 24, 3) and raw.dtype == torch.uint8
    with pytest.raises(ValueError, match="broken.mp4: not a video"):
        read_video_views(tmp_path / "val" / "b" / "broken.mp4", cfg)


def test_class_maps_are_sorted_shared_and_pinnable(tmp_path):
    make_video_folder(tmp_path, {"zebra": 1, "apple": 1, "mango": 1}, split="train")
    make_video_folder(tmp_path, {"mango": 1}, split="val")
    cfg = folder_cfg(tmp_path)
    train = build_dataset(cfg, "train", train=True)
    val = build_dataset(cfg, "val", train=False)
    assert train.classes == val.classes == ["apple", "mango", "zebra"]
    assert val.labels == [1]  # the train split's map, not the val folder's own
    assert build_dataset(cfg, "train", train=True).classes == train.classes
    pinned = build_dataset(folder_cfg(tmp_path, classes=["zebra", "mango", "apple", "pear"]), "val", train=False)
    assert pinned.labels == [1] and pinned.classes[-1] == "pear"
    with pytest.raises(ValueError, match=r"classes \['zebra'\] that are not in the class list"):
        build_dataset(folder_cfg(tmp_path, classes=["apple", "mango"]), "train", train=True)
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        build_dataset(cfg, "test", train=False)
    with pytest.raises(FileNotFoundError, match="dataset root not found"):
        prepare_dataset(folder_cfg(tmp_path / "nowhere"))


def test_video_list_and_kinetics_csv(tmp_path):
    make_video_folder(tmp_path / "videos", {"x": 2, "y": 1}, num_frames=8)
    (tmp_path / "train.txt").write_text("videos/train/x/v0.mp4 0\nvideos/train/y/v0.mp4 2\n# comment\n\n"
                                        "videos/train/x/v1.mp4 1\nvideos/missing.mp4 0\n")
    ds = build_dataset(DataConfig(kind="video_list", root=str(tmp_path), **PLAIN), "train", train=True)
    assert ds.classes == ["0", "1", "2"] and ds.labels == [0, 2, 1, 0]
    seen = {int(i) for _, _, i in (ds[k] for k in range(4))}
    assert seen <= {0, 1, 2} and ds.num_skipped == 1 and ds.bad_files() == [("videos/missing.mp4", "missing file")]
    (tmp_path / "bad.txt").write_text("videos/train/x/v0.mp4 zero\n")
    with pytest.raises(ValueError, match="bad.txt:1: expected 'relative/path label'"):
        build_dataset(DataConfig(kind="video_list", root=str(tmp_path), list_file="bad.txt", **PLAIN), "train", True)

    # Kinetics CSV, files named <youtube_id>_<start>_<end>.mp4 under <split>/<label>/.
    for youtube_id, label in (("abc", "arm wrestling"), ("def", "yoga")):
        write_lossless(tmp_path / "k400" / "val" / label / f"{youtube_id}_000010_000020.mp4", random_frames(8))
    (tmp_path / "k400" / "val.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                               "yoga,def,10,20,val\narm wrestling,abc,10,20,val\n")
    cfg = DataConfig(kind="kinetics_csv", root=str(tmp_path / "k400"), **PLAIN)
    ds = build_dataset(cfg, "val", train=False)
    assert ds.classes == ["arm wrestling", "yoga"] and ds.labels == [1, 0]
    assert ds.video_names == ["val/yoga/def_000010_000020.mp4", "val/arm wrestling/abc_000010_000020.mp4"]
    assert [y for _, y, _ in (ds[0], ds[1])] == [1, 0]
    flat = DataConfig(kind="kinetics_csv", root=str(tmp_path / "k400"), path_pattern="{youtube_id}.mkv", **PLAIN)
    with pytest.raises(UserError, match=r"^2 of 2 listed videos of split 'val' are missing, e\.g\. \S+/k400/def\.mkv, "
                                        r"\S+/k400/abc\.mkv: check data\.root .* and data\.data_prefix"):
        build_dataset(flat, "val", train=False)  # most files absent: an error before any training

    # one CSV for every split (csv_file without {split}): each split takes its own rows
    (tmp_path / "k400" / "all.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                               "yoga,def,10,20,val\narm wrestling,abc,10,20,train\n"
                                               "yoga,ghi,0,10,train\n")
    for name in ("arm wrestling/abc_000010_000020.mp4", "yoga/ghi_000000_000010.mp4"):
        write_lossless(tmp_path / "k400" / "train" / name, random_frames(8))
    one = DataConfig(kind="kinetics_csv", root=str(tmp_path / "k400"), csv_file="all.csv", **PLAIN)
    assert build_dataset(one, "val", train=False).video_names == ["val/yoga/def_000010_000020.mp4"]
    assert build_dataset(one, "train", train=True).video_names == [
        "train/arm wrestling/abc_000010_000020.mp4", "train/yoga/ghi_000000_000010.mp4"]
    with pytest.raises(ValueError, match=r"no rows of split 'test' \(its split column has \['train', 'val'\]\)"):
        build_dataset(one, "test", train=False)
