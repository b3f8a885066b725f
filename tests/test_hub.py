"""The Hugging Face Hub layout of model folders: ``VideoTransformer.save_pretrained`` / ``from_pretrained`` /
``push_to_hub`` (huggingface_hub's PyTorchModelHubMixin), the trainer's ``best/`` and ``last/``, the folders of
the older layout (``model.json``), ``hf:`` specs through huggingface_hub's offline cache, and wrong models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import PyTorchModelHubMixin, scan_cache_dir
from safetensors.torch import load_file, save_file, save_model

from test_train import TINY_CONFIG, run_tool
from vivit_tl.checkpoint import load_model_file, read_model_info, report_dir
from vivit_tl.config import load_config
from vivit_tl.data import DataConfig, build_dataset
from vivit_tl.errors import UserError
from vivit_tl.models import ModelConfig, VideoTransformer, create_model
from vivit_tl.predict import Predictor
from vivit_tl.pretrained import load_pretrained

REPO = Path(__file__).resolve().parents[1]
TINY = dict(num_classes=3, num_frames=4, image_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
            pool="gap", token_learner="v1.1", num_tokens=2, token_learner_loc=1)
HUB_FILES = ["README.md", "config.json", "model.safetensors"]


def tiny_model(**changes) -> VideoTransformer:
    torch.manual_seed(0)
    return create_model("vivit_ti16x2", **{**TINY, **changes}).eval()


def clips(config: ModelConfig, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, config.num_frames, config.image_size, config.image_size,
                       generator=torch.Generator().manual_seed(3))


def reference_model(folder: Path, config: dict) -> VideoTransformer:
    """The model rebuilt with plain safetensors + load_state_dict (not through vivit_tl.checkpoint)."""
    model = VideoTransformer(ModelConfig.from_dict(config))
    state = load_file(str(folder / "model.safetensors"))
    model.load_state_dict(state, strict=False)  # safetensors stores a shared tensor once
    assert set(state) <= set(model.state_dict())
    return model.eval()


def write_old_format(folder: Path, model: VideoTransformer, description: dict) -> None:
    """A model folder as vivit-tl wrote it before the Hub layout: ``model.safetensors`` whose header key
    ``vivit_tl`` holds the JSON description (format 'vivit_tl.model', version 1), plus ``model.json``, a copy
    of the same JSON; no config.json, no README.md."""
    folder.mkdir(parents=True)
    text = json.dumps({"format": "vivit_tl.model", "format_version": 1, **description}, indent=2)
    save_model(model, str(folder / "model.safetensors"), metadata={"vivit_tl": text})
    (folder / "model.json").write_text(text + "\n")


def one_line_user_error(call, match: str) -> str:
    with pytest.raises(UserError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- the trainer's folders
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of tools/train.py (tiny model, 1 epoch, tiny synthetic videos)."""
    root = tmp_path_factory.mktemp("hub")
    path = root / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(cache=root / "cache", runs=root / "runs"))
    result = run_tool("tools/train.py", "--config", str(path), "run.name=hub", "optim.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "hub"


def test_trainer_folders_are_hub_folders_that_from_pretrained_loads(trained):
    cfg = load_config(trained / "config.yaml")
    classes = list(build_dataset(cfg.data, cfg.data.val_split, train=False).classes)
    for name in ("best", "last"):
        folder = trained / name
        assert sorted(p.name for p in folder.iterdir()) == HUB_FILES
        config = json.loads((folder / "config.json").read_text())
        assert config == read_model_info(folder / "model.safetensors")  # the header's description, as JSON
        assert config["classes"] == classes and DataConfig.from_dict(config["data_config"]) == cfg.data
        model = VideoTransformer.from_pretrained(folder)
        assert not model.training and model.info["classes"] == classes
        x = clips(model.config)
        assert torch.equal(model(x), reference_model(folder, config["model_config"])(x))
    # a run directory designates its best/ folder
    best = VideoTransformer.from_pretrained(trained / "best")
    assert torch.equal(VideoTransformer.from_pretrained(trained)(x), best(x))


def test_model_card_of_a_trained_model(trained):
    card = (trained / "best" / "README.md").read_text()
    config = json.loads((trained / "best" / "config.json").read_text())
    front, body = card.split("---\n")[1:3]
    assert "library_name: vivit-tl" in front and "pipeline_tag: video-classification" in front
    for name in config["classes"]:
        assert f": {name}" in body
    top1 = config["metrics"]["val/top1"]
    assert f"| val/top1 | {top1:.4f} |" in body
    assert f"step {config['step']} (epoch {config['epoch']})" in body
    data = config["data_config"]
    assert f"{data['num_frames']} frames, {data['frame_stride']} frames apart" in body
    assert str(data["mean"]) in body and str(data["std"]) in body
    assert "v1.1, 4 tokens per time step, before block 1" in body  # TINY_CONFIG's TokenLearner
    assert 'VideoTransformer.from_pretrained("<repo id or folder>")' in body
    assert "@inproceedings{arnab2021vivit" in body and "@inproceedings{ryoo2021tokenlearner" in body


def test_init_from_hf_folder(trained):
    torch.manual_seed(1)  # another initialisation than the run's
    config = read_model_info(trained / "best" / "model.safetensors")["model_config"]
    model = VideoTransformer(ModelConfig.from_dict(config))
    for spec in (f"hf:{trained / 'best'}", str(trained / "best")):
        report = load_pretrained(model, spec)
        assert report.kind == "vivit_tl" and not report.missing_keys
    source = load_file(str(trained / "best" / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.items())


# --------------------------------------------------------------------------- save / load round trips
def test_config_json_round_trip(tmp_path):
    model = tiny_model()
    data = DataConfig.from_preset("synthetic", num_frames=4, image_size=32, short_side=32)
    model.info = {"classes": ["a", "b", "c"], "data_config": data.to_dict(), "metrics": {"val/top1": 0.25}, "step": 5,
                  "epoch": 1}
    model.save_pretrained(tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == HUB_FILES
    config = json.loads((tmp_path / "one" / "config.json").read_text())
    assert ModelConfig.from_dict(config["model_config"]) == model.config
    assert config["classes"] == ["a", "b", "c"] and DataConfig.from_dict(config["data_config"]) == data
    assert (config["step"], config["epoch"], config["metrics"]) == (5, 1, {"val/top1": 0.25})
    loaded = VideoTransformer.from_pretrained(tmp_path / "one")
    loaded.save_pretrained(tmp_path / "two")  # what from_pretrained read is written back unchanged
    assert json.loads((tmp_path / "two" / "config.json").read_text()) == config
    assert (tmp_path / "two" / "README.md").read_text() == (tmp_path / "one" / "README.md").read_text()
    x = clips(model.config)
    assert torch.equal(VideoTransformer.from_pretrained(tmp_path / "two")(x), model(x))


def test_model_without_info_saves_numbered_classes_and_no_preprocessing(tmp_path):
    model = tiny_model(token_learner="none", pool="cls")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["classes"] == ["0", "1", "2"] and config["data_config"] is None
    card = (tmp_path / "README.md").read_text()
    assert "Not recorded with these weights" in card and "No evaluation recorded" in card
    assert "arnab2021vivit" in card and "ryoo2021tokenlearner" not in card  # no TokenLearner in this model


def test_old_format_folder_loads_everywhere(tmp_path):
    model = tiny_model()
    data = DataConfig.from_preset("synthetic", num_frames=4, image_size=32, short_side=32)
    description = {"model_name": "vivit_ti16x2", "model_config": model.config.to_dict(), "classes": ["a", "b", "c"],
                   "data_config": data.to_dict(), "step": 3, "epoch": 0,
                   "metrics": {"val/top1": 0.5}}
    old = tmp_path / "runs" / "old" / "best"
    write_old_format(old, model, description)
    x = clips(model.config)
    expected = model(x)
    for path in (old, old / "model.json", old / "model.safetensors", old.parent):
        assert torch.equal(VideoTransformer.from_pretrained(path)(x), expected)
        loaded, info = load_model_file(path)
        assert torch.equal(loaded(x), expected) and info["classes"] == ["a", "b", "c"]
        assert report_dir(info, "eval_val") == old / "eval_val"
    predictor = Predictor.load(old)  # predict / visualize
    assert predictor.classes == ["a", "b", "c"] and predictor.data_config == data
    other = tiny_model(num_classes=5)  # init_from, as a path and as hf:<folder>
    for spec in (str(old), f"hf:{old}"):
        report = load_pretrained(other, spec)
        assert report.kind == "vivit_tl" and report.classes == ["a", "b", "c"]
    # saving again into the old folder leaves the Hub layout, without the stale model.json
    VideoTransformer.from_pretrained(old).save_pretrained(old)
    assert sorted(p.name for p in old.iterdir()) == HUB_FILES
    assert torch.equal(VideoTransformer.from_pretrained(old)(x), expected)


def test_push_to_hub_uploads_the_hub_folder(tmp_path, monkeypatch):
    import huggingface_hub.hub_mixin as hub_mixin

    uploaded = {}

    class FakeApi:  # stands in for the Hub: records what push_to_hub would upload
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            folder = Path(folder_path)
            uploaded.update(repo_id=repo_id, files=sorted(p.name for p in folder.iterdir()),
                            config=json.loads((folder / "config.json").read_text()))
            return "https://huggingface.co/me/tiny/commit/0"

    monkeypatch.setattr(hub_mixin, "HfApi", FakeApi)
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    loaded = VideoTransformer.from_pretrained(tmp_path / "m")
    loaded.info["classes"] = ["x", "y", "z"]
    loaded.push_to_hub("me/tiny")
    assert uploaded["repo_id"] == "me/tiny" and uploaded["files"] == HUB_FILES
    assert uploaded["config"]["classes"] == ["x", "y", "z"]
    assert uploaded["config"]["model_config"] == model.config.to_dict()


# --------------------------------------------------------------------------- wrong models
def test_another_models_folder_is_a_one_line_error(tmp_path):
    model = tiny_model()
    transformers_like = tmp_path / "transformers"
    transformers_like.mkdir()
    (transformers_like / "config.json").write_text(json.dumps({"model_type": "vivit", "hidden_size": 32}))
    save_file({"vivit.embeddings.cls_token": torch.zeros(1, 1, 32)}, str(transformers_like / "model.safetensors"))
    one_line_user_error(lambda: VideoTransformer.from_pretrained(transformers_like),
                        "holds a transformers 'vivit' model, not a vivit-tl model; .*init_from=hf:")
    one_line_user_error(lambda: Predictor.load(transformers_like), "transformers 'vivit' model, not a vivit-tl")

    class OtherModel(torch.nn.Module, PyTorchModelHubMixin):  # another library's mixin model
        def __init__(self, width: int = 4):
            super().__init__()
            self.linear = torch.nn.Linear(width, width)

    OtherModel(width=4).save_pretrained(tmp_path / "other")
    one_line_user_error(lambda: VideoTransformer.from_pretrained(tmp_path / "other"), "not a vivit-tl model")
    one_line_user_error(lambda: load_pretrained(model, f"hf:{tmp_path / 'other'}"),
                        "neither a vivit-tl model .* nor a transformers one")


def test_missing_folder_and_unknown_repo_are_one_line_errors(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network in tests: the cache only
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    one_line_user_error(lambda: VideoTransformer.from_pretrained("me/absent"),
                        "'me/absent' is no local folder, and the Hugging Face Hub cannot provide it")
    one_line_user_error(lambda: VideoTransformer.from_pretrained(str(tmp_path / "runs" / "typo" / "best")),
                        "is no local folder, and the Hugging Face Hub cannot provide it")
    one_line_user_error(lambda: load_model_file("hf:me/absent"), "cannot provide it")


# --------------------------------------------------------------------------- the Hub cache, offline
def lay_out_hub_cache(hub_cache: Path, repo_id: str, folder: Path) -> None:
    """``folder``'s files as huggingface_hub caches a download of ``repo_id`` at one commit: blobs named by
    their hash, ``snapshots/<commit>/`` linking to them, ``refs/main`` naming the commit."""
    import hashlib

    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))


OFFLINE_SCRIPT = """
import json, sys
import torch
from safetensors.torch import load_file
from vivit_tl.checkpoint import load_model_file, report_dir
from vivit_tl.errors import UserError
from vivit_tl.models import VideoTransformer, create_model
from vivit_tl.predict import Predictor
from vivit_tl.pretrained import load_pretrained

x = load_file(sys.argv[1])["x"]
out = {}
for name in ("me/tiny", "hf:me/tiny"):
    out[name] = VideoTransformer.from_pretrained(name)(x).tolist()
out["predictor"] = Predictor.load("hf:me/tiny").classes
loaded, info = load_model_file("hf:me/tiny")
out["load_model_file"] = loaded(x).tolist()
out["report_dir"] = str(report_dir(info, "eval_val"))  # eval's default output: not inside the Hub cache
model = create_model("vivit_ti16x2", **json.loads(sys.argv[2]))
out["init_from"] = load_pretrained(model, "hf:me/tiny").kind
out["init_from_logits"] = model.eval()(x).tolist()
try:
    VideoTransformer.from_pretrained("me/absent")
except UserError as exc:
    out["absent"] = str(exc)
print(json.dumps(out))
"""


def test_hub_repo_through_the_offline_cache(tmp_path):
    model = tiny_model()
    data = DataConfig.from_preset("synthetic", num_frames=4, image_size=32, short_side=32)
    model.info = {"classes": ["a", "b", "c"], "data_config": data.to_dict()}
    model.save_pretrained(tmp_path / "saved")
    hub_cache = tmp_path / "home" / "hub"
    lay_out_hub_cache(hub_cache, "me/tiny", tmp_path / "saved")
    cached = scan_cache_dir(hub_cache)  # huggingface_hub reads the layout as a cached repo
    assert [r.repo_id for r in cached.repos] == ["me/tiny"] and not cached.warnings
    x = clips(model.config)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path / "x.safetensors"), json.dumps(TINY)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = model(x).tolist()
    assert out["me/tiny"] == out["hf:me/tiny"] == out["load_model_file"] == out["init_from_logits"] == expected
    assert out["predictor"] == ["a", "b", "c"] and out["init_from"] == "vivit_tl" and out["report_dir"] == "eval_val"
    assert "'me/absent' is no local folder" in out["absent"] and "\n" not in out["absent"]
