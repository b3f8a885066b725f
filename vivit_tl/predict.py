"""Run a saved model on files: multi-view class probabilities and the top-k labels.

    from vivit_tl.predict import Predictor
    predictor = Predictor.load("runs/demo/best", device="auto")
    result = predictor.predict_file("clip.mp4")   # {"file", "views", "top": [{"label", "prob"}, ...]}
    for result in predictor.predict_files(paths):  # batches of views across files, reading ahead
        ...                                        # ... or {"file", "error"} for a file that cannot be read
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vivit_tl.checkpoint import load_model_file
from vivit_tl.data import DataConfig, read_video_views
from vivit_tl.device import autocast, autocast_dtype, resolve_device

# what reading one file may raise for a bad file (decord's DECORDError is a RuntimeError)
FILE_ERRORS = (ValueError, OSError, RuntimeError)


class FileViews(Dataset):
    """The evaluation views of each file, or the reason it cannot be read: ``(path, views, error)``.

    ``views`` is ``[V, 3, F, H, W]`` (None on error), ``error`` a one-line message starting with the path
    (None when the file was read). A DataLoader over it reads the next files while the model runs.
    """

    def __init__(self, paths: list[str], data_config: DataConfig) -> None:
        self.paths, self.data_config = list(paths), data_config

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | None, str | None]:
        path = self.paths[index]
        try:
            return path, read_video_views(path, self.data_config), None
        except FILE_ERRORS as exc:
            return path, None, str(exc) if str(exc).startswith(path) else f"{path}: {exc}"


@dataclass
class Predictor:
    """A model in eval mode on its device, with what it needs to read files the way it was trained.

    ``dtype`` is the autocast dtype (None: float32); logits and probabilities come back float32 on the CPU.
    """

    model: nn.Module
    classes: list[str]
    data_config: DataConfig
    info: dict[str, Any]
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu", dtype: str = "float32") -> Predictor:
        """Load a model folder, its model file, a run directory or ``hf:<repo id>`` (see ``load_model_file``)
        onto ``device`` (``auto``, ``cpu``, ``cuda[:N]``), to run in ``dtype`` (see :mod:`vivit_tl.device`)."""
        torch_device = resolve_device(device)
        amp_dtype = autocast_dtype(dtype, torch_device)
        model, info = load_model_file(checkpoint)
        return cls(model.to(torch_device), list(info["classes"]), DataConfig.from_dict(info["data_config"]), info,
                   torch_device, amp_dtype)

    def read(self, path: str | Path, return_frames: bool = False):
        """The evaluation views of one file, ``[V, 3, F, H, W]`` (and the uint8 frames ``[V, F, H, W, 3]``)."""
        return read_video_views(path, self.data_config, return_frames=return_frames)

    @torch.inference_mode()
    def forward(self, views: torch.Tensor, **kwargs: Any) -> Any:
        """``model(views, **kwargs)`` on the predictor's device and in its dtype (outputs stay there)."""
        with autocast(self.device, self.dtype):
            return self.model(views.to(self.device, non_blocking=True), **kwargs)

    def view_logits(self, views: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Logits ``[V, K]`` (float32, CPU) of views ``[V, 3, F, H, W]``, run ``batch_size`` views at a time."""
        return torch.cat([self.forward(chunk).float().cpu() for chunk in views.split(batch_size)])

    def probabilities(self, views: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Class probabilities ``[K]`` of one file: softmax of the view-averaged logits.

        Averaging logits over the views (then one softmax) is the multi-view protocol of the ViViT
        evaluation (SPEC §2), so the top-1 here is the evaluator's prediction.
        """
        return self.view_logits(views, batch_size).mean(dim=0).softmax(dim=-1)

    def top_k(self, probs: torch.Tensor, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` most probable labels (fewer when there are fewer classes), most probable first."""
        values, indices = probs.topk(min(k, len(probs)))
        return [{"label": self.classes[i], "prob": round(float(p), 6)} for p, i in zip(values, indices.tolist())]

    def predict_file(self, path: str | Path, k: int = 5, batch_size: int = 8) -> dict[str, Any]:
        """Top-k prediction for one file: ``{"file", "views", "top": [{"label", "prob"}, ...]}``."""
        views = self.read(path)
        return {"file": str(path), "views": len(views), "top": self.top_k(self.probabilities(views, batch_size), k)}

    def stream_probabilities(self, items: Iterable[tuple[Hashable, torch.Tensor]], batch_size: int = 8
                             ) -> Iterator[tuple[Hashable, torch.Tensor]]:
        """``(key, probs [K])`` for each ``(key, views [V, 3, F, H, W])`` item, in order.

        Views of consecutive items share forward passes of ``batch_size`` views (the last pass may be
        smaller); an item's probabilities come out as soon as all its views have been through the model.
        """
        waiting: deque[tuple[list, torch.Tensor]] = deque()  # views not run yet, with their item's logits list
        done: deque[tuple[Hashable, list, int]] = deque()  # (key, logits chunks, number of views) in order
        queued = 0

        def run_batch() -> None:
            nonlocal queued
            parts, room = [], batch_size
            while waiting and room:
                chunks, views = waiting[0]
                part = views[:room]
                parts.append((chunks, part))
                room -= len(part)
                if len(part) == len(views):
                    waiting.popleft()
                else:
                    waiting[0] = (chunks, views[len(part):])
            logits = self.view_logits(torch.cat([part for _, part in parts]), batch_size)  # [B, K]
            for (chunks, part), chunk in zip(parts, logits.split([len(part) for _, part in parts])):
                chunks.append(chunk)
            queued -= len(logits)

        def finished() -> Iterator[tuple[Hashable, torch.Tensor]]:
            while done and sum(len(c) for c in done[0][1]) == done[0][2]:
                key, chunks, _ = done.popleft()
                yield key, torch.cat(chunks).mean(dim=0).softmax(dim=-1)  # [V, K] -> [K]

        for key, views in items:
            chunks: list[torch.Tensor] = []
            done.append((key, chunks, len(views)))
            waiting.append((chunks, views))
            queued += len(views)
            while queued >= batch_size:
                run_batch()
            yield from finished()
        while waiting:
            run_batch()
        yield from finished()

    def predict_files(self, paths: Iterable[str | Path], k: int = 5, batch_size: int = 8, workers: int = 2
                      ) -> Iterator[dict[str, Any]]:
        """Top-k predictions of files, in order: ``{"file", "views", "top"}`` or ``{"file", "error"}``.

        ``workers`` processes read the next files while the model runs (0: read in this process); views
        go through the model ``batch_size`` at a time across files. A file that cannot be read gives an
        ``error`` (a one-line message starting with its path) and does not stop the others.
        """
        paths = [str(p) for p in paths]
        loader = DataLoader(FileViews(paths, self.data_config), batch_size=None, num_workers=min(workers, len(paths)),
                            pin_memory=self.device.type == "cuda")
        errors: dict[int, str] = {}
        sizes: dict[int, int] = {}

        def readable() -> Iterator[tuple[int, torch.Tensor]]:
            for index, (_, views, error) in enumerate(loader):
                if error is not None:
                    errors[index] = error
                else:
                    sizes[index] = len(views)
                    yield index, views

        next_index = 0
        for index, probs in self.stream_probabilities(readable(), batch_size):
            for failed in range(next_index, index):  # the unreadable files before this one, in order
                yield {"file": paths[failed], "error": errors[failed]}
            yield {"file": paths[index], "views": sizes[index], "top": self.top_k(probs, k)}
            next_index = index + 1
        for failed in range(next_index, len(paths)):
            yield {"file": paths[failed], "error": errors[failed]}
