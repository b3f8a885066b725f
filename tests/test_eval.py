"""Evaluation maths: view averaging, unreadable videos, top-k, per-class, confusion, the frame-shuffle control.

(Multi-process exactness of tools/eval.py is tested end to end in test_train.py.)
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from vivit_tl.engine.evaluation import EvalResult, evaluate, shuffle_frames, write_report
from vivit_tl.engine.loader import build_eval_loader
from vivit_tl.errors import UserError


class ViewDataset(Dataset):
    """``num_videos x num_views`` items ``(clip [3, 2, 1, 1] = one-hot class evidence, label, video)``."""

    def __init__(self, evidence: torch.Tensor, labels: list[int], num_views: int):
        self.evidence, self.labels, self.num_views = evidence, labels, num_views  # evidence [N, V, C]
        self.video_names = [f"v{i}.mp4" for i in range(len(labels))]

    def __len__(self):
        return len(self.labels) * self.num_views

    def __getitem__(self, item):
        video, view = divmod(item, self.num_views)
        clip = self.evidence[video, view].reshape(1, -1, 1, 1).expand(3, -1, 1, 1).clone()  # [3, C, 1, 1]
        return clip, self.labels[video], video


class ReadEvidence(torch.nn.Module):
    def forward(self, x):  # [B, 3, C, 1, 1] -> logits [B, C]
        return x[:, 0, :, 0, 0] * 1.0


def test_views_are_averaged_and_unreadable_videos_excluded():
    torch.manual_seed(0)
    num_videos, num_views, num_classes = 7, 3, 4
    evidence = torch.randn(num_videos, num_views, num_classes)
    labels = [0, 1, 2, 3, 0, -1, 2]  # video 5 cannot be read
    dataset = ViewDataset(evidence, labels, num_views)
    accelerator = Accelerator(cpu=True)
    loader = accelerator.prepare(build_eval_loader(dataset, batch_size=4, num_workers=0))  # 21 items: 4 ∤ 21
    result = evaluate(ReadEvidence(), loader, accelerator, num_views=num_views, classes=list("wxyz"))
    assert result.items == 21
    expected = evidence.double().mean(dim=1)  # [N, C] logits averaged over views
    valid = torch.tensor([lab >= 0 for lab in labels])
    assert torch.allclose(result.logits[valid], expected[valid])
    summary = result.summary()
    assert summary["num_videos"] == 7 and summary["num_evaluated"] == 6 and summary["num_unreadable"] == 1
    target = torch.tensor(labels)[valid]
    top1 = (expected[valid].argmax(1) == target).double().mean().item()
    top3 = (expected[valid].topk(3, 1).indices == target[:, None]).any(1).double().mean().item()
    assert summary["top1"] == pytest.approx(top1)
    assert summary["top5"] == pytest.approx(1.0)  # 4 classes: top-5 is top-4
    assert top3 <= 1.0
    confusion = result.confusion()
    assert confusion.sum() == 6 and confusion.trace().item() == round(top1 * 6)


def test_evaluation_bar_inside_the_training_bar_writes_no_cursor_up(capsys):
    """Validation runs while the training bar is open: its bar takes the training bar's line instead of a
    second one, so closing it writes no cursor-up escape, which a log file would show glued to the line the
    trainer prints next (``\x1b[Aepoch 0: val top-1 ...``)."""
    dataset = ViewDataset(torch.randn(3, 1, 4), [0, 1, 2], num_views=1)
    accelerator = Accelerator(cpu=True)
    loader = accelerator.prepare(build_eval_loader(dataset, batch_size=2, num_workers=0))
    train_bar = tqdm(total=4, desc="train", position=0)
    train_bar.update(1)
    evaluate(ReadEvidence(), loader, accelerator, num_views=1, classes=list("wxyz"), desc="val (epoch 0)")
    train_bar.update(1)
    train_bar.close()
    err = capsys.readouterr().err
    assert "val (epoch 0)" in err and "train" in err
    assert "\x1b[A" not in err


def test_hand_made_metrics_per_class_and_confusion():
    logits = torch.tensor([[5.0, 1, 0], [0, 5, 1], [5, 0, 1], [0, 1, 5], [1, 5, 0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 2, 1])
    result = EvalResult(logits, labels, torch.ones(5, dtype=torch.int64), 5, ["a", "b", "c"])
    summary = result.summary()
    assert summary["top1"] == pytest.approx(4 / 5)
    assert summary["top5"] == pytest.approx(1.0)
    per_class = result.per_class()
    assert per_class["a"] == {"top1": 1.0, "count": 1}
    assert per_class["b"]["top1"] == pytest.approx(2 / 3) and per_class["b"]["count"] == 3
    assert result.confusion().tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 1]]


def test_nothing_readable_gives_none_metrics():
    result = EvalResult(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([-1, -1]), torch.zeros(2, dtype=torch.int64),
                        2, ["a", "b", "c"])
    assert result.summary()["top1"] is None and result.per_class()["a"] == {"top1": None, "count": 0}


def test_write_report_files(tmp_path):
    logits = torch.tensor([[2.0, 1], [0, 3], [3, 0]], dtype=torch.float64)
    result = EvalResult(logits, torch.tensor([0, 1, -1]), torch.tensor([1, 1, 0]), 3, ["cat", "dog"], ["x", "y", "z"])
    report = write_report(result, tmp_path / "out", {"split": "val"})
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk == report
    assert on_disk["split"] == "val" and on_disk["top1"] == 1.0 and on_disk["unreadable"] == ["z"]
    rows = list(csv.reader(open(tmp_path / "out" / "confusion_matrix.csv")))
    assert rows == [["true \\ predicted", "cat", "dog"], ["cat", "1", "0"], ["dog", "0", "1"]]
    assert (tmp_path / "out" / "confusion_matrix.png").stat().st_size > 1000
    predictions = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    assert [(p["video"], p["label"], p["predicted"]) for p in predictions] == [
        ("x", "cat", "cat"), ("y", "dog", "dog"), ("z", "", "")]


def test_shuffle_frames_is_a_fixed_non_identity_permutation():
    clips = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8, 1, 1).expand(2, 3, 8, 2, 2).contiguous()
    video_index = torch.tensor([4, 9])
    out = shuffle_frames(clips, video_index, seed=0)
    assert torch.equal(out, shuffle_frames(clips, video_index, seed=0))  # deterministic
    for b in range(2):
        order = out[b, 0, :, 0, 0].long() - clips[b, 0, 0, 0, 0].long()
        assert sorted(order.tolist()) == list(range(8)) and order.tolist() != list(range(8))
    # the permutation depends on the video, not on its position in the batch
    alone = shuffle_frames(clips[1:], video_index[1:], seed=0)
    assert torch.equal(alone[0], out[1])
    with pytest.raises(UserError, match="at least 2 frames"):
        shuffle_frames(torch.zeros(1, 3, 1, 2, 2), torch.tensor([0]), seed=0)


def test_eval_cli_device_and_dtype(tmp_path, capsys):
    """vivit-tl eval --device cpu (forced CPU) and --dtype bfloat16 (CPU autocast) agree; float16 on the CPU is refused."""
    from accelerate.state import AcceleratorState

    from vivit_tl.data import dataset_root
    from vivit_tl.data.synthetic import CLASSES

    from viz_utils import load_tool, save_tiny_model, synthetic_config, synthetic_videos

    cfg = synthetic_config(tmp_path / "cache")
    synthetic_videos(cfg)
    model = save_tiny_model(tmp_path / "model", cfg, list(CLASSES))
    data = str(dataset_root(cfg))
    reports = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        AcceleratorState._reset_state(reset_partial_state=True)  # a new process would start with a fresh state
        assert load_tool("eval").main([str(model), data, "--device", "cpu", "--dtype", dtype, "--out", str(out)]) == 0
        reports[dtype] = json.loads((out / "report.json").read_text())
    assert reports["float32"]["num_evaluated"] == reports["bfloat16"]["num_evaluated"] == len(CLASSES)
    assert abs(reports["float32"]["loss"] - reports["bfloat16"]["loss"]) < 0.05  # bf16 rounding only
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(UserError, match="float16 needs a CUDA device"):
        load_tool("eval").main([str(model), data, "--device", "cpu", "--dtype", "float16"])
