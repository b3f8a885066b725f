"""tools/visualize.py, tools/attention_box_check.py, tools/plot_metrics.py and the box measurement."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vivit_tl.data.synthetic import CLASSES, load_boxes
from vivit_tl.errors import UserError
from vivit_tl.viz.box_check import measure_box_attention, view_box_masks
from vivit_tl.viz.boxes import box_masks

from viz_utils import REPO_ROOT, load_tool, save_tiny_model, synthetic_config, synthetic_videos, viewer_page_data

NUM_TOKENS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny synthetic dataset and models: two fused v1 TokenLearner layers, and no TokenLearner."""
    root = tmp_path_factory.mktemp("viz")
    cfg = synthetic_config(root / "cache")
    videos = synthetic_videos(cfg)
    tl = save_tiny_model(root / "tl", cfg, list(CLASSES), token_learner="v1", num_tokens=NUM_TOKENS,
                         token_learner_loc=0, token_learner_placement="fuse")
    plain = save_tiny_model(root / "plain", cfg, list(CLASSES))
    return dict(root=root, cfg=cfg, videos=videos, tl=tl, plain=plain)


def test_visualize_writes_grid_and_animation_per_layer(run, tmp_path, capsys):
    video = run["videos"][3]
    assert load_tool("visualize").main([str(run["tl"]), str(video), "--out", str(tmp_path)]) == 0
    for layer in (0, 1):
        grid, gif = tmp_path / f"{video.stem}_layer{layer}.png", tmp_path / f"{video.stem}_layer{layer}.gif"
        with Image.open(grid) as png, Image.open(gif) as anim:
            assert png.size[0] == 260  # 2 tubelet steps of 1 inch at 100 dpi + the label margin
            assert anim.n_frames == run["cfg"].num_frames  # one GIF frame per clip frame
            assert anim.size == (2 * 128 + 1, 2 * 128 + 1 + 6)  # 1 + 3 panels enlarged 4x on 2 x 2, bar
    assert "wrote" in capsys.readouterr().out


def test_visualize_on_cpu_and_auto_draws_the_same_grid(run, tmp_path):
    """--device cpu and --device auto (the GPU where there is one) give the same maps; float16 on the CPU is refused."""
    video = run["videos"][3]
    grids = []
    for device in ("cpu", "auto"):
        out = tmp_path / device
        load_tool("visualize").main([str(run["tl"]), str(video), "--out", str(out), "--no-animation",
                                     "--device", device])
        with Image.open(out / f"{video.stem}_layer0.png") as png:
            grids.append(np.asarray(png.convert("RGB"), dtype=np.int16))
    assert np.abs(grids[0] - grids[1]).max() <= (0 if not torch.cuda.is_available() else 8)
    with pytest.raises(UserError, match="float16 needs a CUDA device"):
        load_tool("visualize").main([str(run["tl"]), str(video), "--out", str(tmp_path), "--device", "cpu",
                                     "--dtype", "float16"])


def test_visualize_layer_and_token_selection(run, tmp_path):
    tool = load_tool("visualize")
    video = run["videos"][0]
    tool.main([str(run["tl"]), str(video), "--out", str(tmp_path / "all"), "--layer", "1", "--no-animation"])
    tool.main([str(run["tl"]), str(video), "--out", str(tmp_path / "one"), "--layer", "1", "--tokens", "2",
               "--no-animation"])
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [f"{video.stem}_layer1.png"]
    with Image.open(tmp_path / "all" / f"{video.stem}_layer1.png") as a, \
            Image.open(tmp_path / "one" / f"{video.stem}_layer1.png") as b:
        assert a.size[0] == b.size[0] and a.size[1] > b.size[1]  # fewer token rows
    with pytest.raises(UserError, match=r"--layer \[2\] out of range"):
        tool.main([str(run["tl"]), str(video), "--out", str(tmp_path), "--layer", "2"])
    with pytest.raises(UserError, match=r"--tokens \[3\] out of range"):
        tool.main([str(run["tl"]), str(video), "--out", str(tmp_path), "--tokens", "3"])


def test_visualize_refuses_a_model_without_token_learner(run, tmp_path):
    with pytest.raises(UserError, match="no TokenLearner layer"):
        load_tool("visualize").main([str(run["plain"]), str(run["videos"][0]), "--out", str(tmp_path)])


