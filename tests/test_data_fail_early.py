"""Bad datasets stop the real training command (``python -m vivit_tl train``) with one ``error:`` line
and exit status 2.

- a list file whose videos are mostly absent (a wrong ``data_prefix``), before training starts;
- too many bad files in a row, met by a DataLoader worker during training.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from video_utils import make_bad_files, make_video_folder

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
model: {{name: vivit_ti16x2, embed_dim: 32, depth: 1, num_heads: 2, mlp_dim: 64, patch_size: 8, tubelet_size: 2}}
data:
  kind: {kind}
  root: {root}
  num_frames: 4
  image_size: 32
  short_side: 32
  num_workers: 1
  max_tries: 2
{extra}
optim: {{epochs: 1, batch_size: 2}}
run: {{name: bad, output_dir: {runs}}}
"""


def train(tmp_path: Path, kind: str, root: Path, extra: str = "") -> subprocess.CompletedProcess:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(kind=kind, root=root, extra=extra, runs=tmp_path / "runs"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIVIT_TL_DEBUG": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vivit_tl", "train", "--config", str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def the_error_line(done: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line that ends stderr (warnings and a progress bar may come before it)."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and [line for line in lines if line.startswith("error:")] == lines[-1:]
    return lines[-1]


def test_a_mostly_missing_list_stops_before_training(tmp_path):
    make_video_folder(tmp_path / "data", {"a": 1}, split="train")
    (tmp_path / "data" / "train.txt").write_text("a/v0.mp4 0\na/v1.mp4 0\na/v2.mp4 1\n")  # paths relative to train/
    done = train(tmp_path, "video_list", tmp_path / "data")
    line = the_error_line(done)
    assert line.startswith("error: 3 of 3 listed videos of split 'train' are missing, e.g. ")
    assert f"{tmp_path / 'data'}/a/v0.mp4, {tmp_path / 'data'}/a/v1.mp4, {tmp_path / 'data'}/a/v2.mp4" in line
    assert "data.data_prefix" in line and "data.root" in line
    assert not (tmp_path / "runs" / "bad").exists()


@pytest.mark.parametrize("kind", ["video_folder"])
def test_too_many_bad_files_in_a_row_is_one_line_from_a_worker(tmp_path, kind):
    good = make_video_folder(tmp_path / "src", {"a": 1})
    make_bad_files(tmp_path / "data" / "train" / "a", good[0])  # existing files, none readable
    make_video_folder(tmp_path / "data", {"a": 1}, split="val")
    line = the_error_line(train(tmp_path, kind, tmp_path / "data"))
    assert line.startswith("error: 3 training samples in a row were bad files (starting at ")
    assert line.endswith("data.max_tries=2): check the dataset with vivit-tl check-dataset")
