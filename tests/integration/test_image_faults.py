"""Image faults at the pod level: the daemon SIGKILLed mid-pull (no corrupt image, the restarted daemon completes
the pull and the pod runs), a wrong registry password (a clear ErrImagePull), and reset with pods running on
images (no overlay, tmpfs or upper directory left)."""

from __future__ import annotations

import signal
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import DaemonHarness, running_daemon, wait_pod
from tests.oci import Pusher
from tests.registry import running_registry, slow_proxy
from tests.testimages import busybox_image, image_pod, push_debian, write_registries

pytestmark = pytest.mark.root

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Host:
    host: str


def waiting_reason(daemon: DaemonHarness, name: str) -> str:
    p = daemon.pod(name)
    statuses = (p or {}).get("status", {}).get("containerStatuses") or [{}]
    return str(statuses[0].get("state", {}).get("waiting", {}).get("reason", ""))


def test_daemon_killed_mid_pull_then_the_pull_completes_and_nginx_serves(run_id: str, tmp_path: Path) -> None:
    with running_registry("anonymous") as reg:
        push_debian(reg, {})
        with slow_proxy(reg.url, chunk=256 << 10, delay=0.05) as proxy:  # ~5 MB/s: the 30 MB layer takes seconds
            regs = write_registries(tmp_path / "registries.yaml", Host(proxy))  # type: ignore[arg-type]
            with running_daemon(run_id, prefix="midpull", extra_flags=["--registries", str(regs)]) as daemon:
                daemon.write("web.yaml", image_pod("web", [{"name": "nginx", "image": "nginx:1.14"}]))
                partials = daemon.data_dir / "images"

                def downloading() -> bool:  # images/store.py: <images>/ingest/<hex>.partial while a blob streams
                    return any(p.stat().st_size > 1 << 20 for p in partials.rglob("*.partial"))

                daemon.wait_for(downloading, 60, "a layer half downloaded")
                daemon.stop(signal.SIGKILL)
                refs = daemon.data_dir / "images" / "refs.json"
                assert not refs.exists() or "nginx" not in refs.read_text()  # nothing looks complete
                daemon.start()
                pod = daemon.wait_running("web", timeout=180)
                ip = pod["status"]["podIP"]
                body = daemon.wait_for(lambda: _DIRECT.open(f"http://{ip}/", timeout=2).read(), 30, "nginx serving")
                assert b"nginx" in body.lower()


def test_wrong_password_is_a_clear_err_image_pull(run_id: str, tmp_path: Path) -> None:
    with running_registry("htpasswd") as reg:
        Pusher(reg.url, reg.username, reg.password).image("library/busybox", "1.36", busybox_image())
        regs = tmp_path / "registries.yaml"
        write_registries(regs, reg)
        regs.write_text(regs.read_text() + f'configs:\n  "{reg.host}":\n    auth: {{username: {reg.username}, '
                        "password: wrong}\n")
        with running_daemon(run_id, prefix="badpw", extra_flags=["--registries", str(regs)]) as daemon:
            daemon.write("bb.yaml", image_pod("bb", [{"name": "main", "image": "busybox:1.36",
                                                       "command": ["sleep", "60"]}]))
            p = wait_pod(daemon, "bb", lambda p: waiting_reason(daemon, "bb") == "ErrImagePull", 60, "ErrImagePull")
            message = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            assert "401 Unauthorized" in message and "docker.io/library/busybox:1.36" in message, message


def test_reset_with_image_pods_running_leaves_nothing(run_id: str, tmp_path: Path) -> None:
    with running_registry("anonymous") as reg:
        Pusher(reg.url).image("library/busybox", "1.36", busybox_image())
        regs = write_registries(tmp_path / "registries.yaml", reg)
        with running_daemon(run_id, prefix="imgreset", extra_flags=["--registries", str(regs)]) as daemon:
            vol = {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}
            main = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "600"],
                    "volumeMounts": [{"name": "mem", "mountPath": "/m"}]}
            daemon.write("a.yaml", image_pod("a", [main], volumes=[vol]))
            daemon.wait_running("a", timeout=60)
            mounts = [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if str(daemon.run_dir) in m
                      or str(daemon.data_dir) in m]
            assert mounts, "the pod's shm and Memory emptyDir are host tmpfs mounts"
            daemon.stop()
            result = daemon.reset()
            assert result.returncode == 0, result.stderr
            left = [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if str(daemon.run_dir) in m
                    or str(daemon.data_dir) in m]
            assert left == []
            assert not (daemon.data_dir / "pods").exists()
