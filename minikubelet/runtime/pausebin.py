"""Which pause program a sandbox runs: the compiled ``nsexec/pause.c`` when it is built, else the Python pause.

Two places hold a compiled pause (about a tenth of the Python pause's memory per pod): ``scripts/_setup.sh`` builds
``<venv>/libexec/minikubelet/pause`` for the editable checkout, and the wheel's build step (``setup.py``, so every
``pip install .``) puts it in the package as ``minikubelet/nsexec/pause``. The environment variable
``MINIKUBELET_PAUSE`` overrides the choice: ``python`` forces the Python pause, a path names another binary.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["PAUSE_ENV", "default_pause_path", "find_pause_binary", "packaged_pause_path"]

log = logging.getLogger(__name__)

PAUSE_ENV = "MINIKUBELET_PAUSE"


def default_pause_path() -> Path:
    return Path(sys.prefix) / "libexec" / "minikubelet" / "pause"


def packaged_pause_path() -> Path:
    """Where a wheel's build step puts the compiled pause: beside its source, ``minikubelet/nsexec/pause``."""
    return Path(__file__).resolve().parents[1] / "nsexec" / "pause"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_pause_binary() -> str | None:
    """The pause binary to exec, or None for the Python pause (forked from the zygote, no exec)."""
    choice = os.environ.get(PAUSE_ENV, "")
    if choice == "python":
        log.info("Using the Python pause, as %s=python asks", PAUSE_ENV)
        return None
    if choice:
        path = Path(choice)
        if _executable(path):
            log.info("Using the compiled pause path=%s", path)
            return str(path)
        log.warning("The pause binary %s=%s is not an executable file; using the Python pause", PAUSE_ENV, choice)
        return None
    for path in (default_pause_path(), packaged_pause_path()):
        if _executable(path):
            log.info("Using the compiled pause path=%s", path)
            return str(path)
    log.warning("No compiled pause (neither %s nor %s); using the Python pause, about 1.1 MB more memory per pod: "
                "install a C compiler and reinstall (pip install . builds it), or run scripts/run",
                default_pause_path(), packaged_pause_path())
    return None
