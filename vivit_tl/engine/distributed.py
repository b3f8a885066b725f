"""The accelerate process state, set up so that multi-process runs also form a group on CPU-only machines.

accelerate joins the processes started by ``accelerate launch --multi_gpu --num_processes N`` into
one distributed group only on a GPU-like device, or on the CPU when it is told to run there: on a
CPU-only machine every process would otherwise run alone (N independent copies of the whole job).
Asking for the CPU when no accelerator is present gives the gloo group instead.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import is_mlu_available, is_npu_available, is_xpu_available


def no_accelerator() -> bool:
    """True when neither CUDA nor another device accelerate drives (XPU, NPU, MLU, MPS) is present."""
    return not (torch.cuda.is_available() or is_xpu_available() or is_npu_available() or is_mlu_available()
                or torch.backends.mps.is_available())


def process_state() -> PartialState:
    """The shared process state (rank, world size); call before anything else touches accelerate."""
    return PartialState(cpu=no_accelerator())


def make_accelerator(**kwargs: Any) -> Accelerator:
    """An ``Accelerator`` on the process group of :func:`process_state`."""
    return Accelerator(cpu=no_accelerator(), **kwargs)
