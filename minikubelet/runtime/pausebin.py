"""Which pause program a sandbox runs: the compiled ``nsexec/pause.c`` when it is built, else the Python pause.

``scripts/_setup.sh`` builds ``<venv>/libexec/minikubelet/pause`` (about a tenth of the Python pause's memory per
pod). The environment variable ``MINIKUBELET_PAUSE`` overrides the choice: ``python`` forces the Python pause, a
path names another binary.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["PAUSE_ENV", "default_pause_path", "find_pause_binary"]

log = logging.getLogger(__name__)

PAUSE_ENV = "MINIKUBELET_PAUSE"


def default_pause_path() -> Path:
    return Path(sys.prefix) / "libexec" / "minikubelet" / "pause"


def find_pause_binary() -> str | None:
    """The pause binary to exec, or None for the Python pause (forked from the zygote, no exec)."""
    choice = os.environ.get(PAUSE_ENV, "")
    if choice == "python":
        log.info("Using the Python pause, as %s=python asks", PAUSE_ENV)
        return None
    path = Path(choice) if choice else default_pause_path()
    if path.is_file() and os.access(path, os.X_OK):
        log.info("Using the compiled pause path=%s", path)
        return str(path)
    if choice:
        log.warning("The pause binary %s=%s is not an executable file; using the Python pause", PAUSE_ENV, choice)
    else:
        log.info("No compiled pause at %s (scripts/run and scripts/test build it); using the Python pause", path)
    return None
