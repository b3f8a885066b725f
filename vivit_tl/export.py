"""Exporting models: `torch.export` programs and ONNX files of the inference model, and vivit-tl model files
from any source.

The command is ``vivit-tl export`` (:mod:`vivit_tl.cli.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vivit_tl.errors import UserError


def load_any(spec: str, tubelet_init: str = "central_frame") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model in eval mode and its description (``model_config``, ``classes``, ``data_config``) from a
    vivit-tl model file, or from a pretrained spec (then ``classes``/``data_config`` may be None)."""
    from vivit_tl.checkpoint import TRAIN_STATE_NAME, load_model_file, read_model_info, resolve_model_file
    from vivit_tl.pretrained import pretrained_model

    try:
        read_model_info(resolve_model_file(spec))  # a vivit-tl model file: rebuilt with its description
        return load_model_file(spec)
    except (FileNotFoundError, UserError):
        path = Path(spec)
        if (path / TRAIN_STATE_NAME).is_file() or (path.parent / TRAIN_STATE_NAME).is_file():
            raise  # a training checkpoint: the error says where the run's model file is
    model, report = pretrained_model(spec, tubelet_init=tubelet_init)
    print(report.summary())
    info = {"model_config": model.config.to_dict(), "classes": report.classes, "data_config": None,
            "preprocessing": report.preprocessing, "source": spec}
    return model.eval(), info


def export_program(model: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool = True
                   ) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model(x) -> logits`` at the example's frames and size (batch dynamic)."""
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    return torch.export.export(model, (example,), dynamic_shapes=shapes)


def max_logit_difference(program: torch.export.ExportedProgram, model: torch.nn.Module, x: torch.Tensor) -> float:
    """Max absolute difference between the exported program's and the eager model's logits on ``x``."""
    with torch.inference_mode():
        return (program.module()(x) - model(x)).abs().max().item()


ONNX_EXTRA = "pip install 'vivit-tl[onnx]'"
ONNX_INPUT, ONNX_OUTPUT = "clip", "logits"


def export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path, description: dict[str, Any],
                dynamic_batch: bool = True) -> Path:
    """Write ``model(clip) -> logits`` as an ONNX file with ``torch.onnx.export(..., dynamo=True)``.

    The input is named ``clip`` ``[B, 3, F, R, R]`` at the example's frames and size (B dynamic unless
    ``dynamic_batch`` is False), the output ``logits``; ``description`` is stored as JSON in the model's
    metadata under ``model.json``.
    """
    import importlib
    import json

    try:
        importlib.import_module("onnxscript")  # torch.onnx's dynamo exporter needs onnx and onnxscript
    except ImportError:
        raise UserError(f"ONNX export needs onnx and onnxscript: {ONNX_EXTRA}") from None
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=shapes, input_names=[ONNX_INPUT],
                                output_names=[ONNX_OUTPUT], verbose=False)
    program.model.metadata_props["model.json"] = json.dumps(description)
    out.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(out))
    return out


def onnx_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    """Logits of the ONNX file at ``path`` on ``x`` with onnxruntime on the CPU."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"checking the ONNX file needs onnxruntime: {ONNX_EXTRA}") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0])


def onnx_max_logit_difference(path: Path, model: torch.nn.Module, x: torch.Tensor) -> float:
    """Max absolute difference between onnxruntime's and the eager model's logits on ``x``."""
    with torch.inference_mode():
        return (onnx_logits(path, x) - model(x)).abs().max().item()


def model_file_data_config(cfg: Any, preprocessing: dict[str, Any] | None) -> dict[str, Any]:
    """Data config for a model file built from a pretrained spec: the Kinetics preset for videos (short side
    256 for crop 224, scaled with the crop), an image folder for images, the source's mean/std."""
    from vivit_tl.data import DataConfig

    norm = {k: list(v) for k, v in (preprocessing or {}).items() if k in ("mean", "std")}
    short = round(cfg.image_size * 256 / 224)
    if cfg.num_frames > 1:
        data = DataConfig.from_dict({"preset": "kinetics", "kind": "video_folder", "num_frames": cfg.num_frames,
                                     "image_size": cfg.image_size, "short_side": short, **norm})
    else:
        data = DataConfig.from_dict({"kind": "image_folder", "num_frames": 1, "image_size": cfg.image_size,
                                     "short_side": short, **norm})
    return data.to_dict()


def write_model_file(model: torch.nn.Module, info: dict[str, Any], out: Path, classes_file: Path | None) -> Path:
    """Write the vivit-tl model file for ``model`` into folder ``out``."""
    from vivit_tl.checkpoint import save_model_file

    classes = info.get("classes")
    if classes_file is not None:
        if not classes_file.is_file():
            raise FileNotFoundError(f"--classes file not found: {classes_file}")
        classes = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    num_classes = model.config.num_classes
    if classes is None:
        classes = [f"class_{i}" for i in range(num_classes)]
    if len(classes) != num_classes:
        raise UserError(f"{len(classes)} class names for a model with {num_classes} classes")
    data = info.get("data_config") or model_file_data_config(model.config, info.get("preprocessing"))
    return save_model_file(out, model, classes=classes, data_config=data, step=info.get("step", 0),
                           epoch=info.get("epoch", 0), metrics=info.get("metrics"))
