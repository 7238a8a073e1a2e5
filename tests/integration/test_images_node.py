"""With a real daemon: `minikubelet images pull` fills the daemon's store, the Node lists it in status.images,
and kubectl is refused a malformed image naming spec.containers[0].image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import DaemonHarness, pod_yaml
from tests.integration.test_kubectl import Kubectl
from tests.oci import Pusher, build_image
from tests.registry import running_registry


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def test_node_status_images_and_invalid_image(kubectl: Kubectl, daemon: DaemonHarness, tmp_path: Path) -> None:
    with running_registry() as reg:
        img = build_image([{"f": b"node"}])
        Pusher(reg.url).image("library/app", "6", img)
        regs = tmp_path / "registries.yaml"
        regs.write_text(f"mirrors:\n  docker.io:\n    endpoint: ['http://{reg.host}']\n")
        regs.chmod(0o600)
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "minikubelet",
                "images",
                "pull",
                "--data-dir",
                str(daemon.data_dir),
                "--registries",
                str(regs),
                "--disable-default-registry-endpoint",
                "app:6",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
    node = json.loads(kubectl("get", "node", daemon.node_name, "-o", "json"))
    assert {
        "names": [f"docker.io/library/app@{img.manifest.digest}", "docker.io/library/app:6"],
        "sizeBytes": sum(len(b.data) for b in [*img.blobs, img.manifest]),
    } in node["status"]["images"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(pod_yaml("badimage", [{"name": "main", "image": "nginx::1", "command": ["true"]}]))
    r = kubectl.run("create", "-f", str(bad), check=False)
    assert r.returncode != 0
    assert 'spec.containers[0].image: Invalid value: "nginx::1": invalid reference format' in r.stderr
