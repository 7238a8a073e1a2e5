"""Guest-only tests: they run inside the ``scripts/vm-test`` guest (systemd as PID 1, cgroup v2 only).

Elsewhere they are skipped with the command that runs them. The ``daemon`` fixture is the integration one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import daemon  # noqa: F401 - the same real-daemon fixture


def guest_skip_reason() -> str | None:
    """Why this is not the vm-test guest (or a machine like it), or None if it is."""
    if os.environ.get("MK_IN_VM") != "1":
        return 'guest-only: run scripts/vm-test -m "systemd or vmsmoke"'
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        return "needs systemd as PID 1"
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "needs the cgroup v2 unified hierarchy on /sys/fs/cgroup"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = guest_skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))
