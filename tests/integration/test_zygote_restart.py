"""The nsexec zygote restarts when it dies: new pods start, running ones keep running (it used to deadlock: the
restart pinged through the lock that the request restarting it held)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.harness import DaemonHarness, pod_yaml

pytestmark = pytest.mark.root

SLEEP = [sys.executable, "-c", "import time; time.sleep(1000)"]


def zygote_of(daemon: DaemonHarness) -> int:
    assert daemon.proc is not None
    for child in Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() == "mk-zygote":
            return int(child)
    raise AssertionError("no mk-zygote child of the daemon")


def test_a_killed_zygote_is_restarted(daemon: DaemonHarness) -> None:
    daemon.write("first.yaml", pod_yaml("first", [{"name": "main", "image": "busybox", "command": SLEEP}]))
    daemon.wait_running("first")
    pause = daemon.pause_pid("first")
    old = zygote_of(daemon)
    os.kill(old, signal.SIGKILL)
    daemon.write("second.yaml", pod_yaml("second", [{"name": "main", "image": "busybox", "command": SLEEP}]))
    daemon.wait_running("second", timeout=30)
    assert zygote_of(daemon) != old
    assert daemon.pause_pid("first") == pause and Path(f"/proc/{pause}").exists()
