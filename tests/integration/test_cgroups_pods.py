"""Pods in cgroups for real (v1 here, v2 in the vm-test guest): a memory limit ends in OOMKilled / 137 and the
restart policy applies, the QoS class and oom_score_adj follow the kubelet, the limits sit in the pod's cgroup
(joined before exec), and deleting the pod leaves no cgroup (reset is checked by the fixture)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonHarness, events_of, pod_yaml, wait_pod
from tests.integration.test_kubectl import Kubectl

pytestmark = [pytest.mark.root, pytest.mark.cgroups]

@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


SLEEP = [sys.executable, "-c", "import time; time.sleep(1000)"]


def container(name: str, command: list[str], resources: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": command, "resources": resources or {}}


def cgroup_dirs(daemon: DaemonHarness, rel: str) -> list[Path]:
    top = Path("/sys/fs/cgroup")
    if (top / "cgroup.controllers").exists():
        return [top / daemon.cgroup_root.lstrip("/") / rel]
    return [top / c / daemon.cgroup_root.lstrip("/") / rel for c in ("memory", "cpu", "pids")]


def own_cgroup(pid: int) -> str:
    """The process's cgroup path on the memory hierarchy (v1) or the unified one (v2)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(",") or (ctrls == "" and len(lines) == 1):
            return path
    raise AssertionError(lines)


def test_memory_limit_oom_killed_137_and_restarted(daemon: DaemonHarness) -> None:
    hog = [sys.executable, "-c", "b = bytearray(300 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1"]
    daemon.write("hog.yaml", pod_yaml("hog", [container("hog", hog, {"limits": {"memory": "32Mi"}})],
                                      restartPolicy="OnFailure"))
    pod = wait_pod(daemon, "hog", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1
                   and "terminated" in p["status"]["containerStatuses"][0].get("lastState", {}), 60,
                   "the hog OOM-killed and restarted")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert pod["status"]["qosClass"] == "Burstable"
    oom = [e for e in events_of(daemon, "hog") if e["reason"] == "OOMKilled"]
    assert oom and oom[0]["type"] == "Warning" and "(32Mi)" in oom[0]["message"]


