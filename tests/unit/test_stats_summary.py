"""The pieces of /stats/summary and kubectl top that need no root: the rate rules of the ``Sampler`` (from the reading
before, else from the counter's start; never a sleep), cAdvisor's figures from v1 and v2 cgroup files, and the /proc
fallback for a pod without cgroups."""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath

import pytest

from minikubelet.api import summary
from minikubelet.api.metrics import MIN_WINDOW, NODE_KEY, RECENT, Reading, Sampler, born_at
from minikubelet.cgroups.detect import Mounts
from minikubelet.cgroups.stats import read_stats
from minikubelet.cgroups.tree import Cgroups
from minikubelet.manifests.manifest import pod_from_dict

KEY = ("uid", "main", 1, 1)


def test_a_first_rate_runs_from_the_counters_start() -> None:
    s = Sampler()
    now = time.monotonic()
    cores, window = s._rate(KEY, Reading(now, 2.0, 0), born=now - 10)
    assert cores == pytest.approx(0.2) and window == pytest.approx(10)


def test_a_later_rate_runs_from_the_reading_before_and_too_recent_ones_are_skipped() -> None:
    s = Sampler()
    t = time.monotonic() - 100
    s._rate(KEY, Reading(t, 10.0, 0), born=t - 10)
    cores, window = s._rate(KEY, Reading(t + 2, 11.0, 0), born=t - 10)
    assert (cores, window) == (pytest.approx(0.5), pytest.approx(2))
    # a reading MIN_WINDOW/2 after the last: measured from the one before it, which stays the window start
    cores, window = s._rate(KEY, Reading(t + 2 + MIN_WINDOW / 2, 11.05, 0), born=t - 10)
    assert window == pytest.approx(2 + MIN_WINDOW / 2) and cores == pytest.approx(1.05 / window)
    cores, window = s._rate(KEY, Reading(t + 3, 11.5, 0), born=t - 10)  # from the newest one old enough
    assert (cores, window) == (pytest.approx(0.5), pytest.approx(1 - MIN_WINDOW / 2))


def test_unknown_start_gives_no_rate_rather_than_a_guess() -> None:
    assert Sampler()._rate(KEY, Reading(time.monotonic(), 5.0, 0), born=None) == (0.0, 0.0)


def test_node_usage_never_sleeps_and_measures_since_boot() -> None:
    t0 = time.monotonic()
    cores, memory, window = Sampler().usage({NODE_KEY: (0, None)})[NODE_KEY]
    assert time.monotonic() - t0 < 0.1
    assert window > 1 and 0 < cores <= (os.cpu_count() or 1) and memory > 0


def test_an_old_reading_is_no_window_start_but_the_nodes_is() -> None:
    s = Sampler()
    now = time.monotonic()
    s._rate(KEY, Reading(now - RECENT - 10, 1.0, 0), born=None)
    s._rate(NODE_KEY, Reading(now - RECENT - 10, 100.0, 0), born=None)
    assert s._rate(KEY, Reading(now, 9.0, 0), born=now - 90) == (pytest.approx(0.1), pytest.approx(90))
    assert s._rate(NODE_KEY, Reading(now, 107.0, 0), born=now - 10**5)[1] == pytest.approx(RECENT + 10)
    s._series[KEY] = [Reading(now - RECENT - 1, 1.0, 0)]
    s.prune()
    assert KEY not in s._series and NODE_KEY in s._series


def write(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def test_read_stats_v1(tmp_path: Path) -> None:
    mem, cpu = tmp_path / "memory", tmp_path / "cpuacct"
    write(mem / "mk/kubepods/podx/main.0", {
        "memory.usage_in_bytes": "100000\n", "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.stat": "cache 5\nrss 7\ntotal_rss 70000\ntotal_inactive_file 30000\ntotal_pgfault 12\n"
                       "total_pgmajfault 3\n"})
    write(cpu / "mk/kubepods/podx/main.0", {"cpuacct.usage": "123456789\n"})
    tree = Cgroups(Mounts(v1={"memory": mem, "cpuacct": cpu}))
    s = read_stats(tree, PurePosixPath("/mk/kubepods/podx/main.0"))
    assert s is not None
    assert (s.cpu_ns, s.usage, s.working_set, s.rss, s.page_faults, s.major_page_faults, s.limit) == (
        123456789, 100000, 70000, 70000, 12, 3, None)
    assert read_stats(tree, PurePosixPath("/mk/kubepods/podx/gone.0")) is None


def test_read_stats_v2(tmp_path: Path) -> None:
    write(tmp_path / "mk/kubepods/podx", {
        "cpu.stat": "usage_usec 2500\nuser_usec 2000\n", "memory.current": "4096000\n", "memory.max": "8388608\n",
        "memory.stat": "anon 2000000\nfile 96000\ninactive_file 96000\npgfault 40\npgmajfault 1\n"})
    s = read_stats(Cgroups(Mounts(unified=tmp_path)), PurePosixPath("/mk/kubepods/podx"))
    assert s is not None
    assert (s.cpu_ns, s.usage, s.working_set, s.rss, s.page_faults, s.major_page_faults, s.limit) == (
        2_500_000, 4096000, 4000000, 2000000, 40, 1, 8388608)


def test_a_pod_without_cgroups_gets_its_processes_figures() -> None:
    pod = pod_from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                     "spec": {"containers": [{"name": "main", "image": "busybox"}]}}, "p.yaml", "node")
    me = os.getpid()
    start = int(Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19])
    plan = summary.PodPlan(pod, time.time() - 5, time.time() - 5, None,
                           [summary.ContainerPlan("main", me, start, time.time() - 5, "main.0")])
    sampler = Sampler()
    out = summary._pod(sampler, plan, True, "2026-01-01T00:00:00Z")
    [c] = out["containers"]
    assert c["memory"]["workingSetBytes"] > 0 and c["cpu"]["usageCoreNanoSeconds"] > 0
    assert out["memory"]["workingSetBytes"] == c["memory"]["workingSetBytes"]
    assert out["cpu"]["usageNanoCores"] == c["cpu"]["usageNanoCores"] > 0  # since this process started
    assert born_at(start) is not None and "network" not in out
