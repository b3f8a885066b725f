"""Dataset layouts: mmaction2 lists with data_prefix and label maps, rawframes, UCF-101, HMDB-51, SSv2.

Each test writes a tiny real dataset in the layout (lossless videos or PNG frames) and checks the
split's files, labels and classes, and that the clips read are the source frames.
"""

import json

import numpy as np
import pytest
from PIL import Image

from vivit_tl.data import DataConfig, build_dataset
from vivit_tl.data.sampling import eval_clip_indices
from vivit_tl.errors import UserError

from video_utils import clip_start, random_frames, write_lossless

PLAIN = dict(num_frames=4, frame_stride=2, image_size=32, short_side=32, scale_jitter=[1.0, 1.0],
             hflip=False, mean=None, std=None)  # no resize, no flip, no normalisation: exact pixels


def layout_cfg(kind, root, **overrides) -> DataConfig:
    return DataConfig.from_dict({"kind": kind, "root": str(root), **PLAIN, **overrides})


def write_videos(root, names, num_frames=12) -> dict[str, np.ndarray]:
    """Lossless videos ``root/<name>``, each with its own frames; returns {name: frames}."""
    sources = {name: random_frames(num_frames, seed=100 + i) for i, name in enumerate(names)}
    for name, frames in sources.items():
        write_lossless(root / name, frames)
    return sources


def assert_reads_sources(ds, sources, stride=2):
    """Every training item of ``ds`` is a clip of its own source video."""
    for k in range(len(ds)):
        clip, label, index = ds[k]
        assert (label, index) == (ds.labels[k], k)
        clip_start(clip, sources[ds.video_names[k]], stride)


def test_mmaction2_video_lists_with_data_prefix_and_a_label_map_with_spaces(tmp_path):
    """The mmaction2 Kinetics-tiny layout: list paths relative to train/ and val/, names with spaces."""
    sources = write_videos(tmp_path, ["train/typing1.mp4", "train/exercise 2.mp4", "val/typing3.mp4"])
    (tmp_path / "kinetics_tiny_train_video.txt").write_text("typing1.mp4 1\nexercise 2.mp4 0\n")
    (tmp_path / "kinetics_tiny_val_video.txt").write_text("typing3.mp4 1\n")
    (tmp_path / "label_map.txt").write_text("doing exercises\ntyping\n")
    cfg = layout_cfg("video_list", tmp_path, list_file="kinetics_tiny_{split}_video.txt", data_prefix="{split}",
                     classes_file="label_map.txt")
    train, val = build_dataset(cfg, "train", train=True), build_dataset(cfg, "val", train=False)
    assert train.classes == val.classes == ["doing exercises", "typing"]
    assert train.video_names == ["train/typing1.mp4", "train/exercise 2.mp4"] and train.labels == [1, 0]
    assert val.video_names == ["val/typing3.mp4"] and val.labels == [1]
    assert_reads_sources(train, {name: sources[name] for name in train.video_names})
    assert val[0][1] == 1 and not val.bad_files()
    # without data_prefix every listed file is absent: an error naming the resolved paths and the fix
    with pytest.raises(UserError, match=r"^2 of 2 listed videos of split 'train' are missing, e\.g\. \S+/typing1\.mp4, "
                                        r".*exercise 2\.mp4: check data\.root .* and data\.data_prefix \(''"):
        build_dataset(layout_cfg("video_list", tmp_path, list_file="kinetics_tiny_{split}_video.txt"), "train", True)


def write_rawframes(folder, frames, template="img_{:05d}.png", start=1) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / template.format(i + start))


