"""The accelerate process state, set up so that multi-process runs also form a group on CPU-only machines.

accelerate joins the processes started by ``accelerate launch --multi_gpu --num_processes N`` into
one distributed group only on a GPU-like device, or on the CPU when it is told to run there: on a
CPU-only machine every process would otherwise run alone (N independent copies of the whole job).
Asking for the CPU when no accelerator is present gives the gloo group instead.
"""

from __future__ import annotations

import os
from typing import Any

import psutil
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import is_mlu_available, is_npu_available, is_xpu_available

from vivit_tl.errors import UserError
from vivit_tl.system import usable_cpus


def no_accelerator() -> bool:
    """True when neither CUDA nor another device accelerate drives (XPU, NPU, MLU, MPS) is present."""
    return not (torch.cuda.is_available() or is_xpu_available() or is_npu_available() or is_mlu_available()
                or torch.backends.mps.is_available())


def process_state() -> PartialState:
    """The shared process state (rank, world size); call before anything else touches accelerate."""
    return PartialState(cpu=no_accelerator())


def make_accelerator(cpu: bool = False, **kwargs: Any) -> Accelerator:
    """An ``Accelerator`` on the process group of :func:`process_state` (on the CPU also when ``cpu``)."""
    return Accelerator(cpu=cpu or no_accelerator(), **kwargs)


def set_cpu_threads(requested: int | None, state: PartialState) -> int:
    """Set torch's intra-op threads for a run on the CPU and return them.

    ``accelerate launch`` without ``--cpu`` starts every process with ``OMP_NUM_THREADS=1``, even on
    a CPU-only machine (a CIFAR-10 ViT step on 2 cores: 1.18 s with 1 thread, 0.68 s with 2).
    ``requested=None`` uses this machine's physical cores (those this process may run on) divided
    by the processes on it, as ``accelerate launch --cpu`` does. On a machine with an accelerator
    torch's setting is left alone (and ``requested`` ignored).
    """
    if requested is not None and requested < 1:
        raise UserError(f"run.cpu_threads must be >= 1 or null (automatic), got {requested}")
    if not no_accelerator():
        return torch.get_num_threads()
    if requested is None:
        usable = usable_cpus()
        cores = min(psutil.cpu_count(logical=False) or usable, usable)
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        requested = max(1, cores // max(1, local_processes))
    torch.set_num_threads(requested)
    return requested
