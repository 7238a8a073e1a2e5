"""Finding the pause processes a daemon made, from what the kernel keeps: no file of ours needs to exist.

Every pause runs with ``MINIKUBELET_OWNER=<run dir>`` in its environ (nsexec/zygote.py puts it there) and is PID 1 of
its own PID namespace. ``/proc/PID/environ`` holds the environment the process started with, whatever it did since,
so a pause whose sandbox trace could not be written (a full disk) or whose helper died is still found; the run dir in
the marker keeps two daemons (with their own run dirs) from ever touching each other's pods.
"""

from __future__ import annotations

import os
from pathlib import Path

from minikubelet.runtime.proc import start_time

__all__ = ["OWNER_ENV", "owner_marker", "owned_pauses"]

OWNER_ENV = "MINIKUBELET_OWNER"  # = nsexec.zygote.OWNER_ENV (nsexec imports nothing of ours)


def owner_marker(run_dir: Path) -> str:
    """The marker's value for ``run_dir``: its absolute, resolved path."""
    return str(run_dir.resolve())


def _is_namespace_init(pid: str) -> bool:
    """PID 1 of a PID namespace below the host's (``NSpid: <host pid> ... 1``)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    ids = line.split()[1:]
                    return len(ids) > 1 and ids[-1] == b"1"
    except OSError:
        pass
    return False


def owned_pauses(run_dir: Path) -> list[tuple[int, int]]:
    """(pid, start time) of every live pause whose marker names ``run_dir``."""
    wanted = f"{OWNER_ENV}={owner_marker(run_dir)}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if wanted not in environ.split(b"\0") or not _is_namespace_init(pid):
            continue
        start = start_time(int(pid))
        if start is not None:
            found.append((int(pid), start))
    return found
