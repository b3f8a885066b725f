"""vivit_tl.system: the CPUs a process may use, containers' CPU quotas included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vivit_tl import system


@pytest.fixture
def cgroups(monkeypatch, tmp_path) -> Path:
    """An empty cgroup v2 tree in tmp_path/cgroup; this process's cgroup is the root until a test says otherwise."""
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(system, "CGROUP_ROOT", root)
    monkeypatch.setattr(system, "PROC_CGROUP", tmp_path / "proc_self_cgroup")  # absent: the root
    return root


@pytest.mark.parametrize("text, cpus", [
    ("max 100000\n", None),  # no quota
    ("200000 100000\n", 2),  # docker run --cpus 2
    ("150000 100000\n", 2),  # --cpus 1.5: rounded up
    ("50000 100000\n", 1),
    ("garbage\n", None),
    ("", None),
])
def test_cpu_max_formats(cgroups, text, cpus):
    (cgroups / "cpu.max").write_text(text)
    assert system.cgroup_cpu_limit() == cpus


def test_the_smallest_quota_of_the_cgroup_and_its_ancestors_counts(cgroups, tmp_path):
    service = cgroups / "system.slice" / "train.service"  # e.g. systemd's CPUQuota, or a host-cgroupns container
    service.mkdir(parents=True)
    system.PROC_CGROUP.write_text("0::/system.slice/train.service\n")
    assert system.cgroup_cpu_limit() is None
    (service / "cpu.max").write_text("400000 100000\n")
    assert system.cgroup_cpu_limit() == 4
    (cgroups / "system.slice" / "cpu.max").write_text("300000 100000\n")
    assert system.cgroup_cpu_limit() == 3


def test_cgroup_v1_quota(cgroups):
    """cgroup v1 (cpu.cfs_quota_us / cpu.cfs_period_us under the cpu controller), e.g. older Docker hosts."""
    container = cgroups / "cpu" / "docker" / "abc"
    container.mkdir(parents=True)
    system.PROC_CGROUP.write_text("12:pids:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    (container / "cpu.cfs_quota_us").write_text("-1\n")
    (container / "cpu.cfs_period_us").write_text("100000\n")
    assert system.cgroup_cpu_limit() is None
    (container / "cpu.cfs_quota_us").write_text("250000\n")
    assert system.cgroup_cpu_limit() == 3
    (cgroups / "cpu.max").write_text("200000 100000\n")  # a v2 quota as well: the smaller counts
    assert system.cgroup_cpu_limit() == 2


def test_usable_cpus_is_the_affinity_capped_by_the_quota(monkeypatch, cgroups):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert system.usable_cpus() == 16
    (cgroups / "cpu.max").write_text("400000 100000\n")
    assert system.usable_cpus() == 4
    (cgroups / "cpu.max").write_text("6400000 100000\n")  # a quota above the affinity mask does not add CPUs
    assert system.usable_cpus() == 16
