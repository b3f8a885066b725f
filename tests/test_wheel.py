"""The wheel as a user gets it: built, installed into a fresh virtual environment outside the
repository, and every command run from an empty folder with nothing of the checkout on the path.

The environment reuses this interpreter's installed dependencies (a path line in a ``.pth`` file;
the ``.pth`` files of that site, such as an editable install of this checkout, are not read), so only
vivit_tl itself comes from the wheel: the test asserts that with ``vivit_tl.__file__``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# the demo config made tiny: 32 px, 8-frame synthetic videos, a 2-block model, one epoch
TINY = ["optim.epochs=1", "optim.batch_size=4", "data.num_workers=0", "data.num_frames=4", "data.image_size=32",
        "data.short_side=32", "data.synthetic={size: 32, frames: 8, train_per_class: 2, val_per_class: 1, workers: 0}",
        "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.mlp_dim=64", "model.patch_size=8",
        "model.num_tokens=4"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("vivit_tl-*.whl")
    return path


@pytest.fixture(scope="module")
def user_env(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(python of a fresh venv with the wheel installed, environment without any checkout path)."""
    home = tmp_path_factory.mktemp("user")
    env_dir = home / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed", "-q",
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}", HOME=str(home), OMP_NUM_THREADS="1",
               VIVIT_TL_DEBUG="")
    return python, env


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_carries_the_configs_and_the_command(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "vivit_tl/configs/demo.yaml" in names and "vivit_tl/configs/kinetics400_vivit_b16x2_tl.yaml" in names
    assert "vivit_tl/viz/viewer.html" in names  # the attention viewer's page template
    assert not any(n.startswith(("tests/", "tools/", "configs/", "benchmarks/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "vivit-tl = vivit_tl.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_trains_predicts_visualizes_and_launches(user_env, tmp_path):
    python, env = user_env
    work = tmp_path / "empty"
    work.mkdir()
    where = run([str(python), "-c", "import vivit_tl; print(vivit_tl.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]), where  # from the wheel, not the checkout
    assert not Path(where).is_relative_to(REPO)

    listed = run(["vivit-tl", "configs"], work, env).stdout
    assert "kinetics400_vivit_b16x2_tl" in listed and "demo" in listed
    run(["vivit-tl", "configs", "--copy", "demo", "my.yaml"], work, env)
    assert "vivit_ti16x2" in (work / "my.yaml").read_text()

    cache = ["data.cache_dir=" + str(tmp_path / "cache")]
    run(["vivit-tl", "train", "--config", "my.yaml", *TINY, *cache, "run.name=wheel"], work, env)
    model = work / "runs" / "wheel" / "best"
    assert (model / "model.safetensors").is_file()
    video = sorted((tmp_path / "cache").rglob("*.mp4"))[0]

    predicted = json.loads(run(["vivit-tl", "predict", str(model), str(video), "--json"], work, env).stdout)
    assert predicted[0]["file"] == str(video) and len(predicted[0]["top"]) == 5
    run(["vivit-tl", "visualize", str(model), str(video), "--out", "maps", "--no-animation"], work, env)
    assert list((work / "maps").glob("*_layer0.png"))

    launch = [str(python), "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vivit_tl", "train"]
    run([*launch, *TINY, *cache, "run.name=launched"], work, env)
    assert (work / "runs" / "launched" / "best" / "model.safetensors").is_file()

    flops = json.loads(run(["vivit-tl", "flops", "--model", "vivit_b16x2", "--json"], work, env).stdout)
    assert flops["model"] == "vivit_b16x2" and flops["gflops"] > 100
