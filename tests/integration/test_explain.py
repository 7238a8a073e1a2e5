"""kubectl explain against the daemon's OpenAPI v3 (api/openapi.py), and client-side apply still merging lists by
their keys as against a cluster (serving schemas must not change the patches kubectl computes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import NODE_FS, DaemonHarness
from tests.integration.test_kubectl import LOOP, Kubectl

pytestmark = pytest.mark.root


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def fields(out: str) -> dict[str, str]:
    """explain's FIELDS section: field name -> its <type> (and -required-)."""
    found = {}
    for line in out.split("FIELDS:", 1)[1].splitlines():
        if line.startswith("  ") and not line.startswith("    ") and "\t" in line:
            name, _, rest = line.strip().partition("\t")
            found[name] = rest
    return found


def test_explain_pod_and_node(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pod")
    assert out.startswith("KIND:       Pod\nVERSION:    v1\n")
    assert "manifest directory" in out
    assert fields(out) == {
        "apiVersion": "<string>",
        "kind": "<string>",
        "metadata": "<ObjectMeta>",
        "spec": "<PodSpec>",
        "status": "<Object>",
    }

    spec = kubectl("explain", "pods.spec")  # the plural, as users type it
    assert "FIELD: spec <PodSpec>" in spec
    f = fields(spec)
    assert f["containers"] == "<[]Container> -required-"
    assert f["nodeSelector"] == "<map[string]string>"
    assert f["restartPolicy"].startswith("<string>")
    assert "enum: Always, Never, OnFailure" in spec
    assert "minikubelet refuses this field when it is set: affinity" in spec

    port = kubectl("explain", "po.spec.containers.livenessProbe.httpGet.port")
    assert "FIELD: port <IntOrString>" in port
    probe = kubectl("explain", "pod.spec.containers.readinessProbe")
    assert {"exec", "httpGet", "tcpSocket", "periodSeconds", "failureThreshold"} <= set(fields(probe))

    recursive = kubectl("explain", "pod.spec.containers", "--recursive")
    assert "\n    name\t<string> -required-\n" in recursive  # env[].name, one level down

    node = kubectl("explain", "node.status")
    assert node.startswith("KIND:       Node\n")
    assert {"capacity", "allocatable", "conditions", "addresses", "nodeInfo"} <= set(fields(node))

    missing = kubectl.run("explain", "pod.spec.nope", check=False)
    assert missing.returncode != 0
    assert 'field "nope" does not exist' in missing.stderr


def two_containers(env: dict[str, str], ports: list[int]) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "merge", "annotations": NODE_FS},
        "spec": {
            "containers": [
                {"name": "a", "image": "busybox", "command": LOOP, "ports": [{"containerPort": p} for p in ports]},
                {
                    "name": "b",
                    "image": "busybox",
                    "command": LOOP,
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                },
            ]
        },
    }
    return yaml.safe_dump(doc)


def test_client_side_apply_merges_lists_by_key(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    f = tmp_path / "merge.yaml"
    f.write_text(two_containers({"A": "1", "B": "2"}, [80, 81]))
    kubectl("apply", "-f", str(f))
    daemon.wait_running("merge")
    # someone else adds an env var by hand (kubectl set env would): apply must keep it, as on a cluster
    kubectl(
        "patch",
        "pod",
        "merge",
        "-p",
        json.dumps({"spec": {"containers": [{"name": "b", "env": [{"name": "EXTRA", "value": "x"}]}]}}),
    )
    f.write_text(two_containers({"A": "1", "B": "3"}, [80]))
    r = kubectl.run("apply", "-f", str(f))
    assert "warning" not in r.stderr.lower(), r.stderr
    daemon.wait_for(
        lambda: (
            (p := daemon.pod("merge"))
            and p["spec"]["containers"][1].get("env")
            and {e["name"] for e in p["spec"]["containers"][1]["env"]} == {"A", "B", "EXTRA"}
            and p["metadata"]["uid"]
        ),
        what="the applied spec",
    )
    pod = kubectl.pod("merge")
    a, b = pod["spec"]["containers"]
    assert [p["containerPort"] for p in a["ports"]] == [80]
    assert {e["name"]: e["value"] for e in b["env"]} == {"A": "1", "B": "3", "EXTRA": "x"}
