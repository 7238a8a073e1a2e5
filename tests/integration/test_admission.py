"""Resource admission as the kubelet's: a pod whose requests do not fit what is left ends Failed with OutOfcpu,
OutOfmemory or OutOfpods and the kubelet's message, an event says why, and the pods already running are untouched."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonHarness, events_of
from tests.integration.test_kubectl import Kubectl

pytestmark = pytest.mark.root

SLEEP = [sys.executable, "-c", "import time; time.sleep(1000)"]
NODE_FS = {"minikubelet.io/node-filesystem": "true"}


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def pod(name: str, requests: dict[str, str] | None = None) -> str:
    c: dict[str, Any] = {"name": "main", "image": "busybox", "command": SLEEP}
    if requests:
        c["resources"] = {"requests": requests}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": NODE_FS},
                       "spec": {"containers": [c]}})


def failed(daemon: DaemonHarness, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = daemon.pod(name)
        return p if p and p["status"].get("phase") == "Failed" else None

    result: dict[str, Any] = daemon.wait_for(check, timeout=20, what=f"pod {name} Failed")
    return result


def test_requests_beyond_the_node_fail_admission(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    daemon.write("small.json", pod("small", {"cpu": "100m", "memory": "16Mi"}))
    daemon.wait_running("small")
    cpus = os.cpu_count() or 1
    daemon.write("hungry.json", pod("hungry", {"cpu": str(cpus + 1)}))
    status = failed(daemon, "hungry")["status"]
    assert status["reason"] == "OutOfcpu"
    assert status["message"] == (f"Pod was rejected: Node didn't have enough resource: cpu, requested: "
                                 f"{(cpus + 1) * 1000}, used: 100, capacity: {cpus * 1000}")
    assert "OutOfcpu" in kubectl.run("get", "pod", "hungry").stdout
    ev = [e for e in events_of(daemon, "hungry") if e["reason"] == "OutOfcpu"]
    assert ev and ev[0]["type"] == "Warning" and ev[0]["message"].startswith("Node didn't have enough resource: cpu")

    daemon.write("huge.json", pod("huge", {"memory": "100Ti"}))
    assert failed(daemon, "huge")["status"]["reason"] == "OutOfmemory"
    assert daemon.pod("small")["status"]["phase"] == "Running"  # type: ignore[index]
    assert "containerStatuses" not in daemon.pod("hungry")["status"]  # type: ignore[index]


def test_max_pods_refuses_the_next_pod(daemon: DaemonHarness) -> None:
    daemon.stop()
    daemon.start("--max-pods", "2")
    for name in ("one", "two"):
        daemon.write(f"{name}.json", pod(name))
        daemon.wait_running(name)
    daemon.write("three.json", pod("three"))
    status = failed(daemon, "three")["status"]
    assert status["reason"] == "OutOfpods"
    assert status["message"] == ("Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, "
                                 "capacity: 2")
    node = json.loads(daemon.get_text(f"/api/v1/nodes/{daemon.node_name}"))
    assert node["status"]["capacity"]["pods"] == "2"
    daemon.remove("one.json")
    daemon.wait_gone("one")
    daemon.write("four.json", pod("four"))  # room again: a new pod is admitted (a rejected one stays Failed)
    daemon.wait_running("four")
    assert daemon.pod("three")["status"]["phase"] == "Failed"  # type: ignore[index]


def test_default_capacity_is_the_kubelets(daemon: DaemonHarness) -> None:
    daemon.stop()
    daemon.start("--max-pods", "110")
    node = json.loads(daemon.get_text(f"/api/v1/nodes/{daemon.node_name}"))
    capacity = node["status"]["capacity"]
    assert capacity["pods"] == "110"
    assert capacity["cpu"] == str(os.cpu_count())
    assert capacity["ephemeral-storage"].endswith("Ki") and int(capacity["ephemeral-storage"][:-2]) > 0
