"""vivit_tl.timeline and vivit-tl predict --timeline: windows over a long video whose classes change in a known order.

The long video is built from segments of known classes in a known order. The classes are told apart
by colour: each segment's frames are noisy frames of its class's colour (fresh noise every frame, a
random brightness per segment). A tiny ViViT is fitted on separately generated clips of those colours
in a few seconds on the CPU, and the test first checks that it really separates the classes on new
clips. The motion classes of the synthetic dataset would need minutes of training to separate
reliably; the subject here is the timeline (streamed decode, windows, their times and their order,
batching across windows), not learning motion, so a colour cue is the honest cheap choice.
"""

from __future__ import annotations

import csv
import json
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from vivit_tl.checkpoint import save_model_file
from vivit_tl.data.datasets import eval_views
from vivit_tl.data.decoding import stream_frames
from vivit_tl.data.writer import write_video
from vivit_tl.errors import UserError
from vivit_tl.models import create_model
from vivit_tl.predict import Predictor
from vivit_tl.timeline import predict_timeline, window_frames

from viz_utils import TINY_MODEL, load_tool, synthetic_config

COLOURS = {"red": (190, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 190)}
CLASSES = list(COLOURS)
ORDER = ["blue", "red", "green", "red"]  # the long video's segments, in order
SEGMENT_S, FPS, SIZE = 3.0, 8, 32


