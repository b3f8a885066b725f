"""Multi-view evaluation that counts every sample exactly once on any number of processes.

The evaluation dataset is map-style with one item per view (``item i`` = view ``i % V`` of
video ``i // V``). Each process runs its shard; ``accelerator.gather_for_metrics`` collects
``(logits, label, video_index)`` and drops the padding accelerate adds to the last batches, so
every view is seen once. The **logits** of a video's views are averaged (the ViViT protocol,
SPEC §2) before top-1/top-5. Views with label -1 (unreadable file) are left out; a video with no
readable view is counted in ``num_unreadable`` and excluded from the metrics. Besides top-1 and top-5 the
summary has the mean class accuracy (:func:`mean_class_accuracy`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vivit_tl.checkpoint import atomic_write_text
from vivit_tl.errors import UserError


@dataclass
class EvalResult:
    """Per-video results of an evaluation (identical on every process)."""

    logits: torch.Tensor  # [N, C] float64, mean over the readable views
    labels: torch.Tensor  # [N] int64, -1 = unreadable
    views: torch.Tensor  # [N] int64, readable views counted
    items: int  # dataset items (views) seen, each exactly once
    classes: list[str]
    video_names: list[str] = field(default_factory=list)

    @property
    def valid(self) -> torch.Tensor:
        """[N] bool: videos with at least one readable view."""
        return (self.labels >= 0) & (self.views > 0)

    def summary(self) -> dict[str, Any]:
        """``loss``, ``top1``, ``top5``, ``mean_class_acc`` (fractions; None when nothing is readable) and counts."""
        valid = self.valid
        logits, labels = self.logits[valid], self.labels[valid]
        n = int(valid.sum())
        out: dict[str, Any] = {
            "num_videos": len(self.labels),
            "num_evaluated": n,
            "num_unreadable": len(self.labels) - n,
            "num_items": self.items,
        }
        if n == 0:
            return {**out, "loss": None, "top1": None, "top5": None, "mean_class_acc": None}
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices  # [n, k]
        out["loss"] = F.cross_entropy(logits, labels).item()
        out["top1"] = (topk[:, 0] == labels).double().mean().item()
        out["top5"] = (topk == labels[:, None]).any(dim=1).double().mean().item()
        out["mean_class_acc"] = mean_class_accuracy(self.confusion())
        return out

    def confusion(self) -> torch.Tensor:
        """[C, C] int64 counts, rows = true class, columns = predicted class."""
        valid = self.valid
        num_classes = self.logits.shape[1]
        pred = self.logits[valid].argmax(dim=1)
        flat = self.labels[valid] * num_classes + pred
        return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)  # [C, C]

    def per_class(self) -> dict[str, dict[str, Any]]:
        """``{class: {"top1": accuracy or None, "count": n}}``."""
        confusion = self.confusion()
        counts = confusion.sum(dim=1)
        return {
            name: {"top1": confusion[c, c].item() / counts[c].item() if counts[c] else None, "count": int(counts[c])}
            for c, name in enumerate(self.classes)
        }


def mean_class_accuracy(confusion: torch.Tensor) -> float:
    """mmaction2's ``mean_class_accuracy`` from a confusion matrix ``[C, C]`` (rows: true class).

    The mean over classes of the per-class recall (correct / samples of the class), over the classes
    that occur as a label or as a prediction: a class with no samples is skipped, unless it was
    predicted, when it counts 0 (as mmaction2, whose confusion matrix covers exactly those classes).
    """
    count, hits = confusion.sum(dim=1), confusion.diagonal()
    occurs = (count > 0) | (confusion.sum(dim=0) > 0)
    recall = hits.double() / count.clamp(min=1)  # 0 for a class without samples
    return recall[occurs].mean().item()


def accuracy_line(summary: dict[str, Any]) -> str:
    """``'top-1 93.12%, top-5 99.00%, mean class 92.50%'`` for a console line, from a summary or report."""
    return (f"top-1 {pct(summary.get('top1'))}, top-5 {pct(summary.get('top5'))}, "
            f"mean class {pct(summary.get('mean_class_acc'))}")


def shuffle_frames(clips: torch.Tensor, video_index: torch.Tensor, seed: int) -> torch.Tensor:
    """Permute the frames of each clip (``[B, 3, F, H, W]``) in a fixed, non-identity order.

    The permutation depends only on ``(seed, video_index)``: the control is the same on any
    number of processes. It destroys temporal order while keeping every frame's content.
    """
    num_frames = clips.shape[2]
    if num_frames < 2:
        raise UserError("shuffling frames needs clips of at least 2 frames (this data has 1)")
    out = torch.empty_like(clips)
    identity = torch.arange(num_frames)
    for b, vid in enumerate(video_index.tolist()):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + vid)
        perm = identity
        while torch.equal(perm, identity):
            perm = torch.randperm(num_frames, generator=generator)
        out[b] = clips[b][:, perm.to(clips.device)]  # [3, F, H, W]
    return out


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    accelerator: Accelerator,
    *,
    num_views: int,
    classes: list[str],
    shuffle_frames_seed: int | None = None,
    desc: str = "eval",
) -> EvalResult:
    """Run ``model`` over a prepared evaluation loader; aggregate the views of each video.

    Args:
        model: the (prepared) model; put in eval mode here.
        loader: a loader prepared by ``accelerator`` over a map-style eval dataset.
        num_views: views per video (``len(dataset) == num_videos * num_views``).
        classes: class names (index = label).
        shuffle_frames_seed: if set, frames of every clip are permuted (:func:`shuffle_frames`).
        desc: progress-bar label.
    """
    dataset = loader.dataset
    num_videos = len(dataset) // num_views
    num_classes = len(classes)
    sums = torch.zeros(num_videos, num_classes, dtype=torch.float64)
    views = torch.zeros(num_videos, dtype=torch.int64)
    labels = torch.full((num_videos,), -1, dtype=torch.int64)
    items = 0
    was_training = model.training
    model.eval()
    # position=0: during training the bar takes the training bar's line (which redraws at its next step); a
    # second line would be left with a cursor-up escape that log files show glued to the next printed line.
    bar = tqdm(loader, desc=desc, leave=False, position=0, disable=not accelerator.is_main_process)
    for clips, label, video_index in bar:
        if shuffle_frames_seed is not None:
            clips = shuffle_frames(clips, video_index, shuffle_frames_seed)
        logits = model(clips).float()
        logits, label, video_index = accelerator.gather_for_metrics((logits, label, video_index))
        logits, label, video_index = logits.cpu().double(), label.cpu(), video_index.cpu()
        items += len(label)
        ok = label >= 0
        sums.index_add_(0, video_index[ok], logits[ok])
        views.index_add_(0, video_index[ok], torch.ones_like(video_index[ok]))
        labels[video_index[ok]] = label[ok]
    model.train(was_training)
    if items != len(dataset):
        raise RuntimeError(f"evaluation saw {items} items, dataset has {len(dataset)}")
    logits = sums / views.clamp(min=1)[:, None]  # [N, C]
    return EvalResult(logits, labels, views, items, list(classes), list(getattr(dataset, "video_names", [])))


def pct(value: float | None) -> str:
    """``0.9312`` -> ``'93.12%'``; None -> ``'n/a'``."""
    return "n/a" if value is None else f"{100 * value:.2f}%"


def write_report(result: EvalResult, out_dir: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report.json``, ``confusion_matrix.csv``/``.png`` and ``predictions.csv`` into ``out_dir``.

    Returns the report dict (summary, per-class accuracy, unreadable videos, ``extra``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unreadable = [
        result.video_names[i] if i < len(result.video_names) else str(i)
        for i in torch.nonzero(~result.valid).flatten().tolist()
    ]
    report = {**(extra or {}), **result.summary(), "per_class": result.per_class(), "unreadable": unreadable}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    confusion = result.confusion()
    lines = [["true \\ predicted", *result.classes]]
    lines += [[name, *map(str, confusion[c].tolist())] for c, name in enumerate(result.classes)]
    with open(out_dir / "confusion_matrix.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(lines)
    plot_confusion(confusion, result.classes, out_dir / "confusion_matrix.png")
    write_predictions(result, out_dir / "predictions.csv")
    return report


def write_predictions(result: EvalResult, path: Path) -> None:
    """One row per video: name, true label, predicted label, its probability, readable views."""
    probs = result.logits.softmax(dim=1)  # [N, C]
    confidence, predicted = probs.max(dim=1)
    valid = result.valid.tolist()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "predicted", "probability", "views"])
        for i, ok in enumerate(valid):
            name = result.video_names[i] if i < len(result.video_names) else str(i)
            if ok:
                row = [name, result.classes[result.labels[i]], result.classes[predicted[i]], f"{confidence[i]:.4f}"]
            else:
                row = [name, "", "", ""]
            writer.writerow([*row, int(result.views[i])])


def plot_confusion(confusion: torch.Tensor, classes: list[str], path: Path) -> None:
    """Row-normalised confusion matrix as a PNG (class names shown up to 40 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = confusion.double()
    rows = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    size = min(4 + 0.35 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
