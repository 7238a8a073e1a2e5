"""Mounts on the HOST: tmpfs for emptyDir ``medium: Memory`` and each pod's ``/dev/shm``, and their unmounting.

Runs in a forked zygote child, which never left the host's mount namespace (the zygote makes none of its own), so a
mount made here outlives the child and is seen by the daemon. Stdlib only, like the rest of nsexec. The ctypes
wrappers live here rather than in ``_sys.py``: ``_sys.mount`` passes no data string, and tmpfs needs ``size=``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from typing import Any

MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
MAX_STACKED = 64  # mounts stacked on one target that ``umount`` takes off, at most

_MODE = re.compile(r"[0-7]{3,4}")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def tmpfs_options(size: int, mode: str) -> str:
    """The data string: ``mode=1777`` plus ``size=<bytes>`` unless 0 (then the kernel default: half of RAM)."""
    return f"mode={mode}" + (f",size={size}" if size > 0 else "")


def mount_tmpfs(target: str, size: int = 0, mode: str = "1777") -> None:
    """Mount a tmpfs (nosuid,nodev) on the existing directory ``target``; OSError names the target."""
    if not os.path.isabs(target):
        raise OSError(errno.EINVAL, f"mount tmpfs on {target}: the target must be an absolute path")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise OSError(errno.EINVAL, f"mount tmpfs on {target}: size must be a whole number of bytes, not {size!r}")
    if not isinstance(mode, str) or not _MODE.fullmatch(mode):
        raise OSError(errno.EINVAL, f"mount tmpfs on {target}: mode must be octal such as 1777, not {mode!r}")
    if os.path.islink(target) or not os.path.isdir(target):
        raise OSError(errno.ENOTDIR, f"mount tmpfs on {target}: the target is not a directory")
    data = tmpfs_options(size, mode).encode()
    if _libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, data) != 0:
        raise _fail(f"mount tmpfs on {target}")


def umount(target: str) -> int:
    """Detach every mount stacked on ``target`` (MNT_DETACH, never following a symlink); returns how many.

    Not a mount point (EINVAL) or gone (ENOENT) ends it quietly: unmounting is idempotent."""
    count = 0
    while count < MAX_STACKED:
        if _libc.umount2(target.encode(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return count
            raise _fail(f"umount {target}")
        count += 1
    return count


def op_mount_tmpfs(req: dict[str, Any]) -> dict[str, Any]:
    """Zygote op ``mount_tmpfs``: ``{"target": abs path, "size": bytes or 0, "mode": "1777"}``."""
    mount_tmpfs(str(req["target"]), req.get("size") or 0, req.get("mode") or "1777")
    return {}


def op_umount(req: dict[str, Any]) -> dict[str, Any]:
    """Zygote op ``umount``: ``{"targets": [abs paths]}``; replies ``{"unmounted": N}`` (mounts taken off)."""
    return {"unmounted": sum(umount(str(t)) for t in req.get("targets") or [])}
