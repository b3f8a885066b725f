"""Without decord (macOS on Apple silicon, Linux aarch64): PyAV reads everything.

decord is made unimportable for real in a subprocess: a ``decord`` package earlier on the path whose
import fails, as a missing or broken install does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_train import TINY_CONFIG

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def no_decord_env(tmp_path_factory) -> dict[str, str]:
    blocker = tmp_path_factory.mktemp("no_decord")
    (blocker / "decord").mkdir()
    (blocker / "decord" / "__init__.py").write_text('raise ImportError("No module named \'decord\' (blocked)")\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO), str(REPO / "tests")]),
            "VIVIT_TL_DEBUG": "", "OMP_NUM_THREADS": "1"}


def run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_decord_really_is_unimportable_there(no_decord_env):
    probe = run(["-c", "import vivit_tl.config, vivit_tl.cli.train; from vivit_tl.data.decoding import check_decoder, "
                       "decord_available; check_decoder('auto'); check_decoder('auto'); print(decord_available())"],
                no_decord_env)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"
    assert probe.stderr.count("decord is not available") == 1 and "read with PyAV" in probe.stderr


def test_decoding_tests_pass_through_pyav(no_decord_env):
    result = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data_decoding.py",
                  "tests/test_data_datasets.py"], no_decord_env)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "passed" in result.stdout and "failed" not in result.stdout


def test_training_reads_with_pyav_and_decord_setting_is_one_line_error(no_decord_env, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(cache=tmp_path / "cache", runs=tmp_path / "runs"))
    trained = run(["tools/train.py", "--config", str(config), "optim.epochs=1", "run.name=pyav"], no_decord_env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert trained.stderr.count("decord is not available") == 1  # said once, not once per file
    assert (tmp_path / "runs" / "pyav" / "best" / "model.safetensors").is_file()

    refused = run(["tools/train.py", "--config", str(config), "optim.epochs=1", "run.name=decord",
                   "data.decoder=decord"], no_decord_env)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install decord" in lines[0], refused.stderr
