"""vivit_tl.system: the CPUs a process may use, containers' CPU quotas included."""

from __future__ import annotations

import os

import pytest

from vivit_tl import system


@pytest.mark.parametrize("text, cpus", [
    ("max 100000\n", None),  # no quota
    ("200000 100000\n", 2),  # docker run --cpus 2
    ("150000 100000\n", 2),  # --cpus 1.5: rounded up
    ("50000 100000\n", 1),
    ("garbage\n", None),
    ("", None),
])
def test_cgroup_cpu_limit_reads_the_quota(tmp_path, text, cpus):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert system.cgroup_cpu_limit(path) == cpus


def test_usable_cpus_is_the_affinity_capped_by_the_quota(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(system, "CGROUP_CPU_MAX", tmp_path / "missing")  # no cgroup v2 here
    assert system.usable_cpus() == 16
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(system, "CGROUP_CPU_MAX", quota)
    quota.write_text("400000 100000\n")
    assert system.usable_cpus() == 4
    quota.write_text("6400000 100000\n")  # a quota above the affinity mask does not add CPUs
    assert system.usable_cpus() == 16
