"""A small asyncio inotify watcher on one directory, through ctypes (Python has no inotify binding).

The watcher calls ``callback(name, mask)`` on the event loop for every event. ``name`` is the entry name inside the
directory, or ``""`` for an event about the directory itself or the queue. The owner reacts as follows:

- ``mask & IN_Q_OVERFLOW``: events were lost; do a full rescan.
- ``mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)``: the watch is gone or no longer matches the
  path; close this watcher, create a new one when the directory is back, and rescan.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

DEFAULT_MASK = (
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
)
# The watch no longer covers the directory at its path: the owner must re-create the watcher.
WATCH_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT

_EVENT = struct.Struct("iIII")  # struct inotify_event: int wd; uint32 mask, cookie, len; char name[len]
_READ_SIZE = 64 * 1024

EventCallback = Callable[[str, int], None]

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_init1.restype = ctypes.c_int
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        lib.inotify_add_watch.restype = ctypes.c_int
        _libc = lib
    return _libc


def parse_events(buf: bytes) -> list[tuple[int, int, str]]:
    """Split a read() buffer into ``(wd, mask, name)`` tuples; the NUL padding of names is removed."""
    events: list[tuple[int, int, str]] = []
    offset = 0
    while offset + _EVENT.size <= len(buf):
        wd, mask, _cookie, length = _EVENT.unpack_from(buf, offset)
        offset += _EVENT.size
        raw = buf[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        events.append((wd, mask, os.fsdecode(raw)))
    return events


class InotifyWatcher:
    """Watches one directory (not recursive) and calls ``callback(name, mask)`` on the event loop thread."""

    def __init__(self, directory: str | os.PathLike[str], callback: EventCallback, mask: int = DEFAULT_MASK) -> None:
        self.directory = os.fspath(directory)
        self._callback = callback
        self._mask = mask
        self._fd: int | None = None
        self._wd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def start(self) -> None:
        """Create the inotify instance, add the watch and register the reader. Raises OSError on failure."""
        if self._fd is not None:
            return
        loop = asyncio.get_running_loop()
        lib = _lib()
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        try:
            wd = lib.inotify_add_watch(fd, os.fsencode(self.directory), self._mask | IN_ONLYDIR)
            if wd < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"inotify_add_watch: {os.strerror(err)}", self.directory)
            loop.add_reader(fd, self._on_readable)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._wd, self._loop = fd, wd, loop
        log.debug("Inotify watch added directory=%s wd=%d", self.directory, wd)

    def close(self) -> None:
        """Remove the reader and close the fd (which drops the watch). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)
        log.debug("Inotify watch closed directory=%s", self.directory)

    def _on_readable(self) -> None:
        try:
            self._drain()
        except Exception:
            # Never let the reader callback raise into the loop; tell the owner the watch is unusable instead.
            log.exception("Inotify read failed, closing the watch directory=%s", self.directory)
            self.close()
            self._deliver("", IN_IGNORED)

    def _drain(self) -> None:
        while self._fd is not None:
            try:
                buf = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not buf:
                return
            for _wd, mask, name in parse_events(buf):
                if mask & IN_Q_OVERFLOW:
                    log.warning("Inotify queue overflowed, a full rescan is needed directory=%s", self.directory)
                self._deliver(name, mask)

    def _deliver(self, name: str, mask: int) -> None:
        try:
            self._callback(name, mask)
        except Exception:
            log.exception("Inotify callback failed name=%s mask=%#x", name, mask)
