"""Smoke test in the vm-test guest: the machine is what users run (systemd, cgroup v2 only, no network) and a pod
with a readiness probe comes up Ready and answers on its pod IP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import DaemonHarness, http_get, httpd, pod_yaml, www_root

pytestmark = [pytest.mark.root, pytest.mark.vmsmoke]


def test_guest_is_systemd_cgroup_v2_without_network() -> None:
    assert Path("/proc/1/comm").read_text().strip() == "systemd"
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    assert [m[2] for m in mounts if m[1] == "/sys/fs/cgroup"] == ["cgroup2"]
    assert not any(m[2] == "cgroup" for m in mounts), "a cgroup v1 hierarchy is mounted"
    links = [p.name for p in Path("/sys/class/net").iterdir()]
    assert links == ["lo"] or set(links) <= {"lo"} | {n for n in links if n.startswith("mk")}, links


def test_pod_with_probe_becomes_ready_and_answers(daemon: DaemonHarness) -> None:
    root = www_root("mk-vmsmoke-")
    try:
        web = httpd(port=8080, root=str(root / "www"))
        web["readinessProbe"] = {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
        daemon.write("web.yaml", pod_yaml("web", [web]))

        def ready() -> dict[str, object] | None:
            p = daemon.pod("web")
            conds = {c["type"]: c["status"] for c in (p or {}).get("status", {}).get("conditions", [])}
            return p if conds.get("Ready") == "True" else None

        pod = daemon.wait_for(ready, timeout=60, what="pod web Ready")
        assert http_get(f"http://{pod['status']['podIP']}:8080/index.html") == "ok\n"
        daemon.remove("web.yaml")
        daemon.wait_gone("web")
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    assert json.loads(daemon.get_text("/pods"))["items"] == []


def test_pod_on_an_image_with_a_probe_becomes_ready_and_answers(run_id: str, tmp_path: Path) -> None:
    """busybox pulled from a loopback registry (the guest's docker-registry) mirrored as docker.io, on an overlay
    root, with a readiness probe: what users run, on the machine they run it on (cgroup v2, systemd)."""
    from tests.testimages import INDEX_HTML, image_daemon, image_pod, serving_registry

    with serving_registry(debian=False) as served, image_daemon(run_id, served, tmp_path, prefix="vmimg") as daemon:
        web = {"name": "web", "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
               "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
               "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}
        daemon.write("web.yaml", image_pod("web", [web]))

        def ready() -> dict[str, object] | None:
            p = daemon.pod("web")
            conds = {c["type"]: c["status"] for c in (p or {}).get("status", {}).get("conditions", [])}
            return p if conds.get("Ready") == "True" else None

        pod = daemon.wait_for(ready, timeout=180, what="pod web on its image Ready")
        status = pod["status"]  # type: ignore[index]
        assert status["containerStatuses"][0]["imageID"].startswith("docker.io/library/busybox@sha256:")
        assert status["qosClass"] == "Guaranteed"
        assert http_get(f"http://{status['podIP']}:8080/index.html") == INDEX_HTML
        daemon.remove("web.yaml")
        daemon.wait_gone("web")
