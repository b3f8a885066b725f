"""The decode watchdog: a decode that hangs holding the GIL is stopped, its file skipped and counted.

The hanging decoder (``video_utils.hanging_read_frames``) replaces ``read_frames`` in the dataset
module of a child Python (so a failure of the watchdog cannot hang pytest: the child has its own
time limit). It sleeps in C through ``ctypes.PyDLL``, which keeps the GIL, so no thread of the
hung process could have stopped it.
"""

import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from vivit_tl.data.decoding import DECODE_ERROR, MISSING, TIMED_OUT, ReadError, read_frames
from vivit_tl.data.sampling import train_clip_indices
from vivit_tl.data.watchdog import call_with_timeout, supported

from video_utils import kill_this_process, random_frames, write_lossless

pytestmark = pytest.mark.skipif(not supported(), reason="the decode watchdog needs os.fork")
TESTS = Path(__file__).resolve().parent

SCRIPT = r"""
import json, sys
import torch
from torch.utils.data import DataLoader
import vivit_tl.data.datasets as datasets
from vivit_tl.data import DataConfig, build_dataset
from video_utils import hanging_read_frames

datasets.read_frames = hanging_read_frames  # in this process only; the forked workers and helpers inherit it
root, workers = sys.argv[1], int(sys.argv[2])
cfg = DataConfig(kind="video_folder", root=root, num_frames=4, frame_stride=2, image_size=32, short_side=32,
                 scale_jitter=[1.0, 1.0], mean=None, std=None, decode_timeout_s=1.0, max_tries=3)
train = build_dataset(cfg, "train", train=True)
epochs = [[int(i) for _, _, batch in DataLoader(train, batch_size=2, num_workers=workers) for i in batch]
          for _ in range(2)]
val = build_dataset(cfg, "train", train=False)
labels = [int(y) for _, ys, _ in DataLoader(val, batch_size=2, num_workers=workers) for y in ys]
print(json.dumps({"names": train.video_names, "epochs": epochs, "skipped": train.num_skipped,
                  "bad": train.bad_files(), "val_labels": labels, "val_bad": val.bad_files()}))
"""


def test_pydll_sleep_holds_the_gil():
    """What makes the hanging decoder a fair test: while it sleeps, no other thread of its process runs."""
    import ctypes

    ticks, stop = [0], threading.Event()

    def tick():
        while not stop.is_set():
            ticks[0] += 1
            stop.wait(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    stop.wait(0.05)
    before = ticks[0]
    ctypes.PyDLL(None).usleep(300_000)
    during = ticks[0] - before
    stop.set()
    thread.join()
    assert before > 0 and during <= 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_decode_hung_holding_the_gil_is_skipped_and_training_goes_on(tmp_path, workers):
    for i in range(3):
        write_lossless(tmp_path / "train" / "a" / f"v{i}.mp4", random_frames(10, seed=i))
    write_lossless(tmp_path / "train" / "a" / "hang.mp4", random_frames(10, seed=9))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(workers)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    hang = out["names"].index("train/a/hang.mp4")
    for seen in out["epochs"]:  # every item served, by the good files only
        assert len(seen) == 4 and hang not in seen and set(seen) == {0, 1, 2, 3} - {hang}
    assert out["skipped"] == 2  # once per epoch, like any bad file
    assert out["bad"] == [["train/a/hang.mp4", TIMED_OUT]]
    assert out["val_labels"].count(-1) == 1 and out["val_bad"] == [["train/a/hang.mp4", TIMED_OUT]]
    assert done.stderr.count("hang.mp4: decode timed out") == 2  # named once per dataset


def test_watchdog_returns_exact_frames_errors_and_survives_a_crash(tmp_path):
    frames = random_frames(12)
    path = write_lossless(tmp_path / "v.mp4", frames)
    pick = functools.partial(train_clip_indices, num_frames=4, stride=2, u=0.5)
    got, idx = call_with_timeout(30, path, read_frames, path, pick, num_threads=1)
    np.testing.assert_array_equal(got, frames[idx])
    with pytest.raises(ReadError) as info:  # an error in the helper comes back whole
        call_with_timeout(30, tmp_path / "nope.mp4", read_frames, tmp_path / "nope.mp4", pick)
    assert (info.value.reason, info.value.path) == (MISSING, str(tmp_path / "nope.mp4"))
    with pytest.raises(ReadError) as info:  # the helper dies (as in a decoder crash)
        call_with_timeout(30, "crash.mp4", kill_this_process)
    assert info.value.reason == DECODE_ERROR and "died (signal SIGKILL)" in str(info.value)
    got, idx = call_with_timeout(30, path, read_frames, path, pick, num_threads=1)  # a fresh helper
    np.testing.assert_array_equal(got, frames[idx])
