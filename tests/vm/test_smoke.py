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