def test_qos_class_oom_score_adj_and_limits_in_place(daemon: DaemonHarness) -> None:
    guaranteed = {"limits": {"cpu": "200m", "memory": "64Mi"}}
    daemon.write("g.yaml", pod_yaml("g", [container("app", SLEEP, guaranteed)]))
    daemon.write("be.yaml", pod_yaml("be", [container("app", SLEEP)]))
    g, be = daemon.wait_running("g"), daemon.wait_running("be")
    assert g["status"]["qosClass"] == "Guaranteed" and be["status"]["qosClass"] == "BestEffort"
    assert g["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "200m", "memory": "64Mi"}
    gpid, bepid = daemon.container_pid("g", "app"), daemon.container_pid("be", "app")
    # lowering oom_score_adj needs CAP_SYS_RESOURCE (bit 24), which some machines withhold from root
    can_lower = int(Path("/proc/self/status").read_text().split("CapEff:")[1].split()[0], 16) & (1 << 24)
    assert Path(f"/proc/{gpid}/oom_score_adj").read_text().strip() == ("-997" if can_lower else "0")
    assert Path(f"/proc/{bepid}/oom_score_adj").read_text().strip() == "1000"
    uid = g["metadata"]["uid"]
    assert own_cgroup(gpid) == f"{daemon.cgroup_root}/kubepods/pod{uid}/app.0"
    assert own_cgroup(bepid) == f"{daemon.cgroup_root}/kubepods/besteffort/pod{be['metadata']['uid']}/app.0"
    leaf = cgroup_dirs(daemon, f"kubepods/pod{uid}/app.0")
    if len(leaf) == 1:
        assert (leaf[0] / "memory.max").read_text().strip() == str(64 * 2**20)
        assert (leaf[0] / "cpu.max").read_text().split() == ["20000", "100000"]
    else:
        assert (leaf[0] / "memory.limit_in_bytes").read_text().strip() == str(64 * 2**20)
        assert (leaf[1] / "cpu.cfs_quota_us").read_text().strip() == "20000"
    daemon.remove("g.yaml")
    daemon.wait_gone("g")
    daemon.wait_for(lambda: not any(d.exists() for d in cgroup_dirs(daemon, f"kubepods/pod{uid}")), 10,
                    "the pod's cgroup removed")


def test_exec_joins_the_containers_cgroup(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    daemon.write("ex.yaml", pod_yaml("ex", [container("app", SLEEP, {"limits": {"memory": "64Mi"}})]))
    pod = daemon.wait_running("ex")
    out = kubectl("exec", "ex", "--", "cat", "/proc/self/cgroup")
    leaf = f"{daemon.cgroup_root}/kubepods/burstable/pod{pod['metadata']['uid']}/app.0"
    assert leaf in out, out


def test_pod_pids_limit_stops_a_fork_bomb_and_others_keep_working(daemon: DaemonHarness) -> None:
    daemon.stop()
    daemon.start("--pod-pids-limit", "20")
    bomb = ("import os, time\nn = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
            "            time.sleep(1000); os._exit(0)\n        n += 1\nexcept BlockingIOError:\n    pass\n"
            "print('forked', n, flush=True)\ntime.sleep(1000)")
    daemon.write("bomb.yaml", pod_yaml("bomb", [container("bomb", [sys.executable, "-c", bomb])]))
    pod = daemon.wait_running("bomb")
    log = daemon.log_dir / f"default_bomb_{pod['metadata']['uid']}" / "bomb" / "0.log"
    text = daemon.wait_for(lambda: "forked" in log.read_text() and log.read_text(), 30, "the bomb's count")
    assert int(text.split("forked")[1].split()[0]) < 20
    daemon.write("ok.yaml", pod_yaml("ok", [container("app", SLEEP)]))  # the daemon and other pods go on
    daemon.wait_running("ok")


def test_cgroups_survive_a_daemon_restart_and_go_with_the_pod(daemon: DaemonHarness) -> None:
    daemon.write("keep.yaml", pod_yaml("keep", [container("app", SLEEP, {"limits": {"memory": "64Mi"}})]))
    pod = daemon.wait_running("keep")
    pid = daemon.container_pid("keep", "app")
    leaf = f"{daemon.cgroup_root}/kubepods/burstable/pod{pod['metadata']['uid']}/app.0"
    daemon.stop()
    assert own_cgroup(pid) == leaf  # the pod outlives the daemon, in its cgroup
    daemon.start()
    daemon.wait_running("keep")
    assert daemon.container_pid("keep", "app") == pid and own_cgroup(pid) == leaf
    daemon.remove("keep.yaml")
    daemon.wait_gone("keep")
    pod_dirs = cgroup_dirs(daemon, f"kubepods/burstable/pod{pod['metadata']['uid']}")
    daemon.wait_for(lambda: not any(d.exists() for d in pod_dirs), 10, "the re-adopted pod's cgroup removed")


def test_top_reads_the_cgroup_at_once(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    import time

    busy = [sys.executable, "-c", "while True: pass"]
    limits = {"limits": {"cpu": "200m", "memory": "64Mi"}}
    daemon.write("busy.yaml", pod_yaml("busy", [container("loop", busy, limits)]))
    daemon.wait_running("busy")
    time.sleep(3)
    t0 = time.monotonic()
    raw = json.loads(kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy"))
    took = time.monotonic() - t0
    window = float(raw["window"].removesuffix("s"))
    assert window > 2, f"a first call measures the container's life so far from its cgroup, window={window}"
    cpu_m = int(raw["containers"][0]["usage"]["cpu"].removesuffix("n")) / 1e6
    assert 100 < cpu_m < 300, f"a 200m-limited busy loop shows {cpu_m:.0f}m"
    assert took < 5, took


def test_describe_node_shows_allocatable_minus_reserved_and_allocated(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    daemon.stop()
    daemon.start("--system-reserved", "cpu=500m,memory=256Mi", "--kube-reserved", "cpu=250m")
    daemon.write("g.yaml", pod_yaml("g", [container("app", SLEEP, {"limits": {"cpu": "200m", "memory": "64Mi"}})]))
    daemon.wait_running("g")
    node = json.loads(kubectl("get", "node", "-o", "json"))["items"][0]["status"]
    cores = int(node["capacity"]["cpu"])
    assert node["allocatable"]["cpu"] == f"{cores * 1000 - 750}m"
    mem = int(node["capacity"]["memory"].removesuffix("Ki"))
    assert node["allocatable"]["memory"] == f"{mem - 256 * 1024}Ki"
    out = kubectl("describe", "node")
    allocated = out.split("Allocated resources:")[1]
    assert re.search(r"cpu\s+200m \(\d+%\)\s+200m", allocated), allocated
    assert re.search(r"memory\s+64Mi \(\d+%\)\s+64Mi", allocated), allocated
