"""Refused manifest files reach kubectl users (issue 12 point 7): a Warning event on the Node, reason FailedManifest,
whose message names the file, the line and the field, and ``kubectl describe node`` lists the refused files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import DaemonHarness
from tests.integration.test_kubectl import Kubectl

pytestmark = pytest.mark.root

BAD = """apiVersion: v1
kind: Pod
metadata:
  name: bad
spec:
  restartPolicy: Sometimes
  containers:
    - name: c
      command: ["sleep", "100"]
"""


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def test_refused_file_is_a_node_event_and_listed_by_describe(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    path = daemon.write("bad.yaml", BAD)
    node = kubectl("get", "nodes", "-o", "name").strip().removeprefix("node/")

    def event_line() -> str | None:
        out = kubectl("get", "events", "--field-selector", "reason=FailedManifest")
        return next((line for line in out.splitlines() if "FailedManifest" in line), None)

    line = daemon.wait_for(event_line, 20, "a FailedManifest event")
    assert "Warning" in line and f"node/{node}" in line, line
    assert str(path) in line and "line 6" in line and "spec.restartPolicy" in line, line

    described = kubectl("describe", "node", node)
    assert "minikubelet.io/refused-manifests: " + str(path) in described, described
    events = described[described.index("Events:"):]
    assert "FailedManifest" in events and str(path) in events, events

    daemon.remove("bad.yaml")
    daemon.wait_for(lambda: "refused-manifests" not in kubectl("describe", "node", node), 20, "the refusal cleared")
