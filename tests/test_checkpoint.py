"""Model files and training checkpoints: self-describing, atomic, strict, with clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vivit_tl.checkpoint as ckpt
from vivit_tl.checkpoint import CheckpointDir, load_model_file, read_model_info, read_train_state, save_model_file
from vivit_tl.data import DataConfig
from vivit_tl.errors import UserError
from vivit_tl.models import create_model

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c"]
TINY = dict(num_classes=3, num_frames=4, image_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
            pool="gap", token_learner="v1.1", num_tokens=2, token_learner_loc=1)


def tiny_model(**changes):
    torch.manual_seed(0)
    return create_model("vivit_ti16x2", **{**TINY, **changes}).eval()


def data_config() -> DataConfig:
    return DataConfig.from_preset("synthetic", num_frames=4, image_size=32, short_side=32)


def write(directory: Path, model=None, **kw) -> Path:
    model = model or tiny_model()
    return save_model_file(directory, model, classes=CLASSES, data_config=data_config(), step=7, epoch=1,
                           metrics={"val/top1": 0.5}, model_name="vivit_ti16x2", **kw)


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = tiny_model()
    write(tmp_path / "best", model)
    x = torch.randn(2, 3, 4, 32, 32)
    for path in (tmp_path / "best", tmp_path / "best" / "config.json", tmp_path / "best" / "model.safetensors", tmp_path):
        loaded, info = load_model_file(path)
        assert not loaded.training
        assert torch.equal(loaded(x), model(x))
        assert info["classes"] == CLASSES and info["step"] == 7 and info["epoch"] == 1
        assert info["metrics"] == {"val/top1": 0.5}
        assert info["model_config"] == model.config.to_dict()
        assert DataConfig.from_dict(info["data_config"]) == data_config()  # the preprocessing travels along


def test_json_copy_is_readable_and_matches_header(tmp_path):
    write(tmp_path)
    from_json = json.loads((tmp_path / "config.json").read_text())
    assert from_json == read_model_info(tmp_path / "model.safetensors")
    assert from_json["format_version"] == ckpt.FORMAT_VERSION


def test_class_count_must_match(tmp_path):
    with pytest.raises(ValueError, match="2 class names"):
        save_model_file(tmp_path, tiny_model(), classes=["a", "b"], data_config=data_config(), step=0, epoch=0)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model_file(tmp_path / "nothing")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_is_one_line_user_error(tmp_path, damage):
    weights = write(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 10)
    with pytest.raises(UserError, match="corrupt or truncated") as info:
        load_model_file(tmp_path)
    assert "\n" not in str(info.value)


def test_weights_of_another_model_name_the_mismatch(tmp_path):
    write(tmp_path)  # a valid file whose weights we then replace with another architecture's
    other = tiny_model(depth=3)
    meta = {ckpt.META_KEY: json.dumps(read_model_info(tmp_path / "model.safetensors"))}
    from safetensors.torch import save_model

    save_model(other, str(tmp_path / "model.safetensors"), metadata=meta)
    with pytest.raises(UserError, match=r"do not match the model: unexpected keys \[encoder.blocks.2"):
        load_model_file(tmp_path)
    save_model(tiny_model(embed_dim=48, mlp_dim=96), str(tmp_path / "model.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="shape mismatches"):
        load_model_file(tmp_path)


def test_plain_safetensors_is_not_a_model_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match="not a vivit-tl model file"):
        load_model_file(tmp_path)
    (tmp_path / "demo.pt2").write_bytes(b"PK\x03\x04" + bytes(200))  # e.g. an exported program (a zip)
    with pytest.raises(UserError, match="demo.pt2 is not a model file .*torch.export.load"):
        load_model_file(tmp_path / "demo.pt2")


def test_kill_during_save_keeps_previous_model_file(tmp_path, monkeypatch):
    model = tiny_model()
    write(tmp_path, model)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash(model, filename, metadata=None):
        Path(filename).write_bytes(b"partial")  # half-written temporary file, then the "kill"
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, tiny_model(depth=3))
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]  # no temp
    load_model_file(tmp_path)


def test_checkpoint_dir_commit_prune_and_partial(tmp_path):
    ck = CheckpointDir(tmp_path / "checkpoints", keep_last=2)
    for step in (3, 6, 9):
        staging = ck.staging(step)
        staging.mkdir(parents=True)
        (staging / "model.safetensors").write_bytes(b"x")
        ck.commit(step, {"global_step": step})
    assert [p.name for p in ck.list()] == ["step_00000006", "step_00000009"]
    assert read_train_state(ck.latest())["global_step"] == 9
    # an interrupted save leaves a hidden staging folder that is neither listed nor resumed from
    ck.staging(12).mkdir()
    (ck.staging(12) / "model.safetensors").write_bytes(b"half")
    assert ck.latest().name == "step_00000009"
    ck.clean_partial()
    assert not ck.staging(12).exists()
    # saving the same step again replaces it
    ck.staging(9).mkdir()
    ck.commit(9, {"global_step": 9, "again": True})
    assert read_train_state(ck.path(9))["again"] is True
    # killed between the two renames of such a re-save: the moved-aside checkpoint is put back, not deleted
    ck.staging(9).mkdir()
    os.replace(ck.path(9), ck.replaced(9))
    assert ck.latest().name == "step_00000006"
    ck.clean_partial()
    assert read_train_state(ck.latest())["again"] is True and not ck.staging(9).exists()
    assert not ck.replaced(9).exists()


def test_read_train_state_errors(tmp_path):
    with pytest.raises(UserError, match="not a training checkpoint"):
        read_train_state(tmp_path)
    (tmp_path / "train_state.json").write_text("{broken")
    with pytest.raises(UserError, match="corrupt"):
        read_train_state(tmp_path)


def test_atomic_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "f.txt"
    ckpt.atomic_write_text(target, "old")
    ckpt.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_eval_cli_corrupt_checkpoint_is_one_line_error(tmp_path):
    weights = write(tmp_path / "best")
    weights.write_bytes(weights.read_bytes()[:100])
    result = subprocess.run([sys.executable, "tools/eval.py", str(tmp_path / "best"), str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO), "VIVIT_TL_DEBUG": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "corrupt or truncated" in lines[0], result.stderr
