"""More of kubectl against a real daemon: ``apply --server-side``, ``patch`` (json, merge, strategic), ``get nodes -w``
and ``get events -w``, and hand-written manifest files that keep their comments when the API rewrites them.

Each test checks what kubectl prints (as a real cluster prints it) and what ends up in the manifest directory.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.harness import BUSYBOX, NODE_FS, DaemonHarness
from tests.integration.test_kubectl import Kubectl, loop_pod

pytestmark = pytest.mark.root

LOOP = "trap 'exit 0' TERM; while true; do sleep 1; done"
HAND_WRITTEN = f"""# Pods of the team, kept under version control.
apiVersion: v1
kind: Pod
metadata:
  name: first      # the name stays
  annotations:
    minikubelet.io/node-filesystem: "true"   # busybox of the node, not the image
  labels:
    app: web       # what the service selects
spec:
  containers:
    # the only container
    - name: main
      image: busybox
      command: ["{BUSYBOX}", "sh", "-c", "{LOOP}"]
---
# the second pod: nobody touches it
apiVersion: v1
kind: Pod
metadata: {{name: second, annotations: {{minikubelet.io/node-filesystem: "true"}}}}   # flow style
spec:
  containers:
  - {{name: main, image: busybox, command: ["{BUSYBOX}", "sh", "-c", "{LOOP}"]}}
