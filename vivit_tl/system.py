"""Facts about the machine shared by the data and engine code."""

from __future__ import annotations

import math
import os
from pathlib import Path

# cgroup v2: this process's cgroup is the "0::<path>" line of /proc/self/cgroup, below CGROUP_ROOT; a cpu.max
# of "200000 100000" there (or in any cgroup above it) allows 2 CPUs, "max 100000" none. Set by
# `docker run --cpus`, Kubernetes CPU limits, systemd's CPUQuota.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _cpu_max(path: Path) -> int | None:
    """CPUs allowed by one cpu.max file, rounded up; None without a quota or file."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def cgroup_cpu_limit() -> int | None:
    """CPUs allowed by the cgroup v2 quotas of this process's cgroup and its ancestors (the smallest, rounded
    up); None without a quota or without cgroup v2. cgroup v1 quotas are not read."""
    try:
        own = next((line[3:] for line in PROC_CGROUP.read_text().splitlines() if line.startswith("0::")), "/")
    except OSError:
        own = "/"
    directory = CGROUP_ROOT / own.strip().lstrip("/")
    limits = []
    while True:
        limit = _cpu_max(directory / "cpu.max")
        if limit is not None:
            limits.append(limit)
        if directory == CGROUP_ROOT or CGROUP_ROOT not in directory.parents:
            break
        directory = directory.parent
    return min(limits, default=None)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (else all CPUs), capped by a container's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return cpus if limit is None else min(cpus, limit)
