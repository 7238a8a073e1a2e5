"""Every file in examples/ is a valid manifest (users copy them as they are)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minikubelet.manifests.manifest import load_pods

EXAMPLES = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "examples").iterdir() if p.suffix in (".yaml", ".yml", ".json")
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_loads(path: Path) -> None:
    pods = load_pods(str(path), path.read_bytes(), "node1")
    assert pods, f"{path.name} defines no pod"
    for pod in pods:
        for c in (*pod.spec.init_containers, *pod.spec.containers):
            assert c.command, f"{path.name}: container {c.name} needs a command until images are supported"
