"""The cgroup tree on this host's real cgroupfs (v1 here, v2 in the vm-test guest): a process joins its cgroup
before it execs, the memory limit OOM-kills it and the victim's counter says so, a 200m CPU limit holds a busy loop
near 20 % of a core, pids.max stops a fork bomb, and removal leaves nothing behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

from minikubelet.cgroups.detect import detect
from minikubelet.cgroups.resources import CgroupConfig, QOSClass, container_config, parse_resources
from minikubelet.cgroups.tree import Cgroups, pod_path

pytestmark = [pytest.mark.root, pytest.mark.cgroups]


@pytest.fixture
def tree() -> Iterator[tuple[Cgroups, str]]:
    cg = Cgroups(detect())
    root = f"/mk-test-{uuid.uuid4().hex[:8]}"
    yield cg, root
    top = PurePosixPath(root)
    for pid in cg.pids(top):  # anything a failed test left behind
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert asyncio.run(cg.remove(top))
    assert not any(d.exists() for d in cg.dirs(top))


def run_in(cg: Cgroups, path: PurePosixPath, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The child writes its own pid into every cgroup.procs, then execs python: it never runs unconfined."""
    joins = " ".join(f"echo $$ > {f} &&" for f in cg.procs_files(path))
    return subprocess.run(["sh", "-c", f'{joins} exec "$0" -c "$1"', sys.executable, code],
                          capture_output=True, text=True, timeout=timeout, check=False)


def make(cg: Cgroups, root: str, cfg: CgroupConfig) -> PurePosixPath:
    pod = pod_path(root, QOSClass.GUARANTEED, uuid.uuid4().hex)
    leaf = pod / "app"
    cg.create(leaf)
    cg.apply(pod, cfg)
    cg.apply(leaf, cfg)
    return leaf


def test_memory_limit_oom_kills_and_counts(tree: tuple[Cgroups, str]) -> None:
    cg, root = tree
    res, _ = parse_resources({"limits": {"memory": "32Mi", "cpu": "1"}}, "x")
    leaf = make(cg, root, container_config(res, v2=cg.v2))
    assert cg.oom_kills(leaf) == 0
    proc = run_in(cg, leaf, "b = bytearray(200 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1")
    assert proc.returncode == -9, proc.stderr
    assert cg.oom_kills(leaf) >= 1


def test_cpu_limit_holds_busy_loop_near_a_fifth(tree: tuple[Cgroups, str]) -> None:
    cg, root = tree
    res, _ = parse_resources({"limits": {"cpu": "200m", "memory": "64Mi"}}, "x")
    leaf = make(cg, root, container_config(res, v2=cg.v2))
    start = time.monotonic()
    proc = run_in(cg, leaf, "import time\nt = time.monotonic() + 2\nwhile time.monotonic() < t: pass")
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    share = cg.usage(leaf).cpu_usage_ns / 1e9 / wall
    assert 0.08 < share < 0.35, f"cpu share {share:.2f} of a core under a 200m limit"


def test_pids_limit_stops_a_fork_bomb(tree: tuple[Cgroups, str]) -> None:
    cg, root = tree
    leaf = make(cg, root, CgroupConfig(pids_max=8))
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(50):\n        if os.fork() == 0:\n"
            "            time.sleep(3); os._exit(0)\n        n += 1\nexcept BlockingIOError:\n    pass\nprint(n)")
    proc = run_in(cg, leaf, code)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[0]) < 8
    # the host still forks freely
    assert subprocess.run(["true"], check=False).returncode == 0


def test_remove_waits_for_processes_and_leaves_nothing(tree: tuple[Cgroups, str]) -> None:
    cg, root = tree
    leaf = make(cg, root, CgroupConfig(cpu_shares=2))
    joins = " ".join(f"echo $$ > {f} &&" for f in cg.procs_files(leaf))
    child = subprocess.Popen(["sh", "-c", f"{joins} exec sleep 0.3"])
    try:
        deadline = time.monotonic() + 5
        while not cg.pids(leaf) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cg.pids(leaf) == [child.pid]
        assert asyncio.run(cg.remove(PurePosixPath(root)))  # EBUSY until sleep exits, retried
    finally:
        child.wait(timeout=5)
    assert not any(d.exists() for d in cg.dirs(PurePosixPath(root)))
