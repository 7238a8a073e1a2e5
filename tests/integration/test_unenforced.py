"""Fields accepted but not enforced are never silent (issue 12 point 4): an API write of such a pod gets one
``Warning: 299`` header per field, which the real kubectl prints, and the pod a Warning event (FieldNotEnforced),
also when it comes from a manifest file; a pod without them gets neither."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import DaemonHarness, pod_yaml, sh
from tests.integration.test_kubectl import Kubectl

pytestmark = pytest.mark.root

NOTE = "is accepted but not enforced by this node (minikubelet)"


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def container(name: str) -> dict[str, object]:
    c = sh(name, "sleep 1000")
    c.update(
        stdin=True,
        tty=True,
        resources={"limits": {"memory": "64Mi"}, "requests": {}},
        securityContext={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    )
    return c


def test_kubectl_create_prints_a_warning_per_field(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(pod_yaml("warned", [container("c")], tolerations=[{"operator": "Exists"}]))
    r = kubectl.run("create", "-f", str(path))
    warnings = sorted(line for line in r.stderr.splitlines() if line.startswith("Warning: "))
    assert warnings == sorted(f"Warning: {field} {NOTE}: {why}" for field, why in (
        ("spec.tolerations", "there are no taints on this node to tolerate"),
        ("spec.containers[0].securityContext.allowPrivilegeEscalation", "no_new_privs is not set yet"),
        ("spec.containers[0].securityContext.capabilities", "capabilities are not added or dropped yet"),
    )), r.stderr
    daemon.wait_running("warned")
    events = kubectl(
        "get", "events", "--field-selector", "involvedObject.name=warned,reason=FieldNotEnforced", "-o", "json"
    )
    messages = sorted(e["message"] for e in json.loads(events)["items"])
    assert len(messages) == 3 and all(NOTE in m for m in messages), messages  # stdin and tty are enforced now
    assert "Warning: spec.containers[0].capabilities" not in r.stderr
    assert "Warning: spec.containers[0].securityContext.capabilities" in kubectl.run("label", "pod", "warned",
                                                                                   "a=b").stderr


def test_manifest_file_pod_gets_events(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    daemon.write("filepod.json", pod_yaml("filepod", [container("c")]))
    daemon.wait_running("filepod")
    out = kubectl("describe", "pod", "filepod")
    assert "FieldNotEnforced" in out and "spec.containers[0].securityContext.capabilities " + NOTE in out, out
    assert "spec.containers[0].tty " + NOTE not in out, out


def test_plain_pod_gets_no_warning(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    r = kubectl.run(
        "run",
        "plain",
        "--image=busybox",
        "--restart=Never",
        "--annotations=minikubelet.io/node-filesystem=true",
        "--command",
        "--",
        "sleep",
        "1000",
    )
    assert "Warning" not in r.stderr, r.stderr
    daemon.wait_running("plain")
    assert "FieldNotEnforced" not in kubectl("get", "events")