"""
SECOND_DOC = HAND_WRITTEN[HAND_WRITTEN.index("---\n") :]


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


class Lines:
    """The stdout lines of a running ``kubectl get -w``, read by a thread so a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, what: str, check: object, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if callable(check) and check(line)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"kubectl never printed {what}; it printed {self.lines}")

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def test_server_side_apply_creates_then_merges(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yml"
    manifest.write_text(loop_pod("ssa", tier="backend"))
    assert kubectl("apply", "--server-side", "-f", str(manifest)).strip() == "pod/ssa serverside-applied"
    stored = daemon.manifests / "default_ssa.yaml"
    assert yaml.safe_load(stored.read_text())["metadata"] == {
        "name": "ssa",
        "namespace": "default",
        "labels": {"tier": "backend"},
        "annotations": NODE_FS,
    }
    daemon.wait_running("ssa")
    uid, pid = kubectl.pod("ssa")["metadata"]["uid"], daemon.container_pid("ssa", "main")

    # a label-only change: no restart; the applied config owns what it names, labels set elsewhere stay
    kubectl("label", "pod", "ssa", "team=a")
    manifest.write_text(loop_pod("ssa", tier="frontend", app="db"))
    assert kubectl("apply", "--server-side", "-f", str(manifest)).strip() == "pod/ssa serverside-applied"
    pod = kubectl.pod("ssa")
    assert pod["metadata"]["labels"] == {"tier": "frontend", "app": "db", "team": "a"}
    assert pod["metadata"]["uid"] == uid and daemon.container_pid("ssa", "main") == pid
    assert yaml.safe_load(stored.read_text())["metadata"]["labels"] == {"tier": "frontend", "team": "a", "app": "db"}
    assert kubectl("apply", "--server-side", "-f", str(manifest)).strip() == "pod/ssa serverside-applied"

    # refused changes leave the file alone
    before = stored.read_bytes()
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["restartPolicy"] = "Sometimes"
    manifest.write_text(yaml.safe_dump(doc))
    bad = kubectl.run("apply", "--server-side", "-f", str(manifest), check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith('The Pod "ssa" is invalid: spec.restartPolicy: Unsupported value: "Sometimes"')
    doc["spec"].pop("restartPolicy")
    doc["spec"]["containers"][0]["imagee"] = "x"
    manifest.write_text(yaml.safe_dump(doc))
    typo = kubectl.run("apply", "--server-side", "-f", str(manifest), check=False)
    assert typo.returncode == 1 and 'unknown field "spec.containers[0].imagee"' in typo.stderr
    doc["spec"]["containers"][0].pop("imagee")
    doc["metadata"]["name"] = "Bad_Name"
    manifest.write_text(yaml.safe_dump(doc))
    assert kubectl.run("apply", "--server-side", "-f", str(manifest), check=False).returncode == 1
    assert stored.read_bytes() == before
    assert sorted(p.name for p in daemon.manifests.iterdir()) == ["default_ssa.yaml"]

    # a spec change recreates the pod, as an edit of the file does
    doc["metadata"]["name"] = "ssa"
    doc["spec"]["containers"][0]["env"] = [{"name": "GREETING", "value": "hi"}]
    manifest.write_text(yaml.safe_dump(doc))
    assert kubectl("apply", "--server-side", "-f", str(manifest)).strip() == "pod/ssa serverside-applied"
    assert kubectl.pod("ssa")["metadata"]["uid"] != uid
    assert "GREETING" in stored.read_text()


def test_patch_json_merge_strategic(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    daemon.write("mine.yaml", HAND_WRITTEN)
    daemon.wait_running("first")
    daemon.wait_running("second")
    path = daemon.manifests / "mine.yaml"
    uid, pid = kubectl.pod("first")["metadata"]["uid"], daemon.container_pid("first", "main")

    add = '[{"op":"add","path":"/metadata/labels/x","value":"y"}]'
    assert kubectl("patch", "pod", "first", "--type=json", "-p", add).strip() == "pod/first patched"
    escaped = (
        '[{"op":"test","path":"/metadata/labels/x","value":"y"},'
        '{"op":"add","path":"/metadata/labels/app.kubernetes.io~1name","value":"shop"},'
        '{"op":"copy","from":"/metadata/labels/app","path":"/metadata/labels/copied"},'
        '{"op":"move","from":"/metadata/labels/copied","path":"/metadata/labels/moved"},'
        '{"op":"replace","path":"/metadata/labels/app","value":"api"},'
        '{"op":"remove","path":"/metadata/labels/x"}]'
    )
    assert kubectl("patch", "pod", "first", "--type=json", "-p", escaped).strip() == "pod/first patched"
    labels = {"app": "api", "app.kubernetes.io/name": "shop", "moved": "web"}
    assert kubectl.pod("first")["metadata"]["labels"] == labels
    assert list(yaml.safe_load_all(path.read_text()))[0]["metadata"]["labels"] == labels

    failed = kubectl.run(
        "patch",
        "pod",
        "first",
        "--type=json",
        "-p",
        '[{"op":"test","path":"/metadata/labels/app","value":"nope"}]',
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "The request is invalid: the server rejected our request due to an error in our request"
    )
    missing = kubectl.run(
        "patch",
        "pod",
        "first",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/annotations/none"}]',
        check=False,
    )
    assert missing.returncode == 1 and "The request is invalid" in missing.stderr
    garbage = kubectl.run("patch", "pod", "first", "--type=json", "-p", '{"op":"add"}', check=False)
    assert garbage.returncode == 1 and "Error from server (BadRequest)" in garbage.stderr

    assert (
        kubectl("patch", "pod", "first", "--type=merge", "-p", '{"metadata":{"labels":{"moved":null,"m":"1"}}}').strip()
        == "pod/first patched"
    )
    assert (
        kubectl("patch", "pod", "first", "--type=strategic", "-p", '{"metadata":{"annotations":{"note":"hi"}}}').strip()
        == "pod/first patched"
    )
    assert (
        kubectl("patch", "pod", "first", "-p", '{"metadata":{"labels":{"m":"1"}}}').strip()
        == "pod/first patched (no change)"
    )
    pod = kubectl.pod("first")
    assert pod["metadata"]["labels"] == {"app": "api", "app.kubernetes.io/name": "shop", "m": "1"}
    assert pod["metadata"]["annotations"]["note"] == "hi"
    assert pod["metadata"]["uid"] == uid and daemon.container_pid("first", "main") == pid

    # the file keeps its comments, layout and the other document
    text = path.read_text()
    for kept in (
        "# Pods of the team, kept under version control.",
        "name: first      # the name stays",
        "# the only container",
        "    - name: main",
    ):
        assert kept in text
    assert text.endswith(SECOND_DOC)

    # a JSON patch of the spec goes to the file too (recreating the pod), defaults and status do not
    assert (
        kubectl(
            "patch",
            "pod",
            "first",
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:1.36"}]',
        ).strip()
        == "pod/first patched"
    )
    assert kubectl.pod("first")["metadata"]["uid"] != uid
    first = list(yaml.safe_load_all(path.read_text()))[0]
    assert first["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert "status" not in first and "imagePullPolicy" not in first["spec"]["containers"][0]
    assert path.read_text().endswith(SECOND_DOC)


def test_watch_nodes_and_events(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    node = daemon.node_name
    nodes = Lines(kubectl.popen("get", "nodes", "-w", "-L", "ssd"))
    events = Lines(kubectl.popen("get", "events", "-w"))
    try:
        nodes.wait("the node row", lambda line: line.split()[:2] == [node, "Ready"])
        assert kubectl("label", "node", node, "ssd=true").strip() == f"node/{node} labeled"
        nodes.wait(
            "a new row with the label", lambda line: line.split()[:2] == [node, "Ready"] and line.split()[-1] == "true"
        )
        daemon.write("watched.yaml", loop_pod("watched"))
        daemon.wait_running("watched")
        started = events.wait("the Started event", lambda line: "pod/watched" in line and "Started" in line)
        assert "Started container main" in started[0]
        assert events.lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert nodes.proc.poll() is None and events.proc.poll() is None  # the streams stay open
    finally:
        nodes.stop()
        events.stop()

    # the raw watch: one JSON object per line, resourceVersions increasing
    listed = json.loads(kubectl("get", "--raw", "/api/v1/namespaces/default/events"))
    watcher = kubectl.popen(
        "get",
        "--raw",
        f"/api/v1/namespaces/default/events?watch=true&resourceVersion={listed['metadata']['resourceVersion']}",
    )
    raw = Lines(watcher)
    try:
        kubectl("delete", "pod", "watched")
        daemon.write("other.yaml", loop_pod("other"))
        raw.wait("three events", lambda line: len(raw.lines) >= 3)
        reasons = [json.loads(line)["object"]["reason"] for line in raw.lines]
        assert reasons[0] == "Killing" and "Started" in reasons
        versions = [int(json.loads(line)["object"]["metadata"]["resourceVersion"]) for line in raw.lines]
        assert versions == sorted(versions) and versions[0] > int(listed["metadata"]["resourceVersion"])
        assert all(json.loads(line)["type"] in ("ADDED", "MODIFIED") for line in raw.lines)
    finally:
        raw.stop()


def test_hand_written_file_keeps_comments(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    daemon.write("mine.yaml", HAND_WRITTEN)
    daemon.wait_running("first")
    daemon.wait_running("second")
    path = daemon.manifests / "mine.yaml"
    pid = daemon.container_pid("first", "main")

    assert kubectl("label", "pod", "first", "team=a").strip() == "pod/first labeled"
    text = path.read_text()
    assert text == HAND_WRITTEN.replace(
        "    app: web       # what the service selects\n",
        "    app: web       # what the service selects\n    team: a\n",
    )
    assert kubectl("label", "pod", "second", "on=yes").strip() == "pod/second labeled"
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs[0]["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert docs[1]["metadata"]["labels"] == {"on": "yes"}  # quoted: YAML 1.1 would read a plain on/yes as true
    assert (
        'metadata: {name: second, annotations: {minikubelet.io/node-filesystem: "true"}, labels: {"on": "yes"}} '
        "# flow style\n" in path.read_text()
    )

    # client-side apply of the first pod (label change) keeps the comments too
    applied = tmp_path / "first.yml"
    doc = next(yaml.safe_load_all(HAND_WRITTEN))
    doc["metadata"]["labels"] = {"app": "shop", "team": "a"}
    applied.write_text(yaml.safe_dump(doc))
    assert kubectl("apply", "-f", str(applied)).strip() == "pod/first configured"
    text = path.read_text()
    assert "  labels:\n    app: shop      # what the service selects\n    team: a\n" in text
    assert "# Pods of the team, kept under version control." in text and "# the only container" in text
    assert daemon.container_pid("first", "main") == pid

    # deleting the second pod removes its document only
    kubectl("delete", "pod", "second")
    text = path.read_text()
    assert "second" not in text and "# the only container" in text
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(text)] == ["first"]
    assert daemon.container_pid("first", "main") == pid


def test_prober_metrics_through_the_node_proxy_path(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """As on a cluster: kubectl get --raw /api/v1/nodes/NODE/proxy/metrics/probes (the kubelet's /metrics/probes)."""
    text = kubectl("get", "--raw", f"/api/v1/nodes/{daemon.node_name}/proxy/metrics/probes")
    assert "# TYPE prober_probe_total counter" in text.splitlines()
    assert any(line.startswith("process_start_time_seconds ") for line in text.splitlines())
    missing = kubectl.run("get", "--raw", "/api/v1/nodes/nope/proxy/metrics/probes", check=False)
    assert missing.returncode == 1 and 'nodes "nope" not found' in missing.stderr, missing.stderr
