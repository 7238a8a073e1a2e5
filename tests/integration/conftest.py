"""The ``daemon`` fixture: a real minikubelet per test, reset and checked for leftovers on teardown (also on failure).

The harness itself lives in tests/harness.py (shared with scripts/bench); its names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import (  # noqa: F401 - re-exported for the test modules
    BUSYBOX,
    DaemonHarness,
    alive,
    events_of,
    http_get,
    httpd,
    pod_yaml,
    running_daemon,
    sh,
)


@pytest.fixture
def daemon(run_id: str) -> Iterator[DaemonHarness]:
    try:
        with running_daemon(run_id) as harness:
            yield harness
    except AssertionError as e:
        if "cleanup failed" not in str(e):
            raise
        pytest.fail(str(e))