def colour_frames(name: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` frames ``[count, SIZE, SIZE, 3]`` of class ``name``: its colour, a brightness offset, noise."""
    base = np.array(COLOURS[name], dtype=np.float32) + rng.uniform(-30, 30)
    frames = base + rng.normal(0, 25, size=(count, SIZE, SIZE, 3))
    return frames.clip(0, 255).astype(np.uint8)


def fit_colour_model(cfg, rng: np.random.Generator) -> torch.nn.Module:
    """A tiny ViViT fitted on fresh colour clips (preprocessed exactly as at inference) until it separates them."""
    def batch(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        clips, labels = [], []
        for label, name in enumerate(CLASSES):
            for _ in range(per_class):
                views, _ = eval_views(colour_frames(name, cfg.num_frames, rng)[None], cfg)  # [1, 3, F, S, S]
                clips.append(views[0])
                labels.append(label)
        return torch.stack(clips), torch.tensor(labels)

    torch.manual_seed(0)
    model = create_model("vivit_ti16x2", num_classes=len(CLASSES), num_frames=cfg.num_frames,
                         image_size=cfg.image_size, **TINY_MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        x, y = batch(8)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = batch(10)
    with torch.no_grad():
        accuracy = (model(x).argmax(-1) == y).float().mean().item()
    assert accuracy == 1.0, f"the colour model does not separate the classes (accuracy {accuracy})"
    return model


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    root = tmp_path_factory.mktemp("timeline")
    cfg = synthetic_config(root / "cache", eval_clips=1, eval_crops=1)  # 4 frames 2 apart, 32 px
    rng = np.random.default_rng(0)
    model = fit_colour_model(cfg, rng)
    save_model_file(root / "model", model, classes=CLASSES, data_config=cfg, step=0, epoch=0)
    frames = np.concatenate([colour_frames(name, int(SEGMENT_S * FPS), rng) for name in ORDER])  # [96, 32, 32, 3]
    write_video(root / "long.mp4", frames, fps=FPS)
    return dict(root=root, model=root / "model", video=root / "long.mp4")


def segment_of(start_s: float, end_s: float) -> str | None:
    """The class of the segment holding the whole window, None for a window across a boundary."""
    first, last = int(start_s // SEGMENT_S), int((end_s - 1e-6) // SEGMENT_S)
    return ORDER[first] if first == last else None


def test_argmax_per_window_follows_the_known_order(long_video):
    predictor = Predictor.load(long_video["model"])
    timeline = predict_timeline(predictor, long_video["video"], window_s=1.0, stride_s=0.75, batch_size=4)
    duration = len(ORDER) * SEGMENT_S
    starts = [w.start_s for w in timeline.windows]
    grid = [i * 0.75 for i in range(int((duration - 1.0) / 0.75) + 1)]  # 0, 0.75, ..., 10.5 (ends 11.5)
    assert starts == pytest.approx(grid + [duration - 1.0])  # + one window ending with the video
    assert timeline.windows[-1].end_s == pytest.approx(duration)
    predicted = [CLASSES[int(p.argmax())] for p in timeline.probs]
    inside = [(segment_of(w.start_s, w.end_s), label) for w, label in zip(timeline.windows, predicted)
              if segment_of(w.start_s, w.end_s) is not None]
    assert len(inside) >= 10
    assert [expected for expected, _ in inside] == [label for _, label in inside]
    # the segments come out in the known order
    runs = [label for i, (_, label) in enumerate(inside) if i == 0 or inside[i - 1][1] != label]
    assert runs == ORDER


def test_windows_hold_their_frames_only():
    """Frames at t = 0, 0.5, ... 4.5 s: each window gets exactly the frames with start <= t < end."""
    frames = ((i * 0.5, np.full((2, 2, 3), i, np.uint8)) for i in range(10))
    windows = list(window_frames(frames, window_s=2.0, stride_s=1.5))
    assert [(w.start_s, w.end_s) for w, _ in windows] == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
    assert [clip[:, 0, 0, 0].tolist() for _, clip in windows] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    short = list(window_frames(((i * 0.5, np.zeros((2, 2, 3), np.uint8)) for i in range(3)), 2.0, 1.0))
    assert [(w.start_s, w.end_s, len(clip)) for w, clip in short] == [(0.0, 1.5, 3)]  # shorter than a window


def test_window_memory_stays_bounded_on_a_long_stream():
    """2,000 frames (200 s at 10 fps) in 1 s windows: no more than about one window of frames is ever held."""
    alive: list[weakref.ref] = []
    most = 0

    def frames():
        nonlocal most
        for i in range(2000):
            most = max(most, sum(ref() is not None for ref in alive[-50:]))  # older ones were checked before
            frame = np.zeros((2, 2, 3), np.uint8)
            alive.append(weakref.ref(frame))
            yield i / 10, frame

    count = sum(1 for _ in window_frames(frames(), window_s=1.0, stride_s=0.5))
    assert count == 399 and most <= 12  # 10 frames per window, +1 for the frame that closes it
    assert sum(ref() is not None for ref in alive) == 0


def test_stream_frames_times(long_video):
    times = [t for t, frame in stream_frames(long_video["video"])]
    assert len(times) == len(ORDER) * SEGMENT_S * FPS
    assert times[:3] == pytest.approx([0, 1 / FPS, 2 / FPS])


def test_predict_timeline_writes_json_csv_png(long_video, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    status = load_tool("predict").main([str(long_video["model"]), str(long_video["video"]), str(broken),
                                        "--timeline", "--window", "2", "--stride", "1", "--out", str(out),
                                        "--top-k", "2"])
    captured = capsys.readouterr()
    assert status == 2  # the broken file is a one-line error, the video's timeline is written
    assert f"error: {broken}: not a video" in captured.err
    report = json.loads((out / "long.timeline.json").read_text())
    assert report["window_s"] == 2.0 and len(report["windows"]) == 11  # starts 0..10 s in a 12 s video
    assert all(len(w["top"]) == 2 for w in report["windows"])
    with (out / "long.timeline.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["start_s", "end_s", "label_1", "prob_1", "label_2", "prob_2"]
    assert [float(r["start_s"]) for r in rows] == [w["start_s"] for w in report["windows"]]
    assert rows[0]["label_1"] == "blue" and rows[4]["label_1"] == "red"  # [0, 2) blue, [4, 6) red
    with Image.open(out / "long.timeline.png") as png:
        assert png.size[0] >= 600 and png.size[1] == 480


def test_image_model_or_bad_window_is_a_clear_error(long_video):
    predictor = Predictor.load(long_video["model"])
    with pytest.raises(SystemExit):
        load_tool("predict").main([str(long_video["model"]), str(long_video["video"]), "--timeline", "--window", "0"])
    predictor.data_config = synthetic_config(long_video["root"] / "cache", kind="image_folder", num_frames=1)
    with pytest.raises(UserError, match="needs a video model"):
        predict_timeline(predictor, long_video["video"])
