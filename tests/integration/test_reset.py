"""``minikubelet reset`` stops the running daemon and every pod, and leaves nothing behind but the user's manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import MINIKUBELET, REPO, DaemonHarness, alive, pod_yaml, sh

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
    daemon.write(
        "rst-multi.yaml",
        pod_yaml("rst-b", [sh("c", "sleep 1000")]) + "\n---\n" + pod_yaml("rst-c", [sh("c", "sleep 1000")]),
    )
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
    daemon.wait_for(
        lambda: daemon.pause_pid("stray") != pause and daemon.wait_running("stray"),
        30,
        "the pod running in a new sandbox",
    )
    assert len([p for p in daemon.pod_processes() if alive(p)]) == 1


# ----- issue 13: reset reads the network from the record; run names the flag that differs ------------------------


def dir_flags(daemon: DaemonHarness) -> list[str]:
    return [
        "--manifests",
        str(daemon.manifests),
        "--data-dir",
        str(daemon.data_dir),
        "--run-dir",
        str(daemon.run_dir),
        "--log-dir",
        str(daemon.log_dir),
        "--cgroup-root",
        daemon.cgroup_root,
    ]


def minikubelet(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MINIKUBELET, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def processes_in_netns(inodes: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def tree(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` with its content (the lock file's pid included)."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()} if d.exists() else {}


def start_pods(daemon: DaemonHarness, names: list[str]) -> tuple[set[int], set[int], list[str]]:
    """Start one pod per name (the first with two containers): their processes, network namespaces and veths."""
    pids: set[int] = set()
    inodes: set[int] = set()
    veths: list[str] = []
    for i, name in enumerate(names):
        containers = [sh("c", "sleep 1000")] + ([sh("d", "sleep 1000")] if i == 0 else [])
        daemon.write(f"{name}.yaml", pod_yaml(name, containers))
    for name in names:
        pod = daemon.wait_running(name)
        pause = daemon.pause_pid(name)
        pids |= descendants(pause)
        inodes.add(netns_inode(pause))
        record = json.loads((daemon.run_dir / "pods" / pod["metadata"]["uid"] / "record.json").read_text())
        veths.append(record["sandbox"]["veth"])
    assert len(pids) >= 2 * len(names) + 1
    return pids, inodes, veths


def assert_nothing_left(daemon: DaemonHarness, pids: set[int], inodes: set[int], veths: list[str]) -> None:
    assert sorted(p for p in pids if alive(p)) == [], "pod processes still alive after reset"
    assert processes_in_netns(inodes) == [], "a process still holds a pod network namespace"
    left = links()
    assert f" {daemon.bridge}:" not in left and f"master {daemon.bridge} " not in left, left
    for veth in veths:
        assert f" {veth}:" not in left and f" {veth}@" not in left, veth
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(daemon.root) not in mounts, "a mount under the test's directories is left"
    assert not daemon.run_dir.exists(), f"run state left: {tree(daemon.run_dir)}"
    assert not (daemon.data_dir / "ipam.json").exists() and not (daemon.data_dir / "network.json").exists()
    assert not daemon.log_dir.exists() or not any(daemon.log_dir.iterdir()), "pod log directories left"


def test_reset_after_sigkill_needs_only_the_directories(daemon: DaemonHarness) -> None:
    """Run with a non-default bridge and CIDR, SIGKILL the daemon, reset with only the directory flags."""
    assert daemon.bridge != "mk0" and str(daemon.cidr) != "10.244.0.0/16"
    pids, inodes, veths = start_pods(daemon, ["dirs-a", "dirs-b"])
    recorded = json.loads((daemon.data_dir / "network.json").read_text())
    assert recorded == {"version": 1, "bridge": daemon.bridge, "podCIDR": str(daemon.cidr)}
    manifests = snapshot_dir(daemon.manifests)
    daemon.stop(signal.SIGKILL)
    assert all(alive(p) for p in pids), "pods outlive the daemon"

    result = minikubelet("reset", *dir_flags(daemon))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resetting bridge={daemon.bridge} podCIDR={daemon.cidr}" in result.stderr, result.stderr
    assert "Ignoring" not in result.stderr and "corrupt" not in result.stderr, result.stderr
    assert_nothing_left(daemon, pids, inodes, veths)
    assert snapshot_dir(daemon.manifests) == manifests, "reset never touches the user's manifests"


def test_run_with_a_differing_flag_says_which_and_touches_nothing(daemon: DaemonHarness) -> None:
    daemon.write("keep.yaml", pod_yaml("keep", [sh("c", "sleep 1000")]))
    daemon.wait_running("keep")
    pause = daemon.pause_pid("keep")
    daemon.stop()
    network_json = daemon.data_dir / "network.json"
    before_data, before_run = tree(daemon.data_dir), tree(daemon.run_dir)
    other_bridge = f"mkz{daemon.bridge[3:]}"[:15]
    other_cidr = "10.199.3.0/24"
    reset = "minikubelet reset " + " ".join(dir_flags(daemon))
    flags = list(daemon.flags)

    def run_with(*changed: str) -> str:
        argv = list(flags)
        for flag, value in zip(changed[::2], changed[1::2], strict=True):
            if value:
                argv[argv.index(flag) + 1] = value
            else:
                del argv[argv.index(flag) : argv.index(flag) + 2]
        result = minikubelet("run", *argv, timeout=60)
        assert result.returncode != 0, "run must refuse a flag that differs from the record"
        assert "Traceback" not in result.stderr and "corrupt" not in result.stderr, result.stderr
        assert len([line for line in result.stderr.splitlines() if "ERROR" in line]) == 1, result.stderr
        return result.stderr

    err = run_with("--pod-cidr", other_cidr)
    assert f"--pod-cidr {other_cidr} differs from the pod CIDR {daemon.cidr} recorded in {network_json}" in err, err
    assert f"Either run with --pod-cidr {daemon.cidr}, or first run `{reset}`" in err, err
    err = run_with("--bridge", other_bridge)
    assert f"--bridge {other_bridge} differs from the bridge {daemon.bridge} recorded in {network_json}" in err, err
    assert f"run with --bridge {daemon.bridge}," in err, err
    err = run_with("--bridge", "", "--pod-cidr", "")
    assert (
        f"--bridge mk0 (the default) differs from the bridge {daemon.bridge} recorded in {network_json} and "
        f"--pod-cidr 10.244.0.0/16 (the default) differs from the pod CIDR {daemon.cidr}"
    ) in err, err
    assert f"run with --bridge {daemon.bridge} --pod-cidr {daemon.cidr}," in err, err

    assert tree(daemon.data_dir) == before_data and tree(daemon.run_dir) == before_run, "nothing touched"
    assert f" {other_bridge}:" not in links() and f" {daemon.bridge}:" in links()
    assert alive(pause)
    daemon.start()  # with the recorded values it starts and re-adopts the pod
    daemon.wait_running("keep")
    assert daemon.pause_pid("keep") == pause


def test_reset_ignores_contradicting_flags_and_reads_older_data_dirs(daemon: DaemonHarness) -> None:
    """A data dir from before network.json (ipam.json records the CIDR, the pods' veths the bridge): run with the
    default CIDR is refused naming ipam.json, and reset with wrong flags warns, ignores them and removes it all."""
    pids, inodes, veths = start_pods(daemon, ["old-a"])
    daemon.stop(signal.SIGKILL)
    (daemon.data_dir / "network.json").unlink()  # as an older daemon left it
    ipam_json = daemon.data_dir / "ipam.json"

    refused = minikubelet(
        "run", *dir_flags(daemon), "--bridge", daemon.bridge, "--listen", f"127.0.0.1:{daemon.port}", timeout=60
    )
    assert refused.returncode != 0
    assert (
        f"--pod-cidr 10.244.0.0/16 (the default) differs from the pod CIDR {daemon.cidr} recorded in {ipam_json}"
        in refused.stderr
    ), refused.stderr
    assert not (daemon.data_dir / "network.json").exists()

    wrong_bridge, wrong_cidr = f"mkw{daemon.bridge[3:]}"[:15], "10.198.0.0/24"
    result = minikubelet("reset", *dir_flags(daemon), "--bridge", wrong_bridge, "--pod-cidr", wrong_cidr)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"Ignoring --bridge {wrong_bridge}: the daemon of these directories recorded bridge {daemon.bridge} "
        "(in the run directory"
    ) in result.stderr, result.stderr
    assert (
        f"Ignoring --pod-cidr {wrong_cidr}: the daemon of these directories recorded pod CIDR {daemon.cidr} "
        f"(in {ipam_json})"
    ) in result.stderr, result.stderr
    assert_nothing_left(daemon, pids, inodes, veths)
    assert f" {wrong_bridge}:" not in links()


def test_reset_goes_on_past_a_corrupt_record(daemon: DaemonHarness) -> None:
    pids, inodes, veths = start_pods(daemon, ["bad-rec"])
    daemon.stop(signal.SIGKILL)
    (daemon.data_dir / "network.json").write_text("{half")
    refused = minikubelet("run", *daemon.flags, timeout=60)
    assert refused.returncode != 0 and "network.json is corrupt" in refused.stderr, refused.stderr
    result = minikubelet("reset", *dir_flags(daemon))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "network.json is corrupt" in result.stderr and "reset goes on without it" in result.stderr
    assert_nothing_left(daemon, pids, inodes, veths)
