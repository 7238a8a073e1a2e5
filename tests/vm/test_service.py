"""The systemd unit (scripts/minikubelet.service via scripts/install-service) in the vm-test guest:
`systemctl restart minikubelet` keeps the pods running (same pause pid, the pod still answers)."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, DaemonHarness, alive, http_get, httpd, pod_yaml, www_root

pytestmark = [pytest.mark.root, pytest.mark.systemd]

UNIT = Path("/etc/systemd/system/minikubelet.service")
DEFAULTS = Path("/etc/default/minikubelet")


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60, check=False)


def main_pid() -> int:
    return int(systemctl("show", "-p", "MainPID", "--value", "minikubelet").stdout.strip() or 0)


@contextlib.contextmanager
def service(run_id: str) -> Iterator[DaemonHarness]:
    """minikubelet installed and started as the systemd service, with a harness's unique flags; on exit the
    service is stopped and removed, the daemon reset and checked for leftovers."""
    root = Path(tempfile.mkdtemp(prefix=f"mk-{run_id}-svc-"))
    harness = DaemonHarness(root, run_id)
    DEFAULTS.write_text(f"MINIKUBELET_ARGS={shlex.quote(' '.join(harness.flags))}\n")
    pause_pids: list[int] = []
    try:
        done = subprocess.run([str(REPO / "scripts/install-service")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        harness.wait_for(harness._healthy, timeout=60, what="service /healthz")
        yield harness
    finally:
        pause_pids = harness.pod_processes()
        systemctl("disable", "--now", "minikubelet")
        result = harness.reset()
        left = harness.leftovers(pause_pids)
        UNIT.unlink(missing_ok=True)
        DEFAULTS.unlink(missing_ok=True)
        systemctl("daemon-reload")
        shutil.rmtree(root, ignore_errors=True)
        assert result.returncode == 0 and not left, f"cleanup: reset rc={result.returncode} left={left}"


def test_unit_delegates_and_kills_only_the_daemon(run_id: str) -> None:
    with service(run_id):
        props = systemctl("show", "-p", "Delegate,KillMode,ActiveState", "minikubelet").stdout.split()
        assert "Delegate=yes" in props and "KillMode=process" in props and "ActiveState=active" in props, props


def test_systemctl_restart_keeps_pods_running(run_id: str) -> None:
    root = www_root("mk-vmsvc-")
    try:
        with service(run_id) as daemon:
            daemon.write("web.yaml", pod_yaml("web", [httpd(port=8080, root=str(root / "www"))]))
            pod = daemon.wait_running("web", timeout=60)
            ip = pod["status"]["podIP"]
            pause = daemon.pause_pid("web")
            assert http_get(f"http://{ip}:8080/index.html") == "ok\n"
            old_main = main_pid()

            done = systemctl("restart", "minikubelet")
            assert done.returncode == 0, done.stderr
            daemon.wait_for(lambda: main_pid() not in (0, old_main), timeout=30, what="a new daemon pid")
            daemon.wait_for(daemon._healthy, timeout=60, what="restarted service /healthz")

            assert alive(pause), "the pause process died with the service restart"
            assert daemon.pause_pid("web") == pause
            assert http_get(f"http://{ip}:8080/index.html") == "ok\n"
            assert daemon.wait_running("web", timeout=30)["status"]["podIP"] == ip
            daemon.remove("web.yaml")
            daemon.wait_gone("web", timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
