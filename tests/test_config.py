"""Typed config: YAML sections, dotted overrides with type coercion, clear errors on bad keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vivit_tl.config import CONFIG_DIR, TrainConfig, coerce, load_config, override_dataclass
from vivit_tl.data import DataConfig
from vivit_tl.errors import UserError
from vivit_tl.models import model_config

REPO = Path(__file__).resolve().parents[1]
BUNDLED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_bundled_configs_exist():
    names = {p.stem for p in BUNDLED}
    assert {"demo", "cifar10_vit", "cifar10_vit_tl", "kinetics400_vivit_b16x2_tl"} <= names


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_config_loads_and_builds_a_valid_model_config(path):
    cfg = load_config(path)
    overrides = {**cfg.model.overrides, "num_frames": cfg.data.num_frames, "image_size": cfg.data.image_size}
    overrides.setdefault("num_classes", 10)
    model_config(cfg.model.name, **overrides)  # raises on an inconsistent model section


def test_default_is_demo_with_synthetic_data_and_token_learner():
    cfg = load_config()
    assert cfg.data.kind == "synthetic"
    assert cfg.model.overrides["token_learner"] != "none"


def test_overrides_are_coerced_to_the_field_types():
    cfg = load_config("demo", ["optim.lr=3e-4", "optim.epochs=3", "run.compile=true", "model.depth=2",
                               "data.scale_jitter=[1.0, 1.2]", "optim.eval_batch_size=null", "run.name=123"])
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)  # YAML reads '3e-4' as text
    assert cfg.optim.epochs == 3 and cfg.run.compile is True
    assert cfg.model.overrides["depth"] == 2
    assert cfg.data.scale_jitter == [1.0, 1.2]
    assert cfg.optim.eval_batch_size is None
    assert cfg.run.name == "123"


def test_float_fraction_keeps_its_type_in_int_or_float_fields():
    cfg = load_config("demo", ["model.token_learner_loc=1.0"])
    assert isinstance(cfg.model.overrides["token_learner_loc"], float)  # a fraction, not block index 1
    cfg = load_config("demo", ["model.token_learner_loc=2"])
    assert cfg.model.overrides["token_learner_loc"] == 2 and isinstance(cfg.model.overrides["token_learner_loc"], int)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.lrr=0.1", ["unknown config key 'optim.lrr'", "did you mean 'optim.lr'", "weight_decay"]),
        ("model.dpth=3", ["'model.dpth'", "did you mean 'model.depth'", "num_heads"]),
        ("dta.root=/x", ["unknown config section 'dta'", "did you mean 'data'"]),
        ("data.rot=/x", ["'data.rot'", "did you mean 'data.root'"]),
        ("model.name=vivit_b16x3", ["unknown model name 'vivit_b16x3'", "vivit_b16x2"]),
        ("optim.lr=fast", ["optim.lr", "expected a number", "'fast'"]),
        ("optim.optimizer=adam", ["optim.optimizer", "'adam'", "'adamw'"]),
        ("optim.epochs=2.5", ["optim.epochs", "expected an integer"]),
        ("optim.lr", ["must look like section.key=value"]),
        ("lr=0.1", ["must be section.key"]),
    ],
)
def test_bad_override_is_a_clear_user_error(override, expected):
    with pytest.raises(UserError) as info:
        load_config("demo", [override])
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  weight_decy: 0.1\n")
    with pytest.raises(UserError, match="did you mean 'optim.weight_decay'"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("optim: 3\n")
    with pytest.raises(UserError, match="section 'optim' must be a mapping"):
        load_config(bad)


def test_data_preset_and_explicit_keys():
    cfg = load_config("demo", ["data.preset=kinetics", "data.num_frames=8"])
    assert cfg.data.num_frames == 8  # explicit key wins
    assert cfg.data.eval_crops == 3  # from the preset


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("demo", ["optim.lr=0.002", "model.depth=3", "optim.betas=[0.8, 0.9]"])
    cfg.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert isinstance(again, TrainConfig)


def test_override_dataclass_for_tools():
    data = DataConfig.from_preset("synthetic")
    changed = override_dataclass(data, ["data.eval_clips=4", "num_workers=0"], "data")
    assert (changed.eval_clips, changed.num_workers) == (4, 0)
    assert data.eval_clips == 1  # the original is untouched
    with pytest.raises(UserError, match="did you mean 'data.eval_crops'"):
        override_dataclass(data, ["eval_crop=3"], "data")


def test_coerce_rejects_bool_for_numbers():
    with pytest.raises(UserError, match="expected an integer"):
        coerce(True, int, "optim.epochs")


def test_cli_misspelt_key_is_one_line_error():
    result = subprocess.run(
        [sys.executable, "tools/train.py", "optim.lrr=0.1"], cwd=REPO, capture_output=True, text=True,
        env={**_env(), "VIVIT_TL_DEBUG": ""}, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown config key 'optim.lrr'"), result.stderr
    assert "did you mean 'optim.lr'" in lines[0]


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.parametrize("override, message", [
    ("run.log_every_steps=0", "run.log_every_steps=0 must be >= 1"),
    ("run.eval_every_epochs=0", "run.eval_every_epochs=0 must be >= 1"),
    ("run.save_every_steps=-1", "run.save_every_steps=-1 must be >= 0"),
    ("optim.epochs=0", "optim.epochs=0 must be >= 1"),
    ("optim.batch_size=0", "optim.batch_size=0 must be >= 1"),
    ("optim.grad_accum_steps=0", "optim.grad_accum_steps=0 must be >= 1"),
    ("optim.lr=-0.1", "optim.lr=-0.1 must be >= 0"),
    ("optim.label_smoothing=1.0", r"optim.label_smoothing=1.0 must be in \[0, 1\)"),
])
def test_out_of_range_optim_and_run_values_are_user_errors(override, message):
    """Caught when the config is read, not as a ZeroDivisionError at step 1 or after an epoch of training."""
    with pytest.raises(UserError, match=message):
        load_config(None, [override])
    load_config(None, ["optim.eval_batch_size=null", "run.cpu_threads=null"])  # None: automatic


def test_run_cli_turns_user_errors_and_ctrl_c_into_one_line(monkeypatch, capsys):
    from vivit_tl.errors import run_cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.delenv("VIVIT_TL_DEBUG", raising=False)
    for main, status, line in ((interrupted, 130, "interrupted"), (lambda: load_config(None, ["optim.lrr=1"]), 2,
                                                                     "error: unknown config key 'optim.lrr'")):
        with pytest.raises(SystemExit) as info:
            run_cli(main)
        assert info.value.code == status
        assert capsys.readouterr().err.startswith(line)