@pytest.mark.parametrize("template,start", [("img_{:05d}.png", 1), ("{:04d}.png", 0)])
def test_rawframes_sample_in_frame_indices_from_start_index(tmp_path, template, start):
    sources = {"rawframes/a": random_frames(12, seed=1), "rawframes/b": random_frames(15, seed=2)}
    for name, frames in sources.items():
        write_rawframes(tmp_path / name, frames, template, start)
    (tmp_path / "train.txt").write_text("rawframes/a 12 0\nrawframes/b 15 1\n")
    (tmp_path / "val.txt").write_text("rawframes/b 15 1\n")
    cfg = layout_cfg("rawframes", tmp_path, filename_tmpl=template, start_index=start, eval_clips=2)
    train = build_dataset(cfg, "train", train=True)
    assert train.video_names == ["rawframes/a", "rawframes/b"] and train.labels == [0, 1]
    assert train.classes == ["0", "1"]
    assert_reads_sources(train, sources)
    val = build_dataset(cfg, "val", train=False)
    idx = eval_clip_indices(15, 4, 2, num_clips=2)  # the clips of a 15-frame video, as for a video file
    for view, (clip, label, _) in enumerate(val[v] for v in range(len(val))):
        got = (clip.permute(1, 2, 3, 0) * 255).round().byte().numpy()  # [F, H, W, 3]
        np.testing.assert_array_equal(got, sources["rawframes/b"][idx[view]])
        assert label == 1


def test_rawframes_default_template_and_bad_folders(tmp_path):
    """mmaction2's default names (img_00001.jpg...); a frame folder short of its listed count is a bad file."""
    for name in ("f/ok", "f/short"):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        for i in range(1, 11 if name == "f/ok" else 4):
            Image.fromarray(random_frames(1, seed=i)[0]).save(folder / f"img_{i:05d}.jpg")
    (tmp_path / "train.txt").write_text("f/ok 10 0\nf/short 10 1\nf/absent 10 1\n")
    ds = build_dataset(layout_cfg("rawframes", tmp_path), "train", train=True)
    clips = [ds[k] for k in range(3)]
    assert all(c.shape == (3, 4, 32, 32) for c, _, _ in clips) and {i for _, _, i in clips} == {0}
    assert ds.num_skipped == 2
    reasons = dict(ds.bad_files())
    assert reasons == {"f/short": "missing file", "f/absent": "missing file"}


def test_ucf101_official_splits(tmp_path):
    names = {"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": 1, "Basketball/v_Basketball_g08_c01.avi": 2,
             "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": 1, "Basketball/v_Basketball_g01_c02.avi": 2}
    sources = write_videos(tmp_path / "UCF-101", names)
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    train_names, test_names = list(names)[:2], list(names)[2:]
    (lists / "trainlist01.txt").write_text("".join(f"{n} {names[n]}\n" for n in train_names))
    (lists / "testlist01.txt").write_text("".join(f"{n}\n" for n in test_names))
    (lists / "trainlist02.txt").write_text("".join(f"{n} {names[n]}\n" for n in test_names))
    cfg = layout_cfg("ucf101", tmp_path, data_prefix="UCF-101", annotation_dir="ucfTrainTestlist")
    train, test = build_dataset(cfg, "train", train=True), build_dataset(cfg, "test", train=False)
    assert train.classes == test.classes == ["ApplyEyeMakeup", "Basketball"]
    assert train.video_names == [f"UCF-101/{n}" for n in train_names] and train.labels == [0, 1]
    assert test.video_names == [f"UCF-101/{n}" for n in test_names] and test.labels == [0, 1]
    assert build_dataset(cfg, "val", train=False).video_names == test.video_names  # no separate val set
    assert_reads_sources(train, {f"UCF-101/{n}": sources[n] for n in names})
    fold2 = build_dataset(layout_cfg("ucf101", tmp_path, data_prefix="UCF-101", annotation_dir="ucfTrainTestlist",
                                     fold=2), "train", train=True)
    assert fold2.video_names == test.video_names
    with pytest.raises(FileNotFoundError, match="testlist02.txt"):
        build_dataset(layout_cfg("ucf101", tmp_path, data_prefix="UCF-101", annotation_dir="ucfTrainTestlist",
                                 fold=2), "test", train=False)
    with pytest.raises(ValueError, match="fold=4 must be 1, 2 or 3"):
        layout_cfg("ucf101", tmp_path, fold=4)


