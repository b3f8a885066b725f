"""The CIFAR-10 table (benchmarks/cifar10_table.py) and its row configs: valid configs of the right models,
results collected from run directories in the trainer's format, "not run" with the command otherwise."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import cifar10_table as table  # noqa: E402

from vivit_tl.config import CONFIG_DIR, load_config  # noqa: E402
from vivit_tl.engine.evaluation import EvalResult, write_report  # noqa: E402
from vivit_tl.errors import UserError  # noqa: E402
from vivit_tl.models.flops import model_cost  # noqa: E402

KERAS_VIT = 1_344_650  # tests/test_models.py: the Keras layer shapes counted by hand
BLOCK = KERAS_VIT - (6 * 6 * 3 * 128 + 128) - 64 * 128 - 256 - (128 * 10 + 10)  # 4 blocks
# row id -> (model, parameters, tokens entering each block)
EXPECTED = {
    "no_tl": ("vit_cifar", KERAS_VIT, [64] * 4),
    "tl8": ("vit_cifar_tl8", 1_355_850, [64, 64, 64, 8]),
    "tl4": ("vit_cifar_tl4", 1_349_946, [64, 64, 64, 4]),
    "depth8": ("vit_cifar", KERAS_VIT + BLOCK, [64] * 8),
    "v11_tl8": ("vit_cifar_v11_tl8", 1_353_682, [64, 64, 64, 8]),
    "tl8_plus": ("vit_cifar_tl8", 1_355_850, [64, 64, 64, 8]),
    "tl8_reg": ("vit_cifar_tl8", 1_355_850, [64, 64, 64, 8]),
}
KERAS_RECIPE = ("no_tl", "tl8", "tl4", "depth8", "v11_tl8")


def row(row_id: str):
    return next(r for r in table.ROWS if r.id == row_id)


def test_rows_cover_the_issue():
    assert set(table.ROW_IDS) == set(EXPECTED)
    for r in table.ROWS:
        assert (CONFIG_DIR / r.config).is_file()


@pytest.mark.parametrize("row_id", list(EXPECTED))
def test_row_config_builds_the_expected_model(row_id):
    cfg = load_config(CONFIG_DIR / row(row_id).config)
    name, params, tokens = EXPECTED[row_id]
    assert cfg.model.name == name
    assert (cfg.optim.epochs, cfg.run.test_split, cfg.data.image_size, cfg.data.val_size) == (20, "test", 48, 10000)
    cost = model_cost(cfg.model.name, num_classes=10, num_frames=cfg.data.num_frames,
                      image_size=cfg.data.image_size, **cfg.model.overrides)
    assert (cost["params"], cost["tokens_per_block"]) == (params, tokens)


def test_keras_rows_share_the_keras_recipe():
    """Only the model section differs between the Keras rows (the table compares models, not recipes)."""
    reference = load_config(CONFIG_DIR / "cifar10_vit.yaml")
    assert (reference.optim.lr, reference.optim.min_lr, reference.optim.warmup_epochs) == (1e-3, 1e-3, 0)
    assert (reference.optim.batch_size, reference.data.preset) == (256, "keras_cifar")
    # tfa.optimizers.AdamW(weight_decay=1e-4): see test_train.py::test_keras_cifar_configs_use_tf_addons_adamw_weight_decay
    assert (reference.optim.weight_decay, reference.optim.decay_all_params, reference.optim.eps) == (0.1, True, 1e-7)
    tf27_model = dict(weight_init="keras", gelu_approximate="none", learned_pos_embed=False)  # see the configs
    for row_id in KERAS_RECIPE:
        cfg = load_config(CONFIG_DIR / row(row_id).config)
        assert (cfg.data, cfg.optim) == (reference.data, reference.optim), row_id
        assert tf27_model.items() <= cfg.model.overrides.items(), row_id


def test_plus_recipe_keeps_model_epochs_and_split():
    keras, plus = load_config(CONFIG_DIR / "cifar10_vit_tl.yaml"), load_config(CONFIG_DIR / "cifar10_vit_tl_plus.yaml")
    assert (plus.model.name, plus.optim.epochs, plus.data.val_size, plus.data.split_seed) == (
        keras.model.name, keras.optim.epochs, keras.data.val_size, keras.data.split_seed)
    assert plus.model.overrides == {}  # the same architecture; our initialisation and a learned positional table
    assert plus.optim.warmup_epochs > 0 and plus.optim.min_lr < plus.optim.lr  # warm-up + cosine
    assert plus.data.eval_resize == "full" and plus.data.short_side * plus.data.scale_jitter[0] == 48


def fake_run(runs_dir: Path, name: str, cfg, top1: float, timing: float | dict | None = None,
             clock: list[float] | None = None) -> Path:
    """A finished run directory as the trainer leaves it: config.yaml and eval_test/report.json."""
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    cfg.save(run_dir / "config.yaml")
    n, correct = 20, round(top1 * 20)
    labels = torch.arange(n) % 10
    logits = torch.nn.functional.one_hot((labels + (torch.arange(n) >= correct)) % 10, 10).double()
    result = EvalResult(logits, labels, torch.ones(n, dtype=torch.long), n, [f"c{i}" for i in range(10)])
    write_report(result, run_dir / "eval_test", {"model": str(run_dir / "best"), "split": "test", "views_per_video": 1})
    if timing is not None:
        fields = timing if isinstance(timing, dict) else {"wall_time_s": timing}
        (run_dir / table.TIMING_NAME).write_text(json.dumps({**fields, "machine": "test box"}))
    if clock is not None:  # the trainer's time/elapsed_s records
        lines = [json.dumps({"step": i, "time/elapsed_s": t} | ({"test/top1": top1} if i == len(clock) - 1 else {}))
                 for i, t in enumerate(clock)]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines + ['{"step": 9, "trunc']))  # a line cut by a kill
    return run_dir


@pytest.fixture
def archive(tmp_path) -> Path:
    path = tmp_path / "cifar10_jpeg.tar.gz"  # --collect-only never opens it
    path.write_bytes(b"")
    return path


def test_collect_only_fills_finished_rows_and_says_not_run(tmp_path, archive, capsys):
    runs = tmp_path / "runs"
    jpeg = table.row_overrides(str(archive), [], str(runs))
    tl8 = table.expected_config(row("tl8"), jpeg)
    fake_run(runs, "cifar10_vit_tl", tl8, 0.55, timing=1800.0)
    fake_run(runs, "cifar10_vit_tl-2", load_config(CONFIG_DIR / "cifar10_vit_tl.yaml", ["optim.epochs=1"] + jpeg), 0.2)
    # a torchvision run of no_tl is not a result on the JPEG mirror; a hand-launched one (no timing file) is
    fake_run(runs, "cifar10_vit", table.expected_config(row("no_tl"), [f"run.output_dir={runs}"]), 0.9)
    older = fake_run(runs, "cifar10_vit-2", table.expected_config(row("no_tl"), jpeg), 0.5)
    os.utime(older / "config.yaml", (time.time() - 600, time.time() - 600))
    out = tmp_path / "table"
    assert table.main(["--archive", str(archive), "--collect-only", "--runs-dir", str(runs), "--out", str(out)]) == 0

    data = json.loads(out.with_suffix(".json").read_text())
    assert data["dataset"] == "CIFAR-10 (JPEG q75 mirror)"
    rows = {r["id"]: r for r in data["rows"]}
    assert list(rows) == table.ROW_IDS
    assert rows["tl8"]["status"] == "done" and rows["tl8"]["top1"] == pytest.approx(55.0)
    assert rows["tl8"]["run_dir"].endswith("cifar10_vit_tl")  # the exact-config run beats the newer epochs=1 run
    assert (rows["tl8"]["wall_time_s"], rows["tl8"]["wall_time_source"]) == (1800.0, "launcher")
    assert rows["no_tl"]["top1"] == pytest.approx(50.0) and rows["no_tl"]["run_dir"].endswith("cifar10_vit-2")
    assert rows["no_tl"]["wall_time_source"] == "file times" and rows["no_tl"]["wall_time_s"] >= 590
    for row_id in ("tl4", "depth8", "v11_tl8", "tl8_plus", "tl8_reg"):
        assert rows[row_id]["status"] == "not run" and "top1" not in rows[row_id]
        assert rows[row_id]["command"].startswith(f"accelerate launch tools/train.py --config configs/{row(row_id).config}")
        assert f"data.archive={archive}" in rows[row_id]["command"]
    assert rows["depth8"]["params"] == EXPECTED["depth8"][1]

    md = out.with_suffix(".md").read_text()
    lines = {line.split("|")[1].strip().split()[0]: line for line in md.splitlines() if line.startswith("| `")}
    assert "| 56.55% | 55.00% | 0.0798 | 1.36 M | 30.0 min |" in lines["`tl8`"]
    assert "| not run |" in lines["`tl4`"] and "configs/cifar10_vit_tl4.yaml" in lines["`tl4`"]
    assert "not comparable with the Keras utility" in md and "CIFAR-10 (JPEG q75 mirror)" in md

    # a run that differs from the row config is shown, with its differences
    (runs / "cifar10_vit_tl").rename(runs / "moved")
    table.main(["--archive", str(archive), "--collect-only", "--runs-dir", str(runs), "--out", str(out), "--rows", "tl8"])
    tl8_row = next(r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if r["id"] == "tl8")
    assert tl8_row["top1"] == pytest.approx(20.0) and tl8_row["config_differences"] == ["optim.epochs=1 (row: 20)"]
    assert "optim.epochs=1 (row: 20)" in out.with_suffix(".md").read_text()


def test_dry_run_prints_commands_of_rows_without_results(tmp_path, archive, capsys):
    runs = tmp_path / "runs"
    fake_run(runs, "cifar10_vit_tl", table.expected_config(row("tl8"), table.row_overrides(str(archive), [], str(runs))),
             0.5)
    assert table.main(["--archive", str(archive), "--dry-run", "--runs-dir", str(runs), "--out", str(tmp_path / "t"),
                       "--rows", "tl8", "tl4",
                       "--set", "data.num_workers=0", "--launch-args", "--num_processes 1"]) == 0
    out = capsys.readouterr().out
    assert "[tl8] already done: 50.00%" in out
    assert (f"accelerate launch --num_processes 1 tools/train.py --config configs/cifar10_vit_tl4.yaml "
            f"data.kind=image_folder data.archive={archive} data.split_seed=0 run.output_dir={runs} "
            "data.num_workers=0") in out
    assert "cifar10_vit_tl.yaml" not in out


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        table.main(["--archive", str(tmp_path / "missing.tar.gz"), "--dry-run"])
    with pytest.raises(UserError, match="section.key=value"):
        table.main(["--dry-run", "--set", "epochs=3"])
    with pytest.raises(UserError, match="unknown config key 'optim.epoch'"):
        table.main(["--dry-run", "--set", "optim.epoch=3"])


def test_update_docs_writes_the_table_the_cifar10_page_includes(tmp_path, archive):
    page = (REPO / "docs" / "cifar10.md").read_text()
    assert '--8<-- "docs/generated/cifar10_table.md"' in page
    committed = table.DOCS_TABLE.read_text()
    for r in table.ROWS:
        assert f"configs/{r.config}" in committed
    docs_table = tmp_path / "generated" / "cifar10_table.md"
    runs = tmp_path / "runs"
    assert table.main(["--archive", str(archive), "--collect-only", "--runs-dir", str(runs), "--out",
                       str(tmp_path / "t"), "--update-docs", "--docs-table", str(docs_table)]) == 0
    text = docs_table.read_text()
    assert text == table.markdown_table(json.loads((tmp_path / "t.json").read_text())["rows"],
                                        "CIFAR-10 (JPEG q75 mirror)").replace(str(archive), archive.name)
    assert f"data.archive={archive.name} " in text and str(archive) not in text


def test_wall_time_prefers_the_trainer_clock(tmp_path, archive):
    """The trainer's clock (summed over resumed segments) beats the launcher's; a timing file may name its source."""
    runs = tmp_path / "runs"
    jpeg = table.row_overrides(str(archive), [], str(runs))
    fake_run(runs, "cifar10_vit_tl", table.expected_config(row("tl8"), jpeg), 0.55, timing=1800.0, clock=[5.0, 4000.0])
    fake_run(runs, "cifar10_vit", table.expected_config(row("no_tl"), jpeg), 0.5,
             timing={"wall_time_s": 7200.0, "source": "the two segments' checkpoint times"})
    # resumed from a checkpoint without the clock: the test line has none, so the launcher's time counts
    tl4 = fake_run(runs, "cifar10_vit_tl4", table.expected_config(row("tl4"), jpeg), 0.5, timing=3000.0)
    (tl4 / "metrics.jsonl").write_text('{"step": 1, "time/elapsed_s": 60.0}\n{"step": 2, "test/top1": 0.5}\n')
    out = tmp_path / "table"
    assert table.main(["--archive", str(archive), "--collect-only", "--runs-dir", str(runs), "--out", str(out)]) == 0
    rows = {r["id"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert (rows["tl8"]["wall_time_s"], rows["tl8"]["wall_time_source"]) == (4000.0, "trainer")
    assert (rows["tl4"]["wall_time_s"], rows["tl4"]["wall_time_source"]) == (3000.0, "launcher")
    assert (rows["no_tl"]["wall_time_s"], rows["no_tl"]["wall_time_source"]) == (7200.0, "the two segments' checkpoint times")
    md = out.with_suffix(".md").read_text()
    assert "`no_tl`: wall time from the two segments' checkpoint times." in md and "`tl8`: wall time" not in md
    assert "`tl4`: wall time from launch to test report, measured by this script." in md


def test_recorded_rows_survive_a_checkout_without_their_runs(tmp_path, archive):
    """runs/ is not in git: rebuilding the table where a row's run directory is missing keeps the result recorded in
    the results file, with a note, and compares it with today's row config; another dataset's results are not kept."""
    runs = tmp_path / "runs"
    jpeg = table.row_overrides(str(archive), [], str(runs))
    fake_run(runs, "cifar10_vit_tl", table.expected_config(row("tl8"), jpeg), 0.55, clock=[5.0, 4000.0])
    out = tmp_path / "table"
    collect = ["--collect-only", "--runs-dir", str(runs), "--out", str(out)]
    assert table.main(["--archive", str(archive), *collect]) == 0
    first = {r["id"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    shutil.rmtree(runs)

    assert table.main(["--archive", str(archive), *collect]) == 0
    rows = {r["id"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["tl8"]["status"] == "done" and rows["tl8"]["recorded_in"] == str(out.with_suffix(".json"))
    for key in ("top1", "wall_time_s", "wall_time_source", "run_dir", "run_config", "finished"):
        assert rows["tl8"][key] == first["tl8"][key], key
    assert rows["tl8"]["config_differences"] == [] and rows["tl4"]["status"] == "not run"
    md = out.with_suffix(".md").read_text()
    assert "| 56.55% | 55.00% |" in md and f"directory {first['tl8']['run_dir']} was not found here" in md

    # the row config changed after the run: the recorded result stays, with its differences
    assert table.main(["--archive", str(archive), *collect, "--set", "optim.epochs=3"]) == 0
    tl8 = next(r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if r["id"] == "tl8")
    assert tl8["top1"] == pytest.approx(55.0) and tl8["config_differences"] == ["optim.epochs=20 (row: 3)"]

    # a recorded run of another model is not a result of the row
    data = json.loads(out.with_suffix(".json").read_text())
    tl8_record = next(r for r in data["rows"] if r["id"] == "tl8")
    tl8_record["run_config"]["model.name"] = "vit_cifar_tl4"
    out.with_suffix(".json").write_text(json.dumps(data))
    assert table.main(["--archive", str(archive), *collect]) == 0
    assert all(r["status"] == "not run" for r in json.loads(out.with_suffix(".json").read_text())["rows"])

    # torchvision CIFAR-10 is another table: its default file is another file, and the mirror's is never replaced
    before = out.with_suffix(".json").read_text()
    with pytest.raises(UserError, match="holds the table on CIFAR-10 \\(JPEG q75 mirror\\), not on CIFAR-10 \\(torchvision\\)"):
        table.main(collect)
    assert out.with_suffix(".json").read_text() == before
    assert table.parse_args([]).out.endswith("cifar10_table_torchvision")
    assert table.parse_args(["--archive", str(archive)]).out == str(table.RESULTS_DIR / "cifar10_table")


def test_the_table_lists_every_row_and_recorded_rows_count_as_done(tmp_path, archive, capsys):
    """--rows chooses what to run; a result recorded in the results file is not run again (nor lost)."""
    runs = tmp_path / "runs"
    jpeg = table.row_overrides(str(archive), [], str(runs))
    fake_run(runs, "cifar10_vit_tl", table.expected_config(row("tl8"), jpeg), 0.55, clock=[5.0, 4000.0])
    out = tmp_path / "table"
    common = ["--archive", str(archive), "--runs-dir", str(runs), "--out", str(out)]
    assert table.main([*common, "--collect-only"]) == 0
    shutil.rmtree(runs)
    assert table.main([*common, "--dry-run", "--rows", "tl8", "tl4"]) == 0
    printed = capsys.readouterr().out
    assert f"[tl8] already done: 55.00% recorded in {out.with_suffix('.json')}" in printed
    assert "configs/cifar10_vit_tl4.yaml" in printed and "configs/cifar10_vit_tl.yaml" not in printed
    assert table.main([*common, "--collect-only", "--rows", "tl4"]) == 0
    rows = {r["id"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert list(rows) == table.ROW_IDS and rows["tl8"]["top1"] == pytest.approx(55.0)


def test_keys_added_after_a_run_count_as_their_defaults():
    plus, reg = (table.flat_config(load_config(CONFIG_DIR / name))
                 for name in ("cifar10_vit_tl_plus.yaml", "cifar10_vit_tl_reg.yaml"))
    older = {key: value for key, value in plus.items() if key not in ("data.random_erasing", "data.rand_augment")}
    assert table.config_differences(plus, older) == []  # a run from before the keys existed ran with their defaults
    assert table.config_differences(reg, older) == ["data.rand_augment=None (row: [2, 7])",
                                                    "data.random_erasing=None (row: 0.25)"]
