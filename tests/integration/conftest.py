"""The ``daemon`` fixture: a real minikubelet per test, reset and checked for leftovers on teardown (also on failure).

The harness itself lives in tests/harness.py (shared with scripts/bench); its names are re-exported here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (  # noqa: F401 - re-exported for the test modules
    BUSYBOX,
    DaemonHarness,
    alive,
    events_of,
    http_get,
    httpd,
    pod_yaml,
    sh,
)


@pytest.fixture
def daemon(run_id: str) -> Iterator[DaemonHarness]:
    root = Path(tempfile.mkdtemp(prefix=f"mk-{run_id}-"))
    harness = DaemonHarness(root, run_id)
    try:
        harness.start()
        yield harness
    finally:
        pause_pids = harness.pod_processes()
        harness.stop()
        result = harness.reset()
        left = harness.leftovers(pause_pids)
        if harness.proc is not None and harness.proc.poll() is None:
            harness.proc.kill()
        shutil.rmtree(root, ignore_errors=True)
        if result.returncode != 0 or left:
            pytest.fail(f"cleanup failed: reset rc={result.returncode} left={left}\n{result.stderr[-2000:]}")

