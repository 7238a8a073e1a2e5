"""Pods outlive the daemon (SIGKILL or SIGTERM) and are re-adopted on start: same processes, no restart, exits that
happened meanwhile reported, pods whose manifest or pause vanished meanwhile cleaned up; one daemon per run dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BUSYBOX, MINIKUBELET, REPO, DaemonHarness, alive, events_of, http_get, httpd, pod_yaml, sh

pytestmark = pytest.mark.root

RESTART_REASONS = {"Created", "Started", "Killing", "SandboxChanged", "BackOff", "Failed"}


def ppid_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in "ZX" else int(fields[1])


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and ppid_of(int(entry.name)) == pid:
            out.append(int(entry.name))
    return sorted(out)


def record(daemon: DaemonHarness, name: str) -> dict[str, Any]:
    pod = daemon.pod(name)
    assert pod is not None, f"pod {name} not found"
    data: dict[str, Any] = json.loads((daemon.run_dir / "pods" / pod["metadata"]["uid"] / "record.json").read_text())
    return data


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def link_index(name: str) -> int | None:
    for line in links().splitlines():
        idx, ifname = line.split(":")[:2]
        if ifname.strip().split("@")[0] == name:
            return int(idx)
    return None


def web_pod(daemon: DaemonHarness, name: str, www: Path) -> str:
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text(f"hello from {name}\n")
    daemon.write(f"{name}.yaml", pod_yaml(name, [httpd("web", 8080, str(www)), sh("side", "sleep 1000")]))
    ip: str = daemon.wait_running(name)["status"]["podIP"]
    daemon.wait_for(lambda: http_get(f"http://{ip}:8080/") == f"hello from {name}\n", 10, f"HTTP from {name}")
    return ip


def state_of(daemon: DaemonHarness, name: str) -> dict[str, Any]:
    """What must not change across a daemon restart: uid, pids, restart counts, pause's children."""
    pod = daemon.wait_running(name)
    pause = daemon.pause_pid(name)
    return {
        "uid": pod["metadata"]["uid"],
        "ip": pod["status"]["podIP"],
        "pause": pause,
        "containers": {c["name"]: daemon.container_pid(name, c["name"]) for c in pod["status"]["containerStatuses"]},
        "restarts": {c["name"]: c["restartCount"] for c in pod["status"]["containerStatuses"]},
        "children": children_of(pause),
    }


def no_restart_events(daemon: DaemonHarness, name: str) -> None:
    reasons = [e["reason"] for e in events_of(daemon, name)]
    assert not RESTART_REASONS & set(reasons), f"pod {name} was touched after the daemon restart: {reasons}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_pods_outlive_the_daemon_and_are_readopted(daemon: DaemonHarness, tmp_path: Path, sig: int) -> None:
    names = [f"rs-web-{int(sig)}", f"rs-web2-{int(sig)}"]
    ips = {n: web_pod(daemon, n, tmp_path / n) for n in names}
    before = {n: state_of(daemon, n) for n in names}
    for n in names:
        assert before[n]["children"], f"pause of {n} has no children"
        assert set(before[n]["containers"].values()) <= set(before[n]["children"]), before[n]

    daemon.stop(sig)
    assert daemon.proc is not None and daemon.proc.returncode is not None
    for n in names:
        assert alive(before[n]["pause"]), f"pause of {n} died with the daemon"
        for c, pid in before[n]["containers"].items():
            assert alive(pid), f"container {c} of {n} died with the daemon"
        assert http_get(f"http://{ips[n]}:8080/") == f"hello from {n}\n"

    log_size = len(daemon.log())
    daemon.start()
    for n in names:
        daemon.wait_running(n)
    time.sleep(1)  # give a wrong restart every chance to show
    for n in names:
        after = state_of(daemon, n)
        assert after == before[n], f"{n} changed across the daemon restart"
        assert len(children_of(after["pause"])) == len(before[n]["children"]), "duplicate processes"
        assert http_get(f"http://{ips[n]}:8080/") == f"hello from {n}\n"
        no_restart_events(daemon, n)
    attached = subprocess.run(["ip", "-o", "link", "show", "master", daemon.bridge], capture_output=True, text=True)
    assert len(attached.stdout.splitlines()) == len(names), f"one veth per pod:\n{attached.stdout}"
    new_log = daemon.log()[log_size:]
    assert "Pod re-adopted" in new_log
    assert "Container started" not in new_log and "Pod sandbox started" not in new_log, new_log


