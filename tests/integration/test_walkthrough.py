"""The walkthrough users come with (/work/shared/docs/walkthrough.md), with the real kubectl, on real images.

docker.io is mirrored to the session registry (tests/testimages.py: Debian nginx as ``library/nginx:1.14``,
busybox), so ``pod-label.yml``, ``pod-nodeselector.yml`` and ``nginx-pod-liveness.yml`` from examples/ run exactly
as the walkthrough prints them (no ``command``), answer HTTP 200 from nginx on port 80 of the pod IP, and the
liveness probe restarts the container when nginx stops serving. Taken over from test_kubectl.py, whose
walkthrough tests ran host programs until images landed.
"""

from __future__ import annotations

import re
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import DaemonHarness, find_events, http_get, wait_pod
from tests.integration.test_kubectl import Kubectl, rows
from tests.testimages import (
    ImageRegistry,
    image_daemon,
    image_registry,  # noqa: F401 - the session fixture
)

pytestmark = pytest.mark.root

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WALKTHROUGH = Path("/work/shared/docs/walkthrough.md")
PULL_TIMEOUT = 90  # the first nginx pull (37 MB from loopback) and unpack take a few seconds
WELCOME = "<title>Welcome to nginx!</title>"


@pytest.fixture
def daemon(run_id: str, image_registry: ImageRegistry, tmp_path: Path) -> Iterator[DaemonHarness]:  # noqa: F811
    with image_daemon(run_id, image_registry, tmp_path, prefix="walk") as harness:
        yield harness


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def serves(ip: str, port: int = 80) -> str:
    """The body of GET / on the pod IP (urllib raises unless 2xx/3xx, so a return means HTTP 200 here)."""
    return http_get(f"http://{ip}:{port}/", timeout=2)


def wait_serving(daemon: DaemonHarness, ip: str, port: int = 80, marker: str = WELCOME) -> None:
    daemon.wait_for(lambda: marker in serves(ip, port), 30, f"HTTP 200 from {ip}:{port}")


def restarts(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["restartCount"])


@pytest.mark.skipif(not WALKTHROUGH.exists(), reason="the walkthrough text is not on this machine")
def test_examples_are_the_walkthrough_files() -> None:
    """examples/ carries the walkthrough's three files exactly as it prints them."""
    blocks = re.findall(r"```yaml\n(.*?)```", WALKTHROUGH.read_text(), re.S)
    names = ["pod-label.yml", "pod-nodeselector.yml", "nginx-pod-liveness.yml"]
    assert len(blocks) == len(names)
    for name, block in zip(names, blocks, strict=True):
        assert (EXAMPLES / name).read_text() == block, name
        assert "command" not in block


