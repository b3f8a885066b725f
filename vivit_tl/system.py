"""Facts about the machine shared by the data and engine code."""

from __future__ import annotations

import math
import os
from pathlib import Path

# cgroup v2 CPU quota of this process's container ("200000 100000" = 2 CPUs; "max 100000" = none):
# set by `docker run --cpus`, Kubernetes CPU limits, systemd's CPUQuota.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(path: Path | None = None) -> int | None:
    """CPUs allowed by the cgroup v2 quota, rounded up; None without a quota (or without cgroup v2)."""
    try:
        quota, period = (path or CGROUP_CPU_MAX).read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (else all CPUs), capped by a container's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return cpus if limit is None else min(cpus, limit)