def test_container_exit_while_the_daemon_is_down_is_reported_and_restarted(daemon: DaemonHarness) -> None:
    daemon.write(
        "rs-exit.yaml",
        pod_yaml(
            "rs-exit",
            [
                {"name": "c", "image": "busybox", "command": [BUSYBOX, "sleep", "1000"]},
                sh("other", "sleep 1000"),
            ],
        ),
    )
    before = state_of(daemon, "rs-exit")
    victim = before["containers"]["c"]
    daemon.stop(signal.SIGKILL)
    os.kill(victim, signal.SIGTERM)
    daemon.wait_for(lambda: not alive(victim), 10, "the container gone")
    daemon.start()

    def restarted() -> dict[str, Any] | None:
        c = daemon.container("rs-exit", "c")
        return c if c["restartCount"] == 1 and "running" in c["state"] else None

    status = daemon.wait_for(restarted, 40, "container c restarted once")
    term = status["lastState"]["terminated"]
    assert term["exitCode"] == 143, term
    assert term["reason"] == "Error", term
    new_pid = daemon.container_pid("rs-exit", "c")
    assert new_pid != victim and alive(new_pid)
    # the rest of the pod was re-adopted untouched
    assert daemon.pause_pid("rs-exit") == before["pause"]
    assert daemon.container_pid("rs-exit", "other") == before["containers"]["other"]
    assert daemon.container("rs-exit", "other")["restartCount"] == 0
    assert len(children_of(before["pause"])) == len(before["children"])


def test_manifest_removed_while_the_daemon_is_down_stops_the_pod(daemon: DaemonHarness) -> None:
    daemon.write("rs-gone.yaml", pod_yaml("rs-gone", [sh("c", "sleep 1000")]))
    daemon.write("rs-stays.yaml", pod_yaml("rs-stays", [sh("c", "sleep 1000")]))
    gone, stays = state_of(daemon, "rs-gone"), state_of(daemon, "rs-stays")
    veth = record(daemon, "rs-gone")["sandbox"]["veth"]
    assert link_index(veth) is not None
    daemon.stop(signal.SIGKILL)
    daemon.remove("rs-gone.yaml")
    daemon.start()
    daemon.wait_gone("rs-gone")
    daemon.wait_for(lambda: not alive(gone["pause"]) and not alive(gone["containers"]["c"]), 40, "rs-gone stopped")
    daemon.wait_for(lambda: link_index(veth) is None, 10, f"veth {veth} removed")
    assert not (daemon.run_dir / "pods" / gone["uid"]).exists()
    assert state_of(daemon, "rs-stays") == stays


def test_pause_killed_while_the_daemon_is_down_is_cleared_and_recreated(daemon: DaemonHarness, tmp_path: Path) -> None:
    ip = web_pod(daemon, "rs-pause", tmp_path / "www")
    before = state_of(daemon, "rs-pause")
    veth = record(daemon, "rs-pause")["sandbox"]["veth"]
    old_index = link_index(veth)
    assert old_index is not None
    daemon.stop(signal.SIGKILL)
    os.kill(before["pause"], signal.SIGKILL)
    daemon.wait_for(lambda: not alive(before["pause"]), 10, "pause gone")
    daemon.wait_for(lambda: not any(alive(p) for p in before["containers"].values()), 10, "containers gone")
    daemon.start()

    def recreated() -> bool:
        pod = daemon.pod("rs-pause")
        return (
            pod is not None
            and pod["status"]["phase"] == "Running"
            and daemon.pause_pid("rs-pause") != before["pause"]
            and all("running" in c["state"] for c in pod["status"]["containerStatuses"])
        )

    daemon.wait_for(recreated, 40, "rs-pause recreated with a new pause")
    pod = daemon.wait_running("rs-pause")
    assert pod["metadata"]["uid"] == before["uid"], "same manifest, same pod"
    new_pause = daemon.pause_pid("rs-pause")
    assert alive(new_pause)
    # one veth for the pod: the old one is gone, a new one (new ifindex) is attached to the bridge
    attached = subprocess.run(
        ["ip", "-o", "link", "show", "master", daemon.bridge], capture_output=True, text=True
    ).stdout.splitlines()
    assert len(attached) == 1, attached
    new_veth = record(daemon, "rs-pause")["sandbox"]["veth"]
    assert new_veth in attached[0]
    assert link_index(new_veth) != old_index
    new_ip = pod["status"]["podIP"]
    leases = json.loads((daemon.data_dir / "ipam.json").read_text())["leases"]
    assert leases == {before["uid"]: new_ip}, f"old lease {ip} must be released: {leases}"
    daemon.wait_for(lambda: http_get(f"http://{new_ip}:8080/") == "hello from rs-pause\n", 10, "HTTP again")


def test_second_daemon_on_the_same_run_dir_is_refused(daemon: DaemonHarness) -> None:
    assert daemon.proc is not None
    first = daemon.proc.pid
    second = subprocess.run([*MINIKUBELET, "run", *daemon.flags], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert second.returncode != 0
    out = second.stdout + second.stderr
    assert f"another minikubelet (pid {first}) already runs with --run-dir {daemon.run_dir}" in out, out
    assert daemon.proc.poll() is None
    assert daemon.get_text("/healthz") == "ok"
    assert f" {daemon.bridge}:" in links()