def test_walkthrough_labels(kubectl: Kubectl, daemon: DaemonHarness, image_registry: ImageRegistry) -> None:  # noqa: F811
    assert kubectl("create", "-f", "pod-label.yml", cwd=EXAMPLES).strip() == "pod/examlabel created"
    assert (daemon.manifests / "default_examlabel.yaml").stat().st_mode & 0o777 == 0o644
    for name in ("redis-pod", "nginx-pod", "label-pod"):
        assert kubectl("create", "-f", f"{name}.yml", cwd=EXAMPLES).strip() == f"pod/{name} created"
    dup = kubectl.run("create", "-f", "pod-label.yml", check=False, cwd=EXAMPLES)
    assert dup.returncode == 1
    assert (
        'Error from server (AlreadyExists): error when creating "pod-label.yml": pods "examlabel" already exists'
        in dup.stderr
    )
    for name in ("examlabel", "redis-pod", "nginx-pod", "label-pod"):
        daemon.wait_running(name, timeout=PULL_TIMEOUT)

    # nginx from the image, unchanged manifests: HTTP 200 on port 80 of each pod IP
    for name in ("examlabel", "nginx-pod", "label-pod"):
        pod = kubectl.pod(name)
        status = pod["status"]["containerStatuses"][0]
        assert status["image"] == "docker.io/library/nginx:1.14"
        assert status["imageID"] == image_registry.image_id("library/nginx:1.14")
        assert "command" not in pod["spec"]["containers"][0]
        wait_serving(daemon, pod["status"]["podIP"])
    # one pull for the three pods of nginx:1.14 (single-flight); the others found it present
    pulled = [e["message"] for n in ("examlabel", "nginx-pod", "label-pod") for e in find_events(daemon, n, "Pulled")]
    assert len([m for m in pulled if m.startswith('Successfully pulled image "nginx:1.14"')]) >= 1
    assert all(
        m.startswith('Successfully pulled image "nginx:1.14"')
        or m == 'Container image "nginx:1.14" already present on machine'
        for m in pulled
    ), pulled

    table = rows(kubectl("get", "pod"))
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert {r[0] for r in table[1:]} == {"examlabel", "label-pod", "nginx-pod", "redis-pod"}
    assert all(r[1:4] == ["1/1", "Running", "0"] and re.fullmatch(r"\d+s", r[4]) for r in table[1:])

    shown = {r[0]: r[-1] for r in rows(kubectl("get", "pod", "--show-labels"))[1:]}
    assert shown["examlabel"] == "app=web,name=nginx,type=frontend"
    assert shown["redis-pod"] == "<none>"
    assert shown["label-pod"] == "app=label-demo"
    assert rows(kubectl("get", "pod", "-L", "app"))[0][-1] == "APP"

    redis_pid = daemon.container_pid("redis-pod", "redis")
    redis_uid = kubectl.pod("redis-pod")["metadata"]["uid"]
    assert kubectl("label", "pod", "redis-pod", "app=db").strip() == "pod/redis-pod labeled"
    assert kubectl("label", "pod", "nginx-pod", "app=web-services", "type=frontend").strip() == "pod/nginx-pod labeled"
    refused = kubectl.run("label", "pod", "label-pod", "app=web-services", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: 'app' already has a value (label-demo), and --overwrite is false"
    assert kubectl("label", "pod", "label-pod", "app=web-services", "--overwrite").strip() == "pod/label-pod labeled"

    # a label-only change rewrites the file but keeps the pod: same uid, same process, no restart
    assert "app: db" in (daemon.manifests / "default_redis-pod.yaml").read_text()
    pod = kubectl.pod("redis-pod")
    assert pod["metadata"]["uid"] == redis_uid and pod["metadata"]["labels"] == {"app": "db"}
    assert daemon.container_pid("redis-pod", "redis") == redis_pid
    assert restarts(pod) == 0

    table = rows(kubectl("get", "pod", "-L", "app,type"))
    assert table[0][-2:] == ["APP", "TYPE"]
    by_name = {r[0]: r for r in table[1:]}
    assert by_name["nginx-pod"][-2:] == ["web-services", "frontend"]
    assert by_name["examlabel"][-2:] == ["web", "frontend"]
    assert [r[0] for r in rows(kubectl("get", "pod", "--selector", "app=db"))[1:]] == ["redis-pod"]
    picked = [r[0] for r in rows(kubectl("get", "pod", "-l", "app in (db,web-services),type!=x"))[1:]]
    assert picked == ["label-pod", "nginx-pod", "redis-pod"]
    assert [r[0] for r in rows(kubectl("get", "pod", "-l", "!type"))[1:]] == ["label-pod", "redis-pod"]

    wide = rows(kubectl("get", "pod", "redis-pod", "-o", "wide"))
    assert wide[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert wide[1][5] == pod["status"]["podIP"] and wide[1][6:] == [daemon.node_name, "<none>", "<none>"]
    listed = yaml.safe_load(kubectl("get", "pod", "-o", "yaml"))
    assert listed["kind"] == "List" and len(listed["items"]) == 4

    described = kubectl("describe", "pod", "redis-pod")
    assert re.search(r"Status:\s+Running", described) and "Labels:       app=db" in described
    assert re.search(r"Image:\s+redis:7", described)
    assert re.search(r"Image ID:\s+docker\.io/library/redis@sha256:[0-9a-f]{64}", described)
    assert re.search(
        r"Normal\s+Started\s+\S+\s+minikubelet\s+spec.containers\{redis\}: Started container redis", described
    )

    # delete by name, by label, all: files go, pods go
    out = kubectl("delete", "pod", "redis-pod")
    assert out.strip() == 'pod "redis-pod" deleted from default namespace'
    assert not (daemon.manifests / "default_redis-pod.yaml").exists()
    assert kubectl("delete", "pod", "-l", "app=web-services").count("deleted") == 2
    assert kubectl("delete", "pod", "--all").strip() == 'pod "examlabel" deleted from default namespace'
    nothing = kubectl.run("get", "pod")
    assert nothing.stdout == "" and nothing.stderr.strip() == "No resources found in default namespace."
    assert sorted(p.name for p in daemon.manifests.iterdir()) == []


def test_node_labels_and_node_selector(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    node = daemon.node_name
    table = rows(kubectl("get", "nodes", "--show-labels"))
    assert table[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "LABELS"]
    labels = dict(kv.split("=") for kv in table[1][5].split(","))
    arch = rows(kubectl("get", "nodes", "-L", "beta.kubernetes.io/arch"))
    assert arch[0][-1] == "ARCH" and arch[1][-1] == labels["kubernetes.io/arch"]

    assert kubectl("create", "-f", "pod-nodeselector.yml", cwd=EXAMPLES).strip() == "pod/nodeselector-pod created"
    time.sleep(1)
    pod = kubectl.pod("nodeselector-pod")
    assert pod["status"]["phase"] == "Pending"
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "False" and "(missing ssd=true)" in cond["message"]
    assert not find_events(daemon, "nodeselector-pod", "Pulling")  # an unschedulable pod pulls nothing

    assert kubectl("label", "node", node, "ssd=true").strip() == f"node/{node} labeled"
    assert rows(kubectl("get", "nodes", "-L", "ssd"))[1][-1] == "true"
    daemon.wait_running("nodeselector-pod", timeout=PULL_TIMEOUT)
    wide = rows(kubectl("get", "pod", "-o", "wide"))
    assert wide[1][:3] == ["nodeselector-pod", "1/1", "Running"] and wide[1][6] == node
    ip = kubectl.pod("nodeselector-pod")["status"]["podIP"]
    assert wide[1][5] == ip
    wait_serving(daemon, ip)
    pid = daemon.container_pid("nodeselector-pod", "nginx-container")

    # labels persist across a daemon restart (same --registries); the running pod keeps running and serving
    daemon.stop()
    daemon.start()
    assert rows(kubectl("get", "nodes", "-L", "ssd"))[1][-1] == "true"
    assert kubectl("label", "node", node, "ssd-").strip() == f"node/{node} unlabeled"
    time.sleep(1)
    assert daemon.container_pid("nodeselector-pod", "nginx-container") == pid
    assert kubectl.pod("nodeselector-pod")["status"]["phase"] == "Running"
    wait_serving(daemon, ip)
    assert kubectl("delete", "pod", "nodeselector-pod").strip().startswith('pod "nodeselector-pod" deleted')
    daemon.wait_gone("nodeselector-pod")


def test_liveness_restarts_nginx(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """nginx-pod-liveness.yml as written: serves; stopped nginx comes back; a failing probe (403 once the index
    is gone) restarts the container, whose fresh writable layer has the index again."""
    assert kubectl("create", "-f", "nginx-pod-liveness.yml", cwd=EXAMPLES).strip() == "pod/nginx-pod-liveness created"
    pod = daemon.wait_running("nginx-pod-liveness", timeout=PULL_TIMEOUT)
    ip = pod["status"]["podIP"]
    wait_serving(daemon, ip)
    assert restarts(pod) == 0

    # nginx -s stop: the master exits, the container ends, restartPolicy Always brings it back
    kubectl.run("exec", "nginx-pod-liveness", "--", "nginx", "-s", "stop", check=False)
    pod = wait_pod(daemon, "nginx-pod-liveness", lambda p: restarts(p) >= 1, 60, "a restart after nginx -s stop")
    daemon.wait_running("nginx-pod-liveness", timeout=60)
    wait_serving(daemon, ip)
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 0 and last["reason"] == "Completed"

    # nginx keeps running but answers 403 at /: the liveness probe fails 3 times (every 20 s) and the pod is
    # recreated (minikubelet recreates the whole pod, see README: new pause, maybe a new IP)
    pause0 = daemon.pause_pid("nginx-pod-liveness")
    kubectl("exec", "nginx-pod-liveness", "--", "rm", "/var/www/html/index.nginx-debian.html")
    daemon.wait_for(lambda: _status_of(ip) == "403", 10, "nginx answers 403 without an index")
    before = restarts(kubectl.pod("nginx-pod-liveness"))
    wait_pod(daemon, "nginx-pod-liveness", lambda p: restarts(p) > before, 120, "the liveness restart")
    unhealthy = [e["message"] for e in find_events(daemon, "nginx-pod-liveness", "Unhealthy")]
    assert "Liveness probe failed: HTTP probe failed with statuscode: 403" in unhealthy, unhealthy
    killing = [e["message"] for e in find_events(daemon, "nginx-pod-liveness", "Killing")]
    assert "Container nginx-container failed liveness probe, pod will be killed and re-created" in killing, killing
    pod = daemon.wait_running("nginx-pod-liveness", timeout=60)
    assert daemon.pause_pid("nginx-pod-liveness") != pause0
    wait_serving(daemon, pod["status"]["podIP"])  # a fresh writable layer: the image's index is back
    assert kubectl("delete", "pod", "nginx-pod-liveness").strip().startswith('pod "nginx-pod-liveness" deleted')
    daemon.wait_gone("nginx-pod-liveness")


def _status_of(ip: str) -> str:
    try:
        serves(ip)
        return "200"
    except urllib.error.HTTPError as e:
        return str(e.code)
