"""Process identity and exit watching by pidfd, for processes that are not the daemon's children.

A PID alone is never trusted: every handle pairs it with the process start time, checked right after
``pidfd_open``. From then on the pidfd pins the process, so signals can never hit a recycled PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def open_pidfd(pid: int, start: int) -> int | None:
    """A pidfd for the process (pid, start), or None if that process no longer exists (or is a zombie's PID reuse)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if start_time(pid) != start:
        os.close(fd)
        return None
    return fd


def is_alive(pid: int, start: int) -> bool:
    """True if (pid, start) still names a process that has not exited (zombies count as exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19]) == start and fields[0] not in (b"Z", b"X")


class ProcessHandle:
    """A pidfd on one process: signal it safely and learn when it exits (via the event loop, no thread)."""

    def __init__(self, pid: int, start: int) -> None:
        self.pid = pid
        self.start = start
        self._fd = open_pidfd(pid, start)
        self._exited = asyncio.get_running_loop().create_future()
        if self._fd is None or not is_alive(pid, start):
            self._exited.set_result(None)
            self._close()
        else:
            asyncio.get_running_loop().add_reader(self._fd, self._on_exit)

    def _on_exit(self) -> None:
        self._close()
        if not self._exited.done():
            self._exited.set_result(None)

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def exited(self) -> bool:
        return self._exited.done()

    def add_exit_callback(self, callback: Callable[[], None]) -> None:
        self._exited.add_done_callback(lambda _: callback())

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the exit; True if it exited within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._exited)
        except TimeoutError:
            return False
        return True

    def send(self, sig: int) -> bool:
        """Send ``sig``; False if the process is already gone."""
        if self._fd is None:
            return False
        try:
            signal.pidfd_send_signal(self._fd, sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        self._close()
