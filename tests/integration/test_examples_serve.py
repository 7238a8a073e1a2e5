"""Every file in examples/ started for real, on its images (issue 12 point 5), as users do: copied into the
manifest directory of a daemon that pulls docker.io from the session registry (tests/testimages.py).

Each example that serves HTTP answers 200 at ``/`` on its pod IP; redis answers PING; the others do what their
comment says; each with probes keeps its pause process and restart count for two probe failure windows.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import DaemonHarness, wait_pod
from tests.integration.test_kubectl import Kubectl
from tests.testimages import (
    ImageRegistry,
    image_daemon,
    image_registry,  # noqa: F401 - the session fixture
)

pytestmark = pytest.mark.root

EXAMPLES = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "examples").iterdir() if p.suffix in (".yaml", ".yml", ".json")
)
PULL_TIMEOUT = 120  # every image of the examples is pulled at once by the first pods
# What each example serves: file -> {pod: [(port, kind)]}; a containerPort not listed here fails the test, so a new
# example has to say what it serves.
SERVES: dict[str, dict[str, list[tuple[int, str]]]] = {
    "pod-label.yml": {"examlabel": [(80, "http")]},
    "pod-nodeselector.yml": {"nodeselector-pod": [(80, "http")]},
    "nginx-pod-liveness.yml": {"nginx-pod-liveness": [(80, "http")]},
    "nginx-pod.yml": {"nginx-pod": [(80, "http")]},
    "label-pod.yml": {"label-pod": [(80, "http")]},
    "web.yaml": {"web": [(8080, "http")]},
    "localhost-pair.yaml": {"pair": [(8080, "http")]},
    "redis-pod.yml": {"redis-pod": [(6379, "redis")]},
}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


class Started:
    def __init__(self, daemon: DaemonHarness, kubectl: Kubectl) -> None:
        self.daemon, self.kubectl = daemon, kubectl
        self.at = time.monotonic()


@pytest.fixture(scope="module")
def started(
    run_id: str,
    image_registry: ImageRegistry,  # noqa: F811
    kubectl_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Started]:
    """One daemon running every example at once (the nodeselector one on a node labelled ssd=true)."""
    with image_daemon(run_id, image_registry, tmp_path_factory.mktemp("examples"), prefix="ex") as daemon:
        kubectl = Kubectl(kubectl_bin, daemon, tmp_path_factory.mktemp("kubecache"))
        kubectl("label", "node", daemon.node_name, "ssd=true")
        started = Started(daemon, kubectl)
        for path in EXAMPLES:
            daemon.write(path.name, path.read_text())  # as the examples say: cp examples/X /etc/minikubelet/manifests/
        yield started


def http_status(url: str) -> int:
    try:
        with _DIRECT.open(url, timeout=2) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def redis_ping(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).decode()


def logs(started: Started, pod: str, container: str) -> str:
    """The container's log, "" while it has not started (kubectl logs then fails)."""
    out = started.kubectl.run("logs", pod, "-c", container, check=False)
    return out.stdout if out.returncode == 0 else ""


def running(daemon: DaemonHarness, name: str) -> dict[str, Any]:
    return daemon.wait_running(name, timeout=PULL_TIMEOUT)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_serves(started: Started, path: Path) -> None:
    daemon = started.daemon
    serves = SERVES.get(path.name, {})
    for doc in docs(path):
        name = doc["metadata"]["name"]
        declared = {(p["containerPort"], name) for c in doc["spec"]["containers"] for p in c.get("ports", [])}
        listed = {(port, name) for port, _kind in serves.get(name, [])}
        assert declared <= listed, f"{path.name}: say in SERVES what {sorted(declared - listed)} serve"
        if name == "crashloop":  # its point: restarted with back-off
            pod = wait_pod(daemon, name, lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1, 60)
            assert pod["status"]["containerStatuses"][0]["imageID"].startswith("docker.io/library/busybox@sha256:")
            wait_pod(
                daemon,
                name,
                lambda p: (
                    p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
                ),
                60,
                "CrashLoopBackOff",
            )
            continue
        pod = running(daemon, name)
        assert doc["metadata"].get("annotations", {}).get("minikubelet.io/node-filesystem") is None
        for c in pod["status"]["containerStatuses"]:
            assert c["imageID"].startswith("docker.io/library/"), c  # on its image, not the node's filesystem
        ip = pod["status"]["podIP"]
        for port, kind in serves.get(name, []):
            if kind == "http":
                daemon.wait_for(
                    lambda ip=ip, port=port: http_status(f"http://{ip}:{port}/") == 200,
                    30,
                    f"{name}: HTTP 200 at http://{ip}:{port}/",
                )
            else:
                daemon.wait_for(lambda ip=ip, port=port: redis_ping(ip, port) == "+PONG\r\n", 30, f"{name}: PONG")
        if name == "init-demo":
            want = f"hello from init-demo at {ip} as 65534 in /tmp"
            daemon.wait_for(lambda want=want: logs(started, "init-demo", "app").strip() == want, 20, "init log")
        if name == "pair":
            daemon.wait_for(lambda: "hello from the pair server" in logs(started, "pair", "client"), 20, "pair log")


def probe_window(doc: dict[str, Any]) -> float:
    """The longest initialDelay + 2 x (period x failureThreshold) of the pod's probes, 0 without probes."""
    longest = 0.0
    for c in doc["spec"]["containers"]:
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            p = c.get(kind)
            if p:
                window = p.get("periodSeconds", 10) * p.get("failureThreshold", 3)
                longest = max(longest, p.get("initialDelaySeconds", 0) + 2 * window)
    return longest


PROBED = [(p, d) for p in EXAMPLES for d in docs(p) if probe_window(d)]


def test_examples_with_probes_stay_up(started: Started) -> None:
    """Two failure windows of every probe (nginx-pod-liveness: 15 s + 2 x 60 s) without a restart or a new pause,
    and ready all along once ready. Last in the module: it waits the longest."""
    daemon = started.daemon
    assert PROBED, "no example has probes"
    base: dict[str, tuple[int, int]] = {}
    for _path, doc in PROBED:
        name = doc["metadata"]["name"]
        pod = running(daemon, name)
        base[name] = (daemon.pause_pid(name), sum(c["restartCount"] for c in pod["status"]["containerStatuses"]))
    until = started.at + max(probe_window(d) for _p, d in PROBED) + 5
    ready_seen: set[str] = set()
    while True:
        for name, (pause, restarts) in base.items():
            pod = daemon.pod(name)
            assert pod is not None, f"{name} gone"
            now = (daemon.pause_pid(name), sum(c["restartCount"] for c in pod["status"]["containerStatuses"]))
            assert now == (pause, restarts), f"{name}: pause/restarts {(pause, restarts)} -> {now}"
            ready = all(c["ready"] for c in pod["status"]["containerStatuses"])
            if ready:
                ready_seen.add(name)
            assert ready or name not in ready_seen, f"{name} became unready"
        if time.monotonic() > until:
            break
        time.sleep(2)
    assert ready_seen == set(base)