def test_visualize_image_model_gives_one_column(tmp_path):
    from vivit_tl.data import DataConfig

    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
    cfg = DataConfig.from_dict(dict(kind="image_folder", root=str(tmp_path), num_frames=1, frame_stride=1,
                                    image_size=32, short_side=32, num_workers=0))
    model = save_tiny_model(tmp_path / "model", cfg, ["a", "b"], tubelet_size=1, token_learner="v1.1",
                            num_tokens=2)
    load_tool("visualize").main([str(model), str(image), "--out", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat_layer0.png"]  # no animation
    with Image.open(tmp_path / "out" / "cat_layer0.png") as png:
        assert png.size[0] == 160  # one column


def test_visualize_html_page_holds_the_models_maps_and_prediction(run, tmp_path, capsys):
    from vivit_tl.predict import Predictor
    from vivit_tl.viz.viewer import quantize_maps

    video = run["videos"][1]
    page = tmp_path / "page" / "viewer.html"
    assert load_tool("visualize").main([str(run["tl"]), str(video), "--html", str(page), "--tokens", "2", "0"]) == 0
    assert "wrote" in capsys.readouterr().out and not (tmp_path / "out").exists()
    data = viewer_page_data(page)
    predictor = Predictor.load(run["tl"])
    views, frames = predictor.read(video, return_frames=True)  # one view: [1, 3, 4, 32, 32], [1, 4, 32, 32, 3]
    assert data["top"] == predictor.predict_file(video)["top"]
    assert len(data["frames"]) == frames.shape[1] and data["width"] == data["height"] == 32
    with torch.inference_mode():
        _, maps = predictor.model(views, return_maps=True)  # 2 x [1, T, S, Hg, Wg]
    assert [layer["name"] for layer in data["layers"]] == ["TokenLearner layer 0", "TokenLearner layer 1"]
    for layer, layer_maps in zip(data["layers"], maps):
        assert layer["token_ids"] == [2, 0]
        stored = np.frombuffer(base64.b64decode(layer["maps"]), np.uint8)
        np.testing.assert_array_equal(stored, quantize_maps(layer_maps[0][:, [2, 0]]).ravel())
    with pytest.raises(UserError, match="nothing to write"):
        load_tool("visualize").main([str(run["tl"]), str(video)])


def test_visualize_cli_error_is_one_line(run, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VIVIT_TL_DEBUG", None)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "visualize.py"), str(tmp_path / "nope"),
                           str(run["videos"][0]), "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no model file at") and done.stderr.count("\n") == 1


def test_view_box_masks_follow_the_evaluation_geometry(run):
    video = run["videos"][2]  # move_left: the box moves
    boxes = load_boxes(video)  # [8, 4] in 32-px frames
    same = view_box_masks(video, run["cfg"], num_steps=2, margin=0.0)  # clip frames 0, 2 | 4, 6
    assert same.shape == (1, 2, 32, 32)
    expected = box_masks(np.stack([boxes[[0, 2]].mean(0), boxes[[4, 6]].mean(0)]), (32, 32))
    assert np.array_equal(same[0], expected)
    half = synthetic_config(run["root"] / "cache", image_size=16, short_side=16)  # frames resized to 16 px
    small = view_box_masks(video, half, num_steps=2, margin=0.0)[0]
    iou = (small & expected[:, ::2, ::2]).sum() / (small | expected[:, ::2, ::2]).sum()
    assert small.shape == (2, 16, 16) and iou > 0.7
    wide = view_box_masks(video, run["cfg"], num_steps=2, margin=2.0)[0]
    assert (wide >= same[0]).all() and wide.sum() > same[0].sum()


class MapsFromMasks(nn.Module):
    """Stand-in model whose single TokenLearner map is given per call (a ground-truth oracle)."""

    def __init__(self, maps: list[torch.Tensor]) -> None:
        super().__init__()
        self.maps = list(maps)

    def forward(self, x: torch.Tensor, return_maps: bool = False):
        return torch.zeros(len(x), 8), [self.maps.pop(0)]


def test_measure_box_attention_oracle_and_uniform(run):
    cfg, videos = run["cfg"], run["videos"]
    masks = [torch.from_numpy(view_box_masks(v, cfg, 2, 0.0)).float() for v in videos]  # [1, T, 32, 32] each
    oracle = [F.adaptive_avg_pool2d(m, 4)[:, :, None] for m in masks]  # [1, T, 1, 4, 4]
    uniform = [torch.ones(1, 2, 2, 4, 4) for _ in videos]
    found = measure_box_attention(MapsFromMasks(oracle), cfg, videos, progress=False)
    chance = measure_box_attention(MapsFromMasks(uniform), cfg, videos, progress=False)
    assert len(found) == len(chance) == 1
    assert chance[0].area == pytest.approx(found[0].area) and 0 < found[0].area < 0.5
    assert chance[0].ratio == pytest.approx(1.0)
    assert found[0].mass > 0.75 and found[0].ratio > 3  # bilinear upsampling spreads some mass out


def test_attention_box_check_tool(run, capsys):
    tool = load_tool("attention_box_check")
    assert tool.main([str(run["tl"]), "--max-videos", "3", "--json", "--init-baseline"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == 3
    for key in ("trained", "initialised"):
        assert [layer["layer"] for layer in report[key]] == [0, 1]
        for layer in report[key]:
            assert 0 < layer["box_area"] < 1 and 0 <= layer["mass_in_box"] <= 1
            assert len(layer["token_mass"]) == NUM_TOKENS
            assert layer["ratio"] == pytest.approx(layer["mass_in_box"] / layer["box_area"])
    tool.main([str(run["tl"]), "--max-videos", "2"])
    assert "ratio" in capsys.readouterr().out


def test_plot_metrics_tool(tmp_path, capsys):
    lines = [{"step": s, "epoch": 0, "train/loss": 1.0 / (s + 1), "lr": 1e-3} for s in range(5)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert load_tool("plot_metrics").main([str(tmp_path)]) == 0
    with Image.open(tmp_path / "curves.png") as png:
        assert png.size == (2 * 420, 340)  # loss and learning rate; no accuracy logged
    assert "curves.png" in capsys.readouterr().out
