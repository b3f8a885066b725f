"""The synthetic dataset: deterministic, temporal classes, boxes, atomic generation, the CLI."""

import json

import numpy as np
import pytest

from vivit_tl.data import DataConfig, build_dataset, dataset_root, prepare_dataset
from vivit_tl.data.decoding import read_frames
from vivit_tl.data.synthetic import CLASSES, VERSION, SyntheticSpec, generate, load_boxes, render_video

from video_utils import run_tool

TINY = dict(size=48, frames=12, train_per_class=2, val_per_class=1, workers=0)


def test_rendering_is_deterministic_and_boxes_follow_the_motion():
    spec = SyntheticSpec(size=96, frames=16)
    assert len(CLASSES) >= 6
    for label in CLASSES:
        video, record = render_video(spec, label, np.random.default_rng(7))
        again, record_again = render_video(spec, label, np.random.default_rng(7))
        assert np.array_equal(video, again) and record == record_again
        boxes = np.array(record["boxes"])  # [F, 4]
        assert video.shape == (16, 96, 96, 3) and boxes.shape == (16, 4)
        assert (boxes >= 0).all() and (boxes <= 96).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        centre, width = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2] - boxes[:, 0]
        step = centre[-1] - centre[0]
        direction = {"move_left": step[0] < -30, "move_right": step[0] > 30, "move_up": step[1] < -30,
                     "move_down": step[1] > 30, "grow": width[-1] > 1.8 * width[0],
                     "shrink": width[0] > 1.8 * width[-1]}
        assert direction.get(label, np.abs(step).max() < 1), label
        # The object is drawn where its box says: the box region changes between first and last frame.
        x0, y0, x1, y1 = np.round(boxes[0]).astype(int)
        if not label.startswith("rotate"):
            assert np.abs(video[0, y0:y1, x0:x1].astype(int) - video[-1, y0:y1, x0:x1]).mean() > 10, label


def test_the_moving_object_is_brighter_than_the_background():
    """One contrast polarity: with random polarity the main job's model did not learn motion."""
    spec = SyntheticSpec(size=96, frames=8)
    for i, label in enumerate(CLASSES * 3):
        video, record = render_video(spec, label, np.random.default_rng(i))
        luma = video.astype(float) @ [0.299, 0.587, 0.114]  # [F, H, W]
        x0, y0, x1, y1 = np.round(record["boxes"][0]).astype(int)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        centre = luma[0, cy - 1:cy + 2, cx - 1:cx + 2].mean()  # inside every shape (all are centred)
        dx0, dy0, dx1, dy1 = record["distractor_box"]
        outside = np.ones(luma.shape[1:], bool)
        outside[y0:y1, x0:x1] = False
        outside[int(dy0):int(np.ceil(dy1)), int(dx0):int(np.ceil(dx1))] = False
        assert centre > luma[0][outside].max(), label


def test_motion_classes_have_the_same_frames_as_their_reversed_twin():
    """A clip of class A reversed in time is a valid clip of its twin: no single frame tells them apart."""
    spec = SyntheticSpec(size=64, frames=10)
    twins = {"move_left": "move_right", "move_up": "move_down", "grow": "shrink"}
    for a, b in twins.items():
        _, rec_a = render_video(spec, a, np.random.default_rng(3))
        _, rec_b = render_video(spec, b, np.random.default_rng(3))
        np.testing.assert_allclose(np.array(rec_a["boxes"])[::-1], rec_b["boxes"], atol=1e-3)


def test_generate_writes_h264_videos_boxes_and_meta_deterministically(tmp_path):
    spec = SyntheticSpec(**TINY)
    out = generate(tmp_path / "a", spec, progress=False)
    generate(tmp_path / "b", spec, progress=False)
    videos = sorted(out.rglob("*.mp4"))
    assert len(videos) == len(CLASSES) * 3
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train", "val"]
    assert json.loads((out / "meta.json").read_text())["classes"] == list(CLASSES)
    for video in videos[:4]:
        frames, _ = read_frames(video, np.arange)
        assert frames.shape == (12, 48, 48, 3)
        assert load_boxes(video).shape == (12, 4)
        twin = tmp_path / "b" / video.relative_to(out)
        assert twin.read_bytes() == video.read_bytes()  # same seed, same bytes
    other = generate(tmp_path / "c", SyntheticSpec(**{**TINY, "seed": 1}), progress=False)
    assert (other / videos[0].relative_to(out)).read_bytes() != videos[0].read_bytes()
    with pytest.raises(FileNotFoundError, match="no box file"):
        load_boxes(tmp_path / "nothing.mp4")


def test_generation_is_atomic(tmp_path, monkeypatch):
    import vivit_tl.data.synthetic as synthetic

    def crash(task):
        raise KeyboardInterrupt  # a generation killed half-way

    monkeypatch.setattr(synthetic, "_make_one", crash)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "out", SyntheticSpec(**TINY), progress=False)
    assert list(tmp_path.iterdir()) == []  # no half dataset, no temporary folder left behind
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user data")
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match="nothing was deleted"):
        generate(tmp_path / "busy", SyntheticSpec(**TINY), progress=False)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "user data"


def test_prepare_dataset_generates_into_the_cache_once(tmp_path):
    cfg = DataConfig(kind="synthetic", cache_dir=str(tmp_path), synthetic=TINY, num_frames=4)
    with pytest.raises(FileNotFoundError, match="prepare_dataset"):
        build_dataset(cfg, "train", train=True)
    prepare_dataset(cfg)
    root = dataset_root(cfg)
    assert root.parent == tmp_path and root.name.startswith(f"synthetic-v{VERSION}-seed0-")
    stamp = (root / "meta.json").stat().st_mtime_ns
    prepare_dataset(cfg)  # idempotent
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    train = build_dataset(cfg, "train", train=True)
    val = build_dataset(cfg, "val", train=False)
    assert train.classes == val.classes == sorted(CLASSES)
    assert len(train) == 2 * len(CLASSES) and len(val) == len(CLASSES)
    clip, label, index = train[5]
    assert clip.shape == (3, 4, 96, 96) and label == train.labels[index]
    assert DataConfig().synthetic == {} and SyntheticSpec().dirname() == f"synthetic-v{VERSION}-seed0"
    with pytest.raises(ValueError, match="unknown synthetic option"):
        prepare_dataset(DataConfig(synthetic={"colour": 3}))


def test_make_synthetic_cli(tmp_path, monkeypatch, capsys):
    code, out, err = run_tool("make_synthetic.py", [str(tmp_path / "out"), "--size", "32", "--frames", "4",
                                                    "--train-per-class", "1", "--val-per-class", "1", "--workers", "0"],
                              monkeypatch, capsys)
    assert code == 0, err
    assert "wrote 16 videos" in out and len(list((tmp_path / "out").rglob("*.boxes.json"))) == 16
    code, _, err = run_tool("make_synthetic.py", [str(tmp_path / "out"), "--seed", "3"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and "nothing was deleted" in err
    code, out, _ = run_tool("make_synthetic.py", ["--help"], monkeypatch, capsys)
    assert code == 0 and "--train-per-class" in out
