"""Rendering of attention grids/animations, training curves and the attention-in-box measurement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vivit_tl.viz.boxes import attention_in_box, box_masks, step_boxes
from vivit_tl.engine.metrics_log import read_metrics
from vivit_tl.viz.curves import plot_metrics
from vivit_tl.viz.render import (
    LABEL_PX,
    MIN_PANEL_PX,
    TIMELINE_PX,
    animation_frames,
    normalize_minmax,
    peak_to_mean,
    render_animation,
    render_grid,
    token_overlays,
)

F, H, W, TUBELET, S, GRID = 8, 32, 48, 2, 3, 4


def moving_square_clip(num_frames: int = F) -> np.ndarray:
    """A ``[F, H, W, 3]`` clip: a white square moving right on grey."""
    frames = np.full((num_frames, H, W, 3), 60, dtype=np.uint8)
    for f in range(num_frames):
        frames[f, 10:18, 4 * f : 4 * f + 8] = 255
    return frames


def per_step_maps() -> np.ndarray:
    """Maps ``[T, S, Hg, Wg]`` whose peak moves one cell per step (different at every step)."""
    maps = np.full((F // TUBELET, S, GRID, GRID), 0.1, dtype=np.float32)
    for t in range(F // TUBELET):
        maps[t, :, t % GRID, (t + 1) % GRID] = 1.0
    return maps


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        out = []
        for i in range(gif.n_frames):
            gif.seek(i)
            out.append(np.asarray(gif.convert("RGB")))
        return out


def panel(image: np.ndarray, index: int, height: int, width: int, cols: int) -> np.ndarray:
    """Crop panel ``index`` (0 = the plain frame) of an animation frame laid out by ``animation_frames``."""
    top, left = (index // cols) * (height + 1), (index % cols) * (width + 1)
    return image[top : top + height, left : left + width]


def test_grid_png_size_and_one_column_for_images(tmp_path):
    maps = per_step_maps()
    video = render_grid(moving_square_clip(), maps, TUBELET, tmp_path / "video.png", title="clip - predicted: x")
    image = render_grid(moving_square_clip(1), maps[:1], 1, tmp_path / "image.png")
    with Image.open(video) as a, Image.open(image) as b:
        assert a.format == b.format == "PNG"
        # 4 columns of 1 inch (+ label margin) at 100 dpi; 1 + S rows of 2/3 inch (+ one title line)
        assert a.size == (460, int(100 * ((1 + S) * H / W + 0.47)))
        assert b.size[0] == 160 and b.size[1] < a.size[1]
        assert np.asarray(a.convert("L")).std() > 10  # not a blank canvas
    long_title = render_grid(moving_square_clip(1), maps[:1], 1, tmp_path / "long.png", title="a long title " * 4)
    with Image.open(long_title) as c:
        assert c.size == (160, int(100 * ((1 + S) * H / W + 0.3 + 0.17 * 3)))  # wrapped on 3 lines, not cut


def test_overlays_follow_the_maps():
    frames = np.repeat(moving_square_clip(1), F, axis=0)  # a still clip: only the maps can change
    moving = token_overlays(frames, per_step_maps(), TUBELET)  # [F, S, H, W, 3]
    still = token_overlays(frames, np.repeat(per_step_maps()[:1], F // TUBELET, axis=0), TUBELET)
    assert moving.shape == (F, S, H, W, 3) and moving.dtype == np.uint8
    assert np.array_equal(moving[0], moving[1])  # same tubelet step
    assert not np.array_equal(moving[0], moving[TUBELET])  # next step, different map
    assert np.array_equal(still[0], still[-1])


def test_overlay_tokens_subset_and_torch_maps():
    maps = torch.from_numpy(per_step_maps())
    chosen = token_overlays(moving_square_clip(), maps, TUBELET, tokens=[2])
    everything = token_overlays(moving_square_clip(), maps.numpy(), TUBELET)
    assert chosen.shape[1] == 1
    assert np.array_equal(chosen[:, 0], everything[:, 2])


@pytest.mark.parametrize("varying", [True, False])
def test_gif_frame_count_size_and_overlay_changes(tmp_path, varying):
    frames = np.repeat(moving_square_clip(1), F, axis=0)
    maps = per_step_maps() if varying else np.repeat(per_step_maps()[:1], F // TUBELET, axis=0)
    path = render_animation(frames, maps, TUBELET, tmp_path / "anim.gif", fps=10)
    decoded = gif_frames(path)
    scale = -(-MIN_PANEL_PX // H)  # panels enlarged to >= MIN_PANEL_PX
    cols = 2  # S + 1 = 4 panels on a 2 x 2 layout
    assert len(decoded) == F  # one GIF frame per clip frame
    assert decoded[0].shape == (2 * H * scale + 1 + TIMELINE_PX, 2 * W * scale + 1, 3)
    token = [panel(im, 1, H * scale, W * scale, cols) for im in decoded]
    plain = [panel(im, 0, H * scale, W * scale, cols) for im in decoded]
    assert np.array_equal(plain[0], plain[-1])
    assert np.array_equal(token[0], token[1])  # frames of one tubelet step
    assert np.array_equal(token[0], token[TUBELET]) != varying
    assert np.array_equal(token[0], token[-1]) != varying


def test_animation_frames_match_rendered_overlays():
    frames, maps = moving_square_clip(), per_step_maps()
    composed = animation_frames(frames, maps, TUBELET, tokens=[1])  # 2 panels -> 2 columns, 1 row
    scale = -(-MIN_PANEL_PX // H)
    expected = token_overlays(frames, maps, TUBELET, tokens=[1])[:, 0].repeat(scale, 1).repeat(scale, 2)
    below_label = slice(LABEL_PX + 6, H * scale)
    assert np.array_equal(composed[:, below_label, W * scale + 1 :], expected[:, below_label])
    assert not np.array_equal(composed[:, : H * scale, W * scale + 1 :], expected)  # "token 1" written on it


def test_map_scaling_and_concentration():
    maps = np.stack([np.full((4, 4), 0.25), np.zeros((4, 4)), np.zeros((4, 4))])  # uniform, one-hot, empty
    maps[1, 0, 0] = 1.0  # all mass on 1 of 16 cells
    assert np.allclose(peak_to_mean(torch.from_numpy(maps)), [1.0, 16.0, 1.0])
    scaled = normalize_minmax(maps + 3.0)
    assert np.allclose(scaled[0], 0.0) and np.allclose(scaled[1], maps[1]) and np.allclose(scaled[2], 0.0)


def test_mismatched_frames_and_maps_are_refused(tmp_path):
    with pytest.raises(ValueError, match="7 frames do not match 4 map time steps"):
        render_grid(moving_square_clip(7), per_step_maps(), TUBELET, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"maps must be \[T, S, Hg, Wg\]"):
        token_overlays(moving_square_clip(), per_step_maps()[0], TUBELET)


def write_metrics(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_training_curves_png(tmp_path):
    records = [{"step": s, "epoch": s // 10, "train/loss": 2.0 / (s + 1), "lr": 1e-3, "train/acc": s / 40}
               for s in range(40)]
    records += [{"step": s, "epoch": s // 10, "val/loss": 1.0, "val/top1": 0.5, "val/top5": 0.9} for s in (9, 19, 39)]
    (tmp_path / "run").mkdir()
    write_metrics(tmp_path / "run" / "metrics.jsonl", records)
    full = plot_metrics(tmp_path / "run", tmp_path / "full.png")  # the run directory is accepted
    loss_only = plot_metrics(
        write_metrics(tmp_path / "loss.jsonl", [{"step": s, "epoch": 0, "train/loss": 1.0} for s in range(5)]),
        tmp_path / "loss.png",
    )
    with Image.open(full) as a, Image.open(loss_only) as b:
        assert a.size == (3 * 420, 340)  # loss, learning rate, accuracy
        assert b.size == (420, 340)


def test_metrics_log_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics log not found"):
        read_metrics(tmp_path / "missing.jsonl", strict=True)
    assert read_metrics(tmp_path / "missing.jsonl") == []  # lenient (resume, tables)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "epoch": 0}\n{"step": 2,\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_metrics(bad, strict=True)
    assert read_metrics(bad) == [{"step": 1, "epoch": 0}]  # the line cut by a kill is skipped
    no_step = write_metrics(tmp_path / "nostep.jsonl", [{"epoch": 0, "lr": 1.0}])
    with pytest.raises(ValueError, match=r"nostep.jsonl:1: expected a JSON object with a numeric 'step'"):
        read_metrics(no_step, strict=True)
    nothing = write_metrics(tmp_path / "nothing.jsonl", [{"step": 1, "epoch": 0}])
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_metrics(nothing, tmp_path / "x.png")


def test_box_masks_and_step_boxes():
    masks = box_masks(np.array([[2.0, 1.0, 6.0, 4.0]]), (8, 10))
    assert masks.shape == (1, 8, 10)
    assert masks[0].sum() == 4 * 3  # pixel centres 2.5..5.5 x 1.5..3.5
    assert box_masks(np.array([[2.0, 1.0, 6.0, 4.0]]), (8, 10), margin=1.0)[0].sum() == 6 * 5
    boxes = step_boxes(np.array([[0, 0, 2, 2], [2, 2, 4, 4], [4, 4, 6, 6], [6, 6, 8, 8]]), 2)
    assert np.allclose(boxes, [[1, 1, 3, 3], [5, 5, 7, 7]])
    with pytest.raises(ValueError, match="divisible by the tubelet size 3"):
        step_boxes(np.zeros((4, 4)), 3)


def test_attention_in_box():
    size = (32, 32)  # 4 x 4 grid of 8-pixel cells
    boxes = np.array([[8.0, 8.0, 16.0, 16.0], [16.0, 16.0, 24.0, 24.0]])  # cell (1, 1), then cell (2, 2)
    uniform = np.full((2, 2, 4, 4), 0.5, dtype=np.float32)
    mass, area = attention_in_box(uniform, boxes, size)
    assert np.allclose(area, 64 / 1024)
    assert np.allclose(mass, area[:, None])  # uniform attention = area share
    peaked = np.zeros((2, 1, 4, 4), dtype=np.float32)
    peaked[0, 0, 1, 1] = peaked[1, 0, 2, 2] = 1.0  # attends the box's cell at each step
    mass, _ = attention_in_box(peaked, boxes, size, margin=8.0)  # bilinear spreads up to one cell
    assert np.allclose(mass, 1.0)
    wrong, _ = attention_in_box(peaked[::-1].copy(), boxes, size)
    assert (wrong < 0.05).all()
    assert np.allclose(attention_in_box(np.zeros((2, 1, 4, 4)), boxes, size)[0], 0.0)  # no mass: share 0
