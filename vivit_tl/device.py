"""Where inference runs: ``--device auto|cpu|cuda`` and ``--dtype float32|bfloat16|float16``.

``auto`` is the first CUDA GPU when there is one, else the CPU. ``bfloat16`` / ``float16`` run the model
under ``torch.autocast`` (the weights stay float32; matmuls and convolutions run in the low precision,
softmax and norms in float32). On the CPU, ``bfloat16`` autocast is allowed (torch supports it; it is
faster only on CPUs with bf16 instructions) and ``float16`` is refused: CPU float16 kernels are slow or
missing and gain nothing.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import ContextManager

import torch

from vivit_tl.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
ACCELERATE_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}  # accelerate's mixed_precision


def resolve_device(name: str) -> torch.device:
    """The torch device for ``auto`` / ``cpu`` / ``cuda`` (or ``cuda:N``); a clear error without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in DEVICES[1:]:
        raise UserError(f"--device must be one of {list(DEVICES)} (or cuda:N), got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                        "use --device cpu or auto")
    return torch.device(name)


def autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--dtype`` on ``device`` (None: plain float32)."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if dtype == "float16" and device.type == "cpu":
        raise UserError("--dtype float16 needs a CUDA device; on the CPU use float32 or bfloat16")
    return DTYPES[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast`` on ``device`` in ``dtype``, or nothing for float32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--device`` and ``--dtype`` options shared by predict, visualize and eval."""
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU when there is one), cpu or cuda[:N]"
                        " (default auto)")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES),
                        help="float32, or bfloat16/float16 autocast (float16 on CUDA only) (default float32)")