def test_hmdb51_official_split_files_with_tags(tmp_path):
    videos = {"brush_hair": ["a.avi", "b.avi", "c.avi"], "ride_bike": ["d.avi", "e.avi", "f.avi"]}
    sources = write_videos(tmp_path / "hmdb51_org", [f"{c}/{v}" for c, vs in videos.items() for v in vs])
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c, (train, test, unused) in videos.items():
        (splits / f"{c}_test_split1.txt").write_text(f"{train} 1 \n{test} 2 \n{unused} 0 \n")
        (splits / f"{c}_test_split2.txt").write_text(f"{train} 2 \n{test} 1 \n{unused} 0 \n")
    cfg = layout_cfg("hmdb51", tmp_path, data_prefix="hmdb51_org", annotation_dir="testTrainMulti_7030_splits")
    train, test = build_dataset(cfg, "train", train=True), build_dataset(cfg, "test", train=False)
    assert train.classes == ["brush_hair", "ride_bike"]
    assert train.video_names == ["hmdb51_org/brush_hair/a.avi", "hmdb51_org/ride_bike/d.avi"] and train.labels == [0, 1]
    assert test.video_names == ["hmdb51_org/brush_hair/b.avi", "hmdb51_org/ride_bike/e.avi"] and test.labels == [0, 1]
    assert_reads_sources(train, {f"hmdb51_org/{n}": f for n, f in sources.items()})
    fold2 = build_dataset(layout_cfg("hmdb51", tmp_path, data_prefix="hmdb51_org",
                                     annotation_dir="testTrainMulti_7030_splits", fold=2), "train", train=True)
    assert fold2.video_names == test.video_names
    with pytest.raises(ValueError, match="has the splits 'train' and 'test'"):
        build_dataset(cfg, "extra", train=False)


def test_something_something_v2_json_labels_and_webm(tmp_path):
    labels = {"Putting something on something": "1", "Holding something": "0"}
    train = [{"id": "78687", "label": "putting a cup on a table", "template": "Putting [something] on [something]",
              "placeholders": ["a cup", "a table"]},
             {"id": "42326", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["a pen"]}]
    val = [{"id": "24", "label": "holding keys", "template": "Holding [something]", "placeholders": ["keys"]}]
    ann = tmp_path / "labels"
    ann.mkdir()
    (ann / "labels.json").write_text(json.dumps(labels))
    (ann / "something-something-v2-train.json").write_text(json.dumps(train))
    (ann / "something-something-v2-validation.json").write_text(json.dumps(val))
    sources = write_videos(tmp_path / "20bn-something-something-v2", ["78687.webm", "42326.webm", "24.webm"])
    cfg = layout_cfg("ssv2", tmp_path, data_prefix="20bn-something-something-v2", annotation_dir="labels")
    ds = build_dataset(cfg, "train", train=True)
    assert ds.classes == ["Holding something", "Putting something on something"]
    assert ds.video_names == ["20bn-something-something-v2/78687.webm", "20bn-something-something-v2/42326.webm"]
    assert ds.labels == [1, 0]
    assert_reads_sources(ds, {f"20bn-something-something-v2/{n}": f for n, f in sources.items()})
    val_ds = build_dataset(cfg, "val", train=False)
    assert val_ds.labels == [0] and val_ds[0][1] == 0
    with pytest.raises(ValueError, match="its test set has no labels"):
        build_dataset(cfg, "test", train=False)


def test_ssv2_reads_the_mp4_files_that_prepare_videos_writes(tmp_path):
    """SSv2's split files name bare ids; after prepare-videos the videos are <id>.mp4, not <id>.webm."""
    ann = tmp_path / "labels"
    ann.mkdir()
    (ann / "labels.json").write_text(json.dumps({"Holding something": "0", "Pushing something": "1"}))
    entries = [{"id": "7", "template": "Holding [something]"}, {"id": "8", "template": "Pushing [something]"},
               {"id": "9", "template": "Holding [something]"}]
    (ann / "something-something-v2-train.json").write_text(json.dumps(entries))
    (ann / "something-something-v2-validation.json").write_text(json.dumps(entries[:1]))
    sources = write_videos(tmp_path / "videos", ["7.mp4", "8.mp4", "9.webm"])  # 9 not re-encoded
    cfg = layout_cfg("ssv2", tmp_path, data_prefix="videos", annotation_dir="labels")
    ds = build_dataset(cfg, "train", train=True)
    assert ds.video_names == ["videos/7.mp4", "videos/8.mp4", "videos/9.webm"]
    assert_reads_sources(ds, {f"videos/{n}": f for n, f in sources.items()})
