"""Every file in examples/ is a valid manifest (users copy them as they are), runs on its image (no
node-filesystem annotation), and the walkthrough's nginx files carry no ``command``: nginx:1.14 runs as written.
tests/integration/test_examples_serve.py starts each one for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from minikubelet.manifests.manifest import load_pods
from minikubelet.pod.rootfs import NODE_FILESYSTEM

EXAMPLES = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "examples").iterdir() if p.suffix in (".yaml", ".yml", ".json")
)
NGINX_EXAMPLES = {"pod-label.yml", "pod-nodeselector.yml", "nginx-pod-liveness.yml", "nginx-pod.yml", "label-pod.yml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_loads(path: Path) -> None:
    pods = load_pods(str(path), path.read_bytes(), "node1")
    assert pods, f"{path.name} defines no pod"
    for pod in pods:
        assert NODE_FILESYSTEM not in pod.annotations, f"{path.name}: examples run on their images"
        for c in (*pod.spec.init_containers, *pod.spec.containers):
            assert c.image, f"{path.name}: container {c.name} names no image"
            if path.name in NGINX_EXAMPLES:
                assert c.image == "nginx:1.14" and not c.command and not c.args, f"{path.name}: nginx as written"
