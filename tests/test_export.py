"""tools/export.py: torch.export program with the same logits as eager, and model files from a pretrained spec."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from vivit_tl.checkpoint import load_model_file, save_model_file
from vivit_tl.errors import UserError
from vivit_tl.models import create_model

from viz_utils import load_tool

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("vivit_b16x2_tl8_fuse", num_classes=3, num_frames=4, image_size=32, patch_size=8,
                         embed_dim=32, num_heads=2, mlp_dim=64, depth=2, token_learner_loc=1, num_tokens=2)
    folder = tmp_path_factory.mktemp("export") / "model"
    save_model_file(folder, model, classes=CLASSES, data_config={"num_frames": 4, "image_size": 32}, step=5, epoch=1)
    return folder


def test_export_program_dynamic_batch(model_dir, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert load_tool("export").main([str(model_dir), "--out", str(out)]) == 0
    assert "max abs logit difference vs eager" in capsys.readouterr().out
    extra = {"model.json": ""}
    program = torch.export.load(str(out), extra_files=extra)
    description = json.loads(extra["model.json"])
    assert description["classes"] == CLASSES and description["input"]["shape"] == ["B", 3, 4, 32, 32]
    eager, _ = load_model_file(model_dir)
    for batch in (1, 5):  # other batch sizes than the example's 2
        x = torch.randn(batch, 3, 4, 32, 32)
        with torch.inference_mode():
            diff = (program.module()(x) - eager(x)).abs().max().item()
        print(f"exported vs eager, batch {batch}: max abs difference {diff:.3g}")
        assert diff <= 1e-5


def test_export_static_other_input_size(model_dir, tmp_path, capsys):
    out = tmp_path / "big.pt2"
    assert load_tool("export").main([str(model_dir), "--out", str(out), "--frames", "8", "--size", "48",
                                     "--static"]) == 0
    assert "input [2, 3, 8, 48, 48]" in capsys.readouterr().out
    program = torch.export.load(str(out))
    eager, _ = load_model_file(model_dir)
    x = torch.randn(2, 3, 8, 48, 48)  # the positional table is resampled inside the exported program
    with torch.inference_mode():
        assert (program.module()(x) - eager(x)).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="does not divide"):
        load_tool("export").main([str(model_dir), "--out", str(tmp_path / "x.pt2"), "--size", "30"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_tool("export").main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.pt2")])


def test_model_file_from_transformers_folder(tmp_path):
    """A transformers ViViT folder becomes a self-describing model file with the same logits."""
    transformers = pytest.importorskip("transformers")
    config = transformers.VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                      num_labels=2, id2label={0: "run", 1: "jump"})
    torch.manual_seed(0)
    net = transformers.VivitForVideoClassification(config).eval()
    net.save_pretrained(tmp_path / "hf")
    assert load_tool("export").main([str(tmp_path / "hf"), "--out", str(tmp_path / "model")]) == 0
    model, info = load_model_file(tmp_path / "model")
    assert info["classes"] == ["run", "jump"]
    assert info["data_config"]["mean"] == [0.5] * 3 and info["data_config"]["num_frames"] == 8
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert (model(x) - net(pixel_values=x.transpose(1, 2)).logits).abs().max().item() <= 1e-4
    (tmp_path / "names.txt").write_text("one\ntwo\nthree\n")
    with pytest.raises(UserError, match="3 class names for a model with 2 classes"):
        load_tool("export").main([str(tmp_path / "hf"), "--out", str(tmp_path / "m2"),
                                  "--classes", str(tmp_path / "names.txt")])


def test_a_training_checkpoint_is_a_clear_error(tmp_path):
    """Not handed to the pretrained-weights converter (whose error would ask for options export.py lacks)."""
    from safetensors.torch import save_file

    export = load_tool("export")
    step = tmp_path / "checkpoints" / "step_00000010"
    step.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(step / "model.safetensors"))
    (step / "train_state.json").write_text("{}")
    for spec in (step, step / "model.safetensors"):
        with pytest.raises(UserError, match="training checkpoints .* resume with vivit-tl train --resume"):
            export.load_any(str(spec))


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory):
    """The same tiny size without TokenLearner."""
    torch.manual_seed(1)
    model = create_model("vivit_ti16x2", num_classes=3, num_frames=4, image_size=32, patch_size=8, embed_dim=32,
                         num_heads=2, mlp_dim=64, depth=2)
    folder = tmp_path_factory.mktemp("export_plain") / "model"
    save_model_file(folder, model, classes=CLASSES, data_config={"num_frames": 4, "image_size": 32}, step=0, epoch=0)
    return folder


@pytest.mark.parametrize("which", ["token_learner", "plain"])
def test_onnx_export_matches_eager(which, model_dir, plain_model_dir, tmp_path, capsys):
    """torch.onnx.export(dynamo=True) with a dynamic batch; onnxruntime's logits within 1e-4 of eager."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from vivit_tl.export import onnx_logits

    folder = model_dir if which == "token_learner" else plain_model_dir
    out = tmp_path / "model.onnx"
    assert load_tool("export").main([str(folder), "--format", "onnx", "--out", str(out)]) == 0
    assert "max abs logit difference vs eager" in capsys.readouterr().out
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["model.json"])["classes"] == CLASSES
    eager, _ = load_model_file(folder)
    for batch in (1, 5):  # other batch sizes than the example's 2
        x = torch.randn(batch, 3, 4, 32, 32)
        with torch.inference_mode():
            diff = (onnx_logits(out, x) - eager(x)).abs().max().item()
        print(f"ONNX ({which}) vs eager, batch {batch}: max abs difference {diff:.3g}")
        assert diff <= 1e-4


def test_onnx_without_onnxruntime_names_the_extra(model_dir, tmp_path, monkeypatch):
    from vivit_tl.export import onnx_logits

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(UserError, match=r"needs onnxruntime: pip install 'vivit-tl\[onnx\]'"):
        onnx_logits(tmp_path / "model.onnx", torch.zeros(1, 3, 4, 32, 32))
