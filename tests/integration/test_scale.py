"""Many pods at once: 500 manifests written in one go all come up, and go away again, with nothing left behind.

This once overflowed the daemon's netlink socket (ENOBUFS): the replies of hundreds of concurrent link requests
did not fit its receive buffer, the socket stayed broken and every later sandbox failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import BUSYBOX, DaemonHarness, pod_yaml, running_daemon

COUNT = 500


@pytest.fixture
def big_daemon(run_id: str) -> Iterator[DaemonHarness]:
    try:
        with running_daemon(run_id, prefix="scale", cidr_prefix=22) as harness:
            yield harness
    except AssertionError as e:
        if "cleanup failed" not in str(e):
            raise
        pytest.fail(str(e))


def _running_with_ip(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]


def test_five_hundred_manifests_at_once_all_run_and_stop(big_daemon: DaemonHarness) -> None:
    daemon = big_daemon
    names = [f"many-{n:03d}" for n in range(COUNT)]
    staging = daemon.root / "staging"
    staging.mkdir(mode=0o755)
    for name in names:  # written elsewhere, then renamed in: the daemon sees 500 files within milliseconds
        (staging / f"{name}.yaml").write_text(
            pod_yaml(name, [{"name": "c", "image": "busybox", "command": [BUSYBOX, "sleep", "3600"]}])
        )
    for name in names:
        os.rename(staging / f"{name}.yaml", daemon.manifests / f"{name}.yaml")

    def all_running() -> list[dict[str, Any]] | None:
        running = _running_with_ip(daemon.pods())
        return running if len(running) == COUNT else None

    running = daemon.wait_for(all_running, 180, f"{COUNT} pods running with an IP", interval=1)
    ips = [p["status"]["podIP"] for p in running]
    assert len(set(ips)) == COUNT, "a pod IP was handed out twice"
    assert "Traceback" not in daemon.log()
    # and the daemon still works afterwards: one more pod comes up
    daemon.write(
        "after.yaml", pod_yaml("after", [{"name": "c", "image": "busybox", "command": [BUSYBOX, "sleep", "3600"]}])
    )
    daemon.wait_running("after", timeout=60)
    for name in names:
        daemon.remove(f"{name}.yaml")
    daemon.wait_for(lambda: len(daemon.pods()) == 1, 180, "the 500 pods gone", interval=1)
