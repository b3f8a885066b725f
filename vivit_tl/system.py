"""Facts about the machine shared by the data and engine code."""

from __future__ import annotations

import math
import os
from pathlib import Path

# Container CPU quotas (`docker run --cpus`, Kubernetes CPU limits, systemd's CPUQuota). This process's
# cgroups are listed in /proc/self/cgroup: cgroup v2 as "0::<path>", with "<quota> <period>" (or "max ...")
# in CGROUP_ROOT/<path>/cpu.max; cgroup v1 as "<n>:cpu,cpuacct:<path>", with cpu.cfs_quota_us (-1: none) and
# cpu.cfs_period_us in CGROUP_ROOT/cpu/<path>. A quota of any ancestor cgroup applies too.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _quota(directory: Path, v1: bool) -> int | None:
    """CPUs allowed by the quota files of one cgroup directory, rounded up; None without a quota or files."""
    try:
        if v1:
            quota, period = ((directory / name).read_text() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        else:
            quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota.strip() in ("max", "-1") else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def _smallest_quota(top: Path, own: str, v1: bool) -> int | None:
    """The smallest quota of cgroup ``top/own`` and its ancestors up to ``top``."""
    directory, limits = top / own.strip().lstrip("/"), []
    while True:
        limit = _quota(directory, v1)
        if limit is not None:
            limits.append(limit)
        if directory == top or top not in directory.parents:
            return min(limits, default=None)
        directory = directory.parent


def cgroup_cpu_limit() -> int | None:
    """CPUs allowed by this process's cgroup quotas (v2 and v1), the smallest, rounded up; None without one."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        lines = []
    entries = [line.split(":", 2) for line in lines if line.count(":") >= 2]  # [hierarchy, controllers, path]
    v2 = next((path for _, controllers, path in entries if controllers == ""), "/")
    limits = [_smallest_quota(CGROUP_ROOT, v2, v1=False)]
    for _, controllers, path in entries:
        if "cpu" in controllers.split(","):
            limits.append(_smallest_quota(CGROUP_ROOT / "cpu", path, v1=True))
    return min((limit for limit in limits if limit is not None), default=None)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (else all CPUs), capped by a container's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return cpus if limit is None else min(cpus, limit)
