"""``minikubelet reset`` stops the running daemon and every pod, and leaves nothing behind but the user's manifests."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import DaemonHarness, alive, pod_yaml, sh

pytestmark = pytest.mark.root


def descendants(pid: int) -> set[int]:
    """pid and every process below it (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in found]
        found.update(kids)
        frontier += kids
    return found


def snapshot_dir(d: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mode, p.read_bytes()) for p in sorted(d.iterdir())}


def test_reset_leaves_nothing_behind_but_the_manifests(daemon: DaemonHarness) -> None:
    stubborn = sh("stubborn", "trap '' TERM; while :; do sleep 0.2; done")
    daemon.write("rst-a.yaml", pod_yaml("rst-a", [sh("c", "sleep 1000"), sh("d", "sleep 1000")]))
    daemon.write("rst-stubborn.yaml", pod_yaml("rst-stubborn", [stubborn], terminationGracePeriodSeconds=2))
    daemon.write("rst-multi.yaml", pod_yaml("rst-b", [sh("c", "sleep 1000")]) + "\n---\n"
                 + pod_yaml("rst-c", [sh("c", "sleep 1000")]))
    names = ["rst-a", "rst-stubborn", "rst-b", "rst-c"]
    pids: set[int] = set()
    veths: list[str] = []
    for name in names:
        pod = daemon.wait_running(name)
        pids |= descendants(daemon.pause_pid(name))
        record = json.loads((daemon.run_dir / "pods" / pod["metadata"]["uid"] / "record.json").read_text())
        veths.append(record["sandbox"]["veth"])
    assert len(pids) >= 2 * len(names) + 1
    assert (daemon.data_dir / "ipam.json").exists()
    manifests = snapshot_dir(daemon.manifests)
    assert daemon.proc is not None and daemon.proc.poll() is None

    t0 = time.monotonic()
    result = daemon.reset()
    elapsed = time.monotonic() - t0
    assert result.returncode == 0, result.stderr[-3000:]
    assert daemon.proc.poll() is not None, "reset stops the running daemon first"
    assert 1.9 <= elapsed < 60, f"the stubborn container gets its 2 s grace period, no more: {elapsed:.1f}s"
    assert "ignored SIGTERM for the grace period; killing it pod=default/rst-stubborn" in result.stderr, result.stderr
    left = sorted(p for p in pids if alive(p))
    assert left == [], f"pod processes still alive after reset: {left}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f" {daemon.bridge}:" not in links and f"master {daemon.bridge} " not in links
    for veth in veths:
        assert f" {veth}:" not in links and f" {veth}@" not in links, veth
    pods_dir = daemon.run_dir / "pods"
    assert not pods_dir.exists() or not any(pods_dir.iterdir())
    assert not (daemon.data_dir / "ipam.json").exists()
    assert snapshot_dir(daemon.manifests) == manifests, "reset never touches the user's manifests"

    again = daemon.reset()
    assert again.returncode == 0, again.stderr[-3000:]
    assert snapshot_dir(daemon.manifests) == manifests
    assert f" {daemon.bridge}:" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("lost", ["record", "sandbox"])
def test_a_sandbox_the_killed_daemon_never_recorded_is_stopped(daemon: DaemonHarness, lost: str) -> None:
    """The daemon died after the pause existed but before its record said so: the restarted daemon stops that pause
    (its namespaces and processes go with it) and runs the pod in a new one; reset then leaves nothing."""
    daemon.write("stray.yaml", pod_yaml("stray", [sh("c", "sleep 1000")]))
    pod = daemon.wait_running("stray")
    pause = daemon.pause_pid("stray")
    inside = descendants(pause)
    assert len(inside) >= 2
    daemon.stop(signal.SIGKILL)
    record_file = daemon.run_dir / "pods" / pod["metadata"]["uid"] / "record.json"
    if lost == "record":  # died before the first record was written
        record_file.unlink()
    else:  # a record from before the sandbox existed
        record = json.loads(record_file.read_text())
        record["sandbox"] = None
        record_file.write_text(json.dumps(record))
    assert all(alive(p) for p in inside)
    daemon.start()
    daemon.wait_for(lambda: not any(alive(p) for p in inside), 20, "the unrecorded pause and its processes gone")
    assert "never recorded" in daemon.log()
    daemon.wait_for(lambda: daemon.pause_pid("stray") != pause and daemon.wait_running("stray"), 30,
                    "the pod running in a new sandbox")
    assert len([p for p in daemon.pod_processes() if alive(p)]) == 1
