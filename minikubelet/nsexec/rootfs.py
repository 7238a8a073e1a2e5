"""A container's root filesystem: the mount plan of runc's ``prepareRootfs`` and ``pivotRoot``, as stdlib ctypes.

Runs in the forked container process (spawn.py ``_child``), inside the pod's namespaces, after the host fds it needs
(log file, /dev/null, the pause's pids directory) are open. The steps (images-cgroups.md §1.11): a private mount
namespace; the image's overlay on ``merged``; the pod's /proc; /dev as a tmpfs with the standard nodes, devpts,
/dev/shm and mqueue; /sys read-only; the daemon's binds in order; runc's masked and read-only paths; the root
read-only if asked; ``pivot_root``. Nothing mounted here is seen by the host: the mount namespace is the
container's own and dies with its last process.

Every container path is resolved inside the root as if it were ``/`` (symlinks included, never leaving it), and
mounted through an ``O_PATH`` fd of what was resolved, so an image's symlink cannot point a mount at the host.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from minikubelet.nsexec import _sys

# the kernel takes at most a page of mount options; containerd compacts lowerdirs past pagesize - 512
MAX_OPTIONS = 4096 - 512
MAX_SYMLINKS = 255

DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))
MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

NOSUID_NODEV_NOEXEC = _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC
# statvfs f_flag bits that a bind remount must keep (ST_* values equal the MS_* ones but for relatime)
_KEPT_FLAGS = ((os.ST_NOSUID, _sys.MS_NOSUID), (os.ST_NODEV, _sys.MS_NODEV), (os.ST_NOEXEC, _sys.MS_NOEXEC),
               (os.ST_NOATIME, _sys.MS_NOATIME), (os.ST_NODIRATIME, _sys.MS_NODIRATIME),
               (os.ST_RELATIME, _sys.MS_RELATIME))


class MountError(Exception):
    """A step of the plan failed; the message names the mount and its target (spawn.py turns it into StartError)."""


def _why(e: OSError) -> str:
    """The plain error text (our ctypes wrappers prefix strerror with the call's name)."""
    return os.strerror(e.errno) if e.errno else str(e)


def resolve(root: str, path: str, create: str = "") -> str:
    """The host path of container path ``path`` under ``root``, with symlinks resolved as if ``root`` were ``/``.

    ``create``: "" leaves missing components alone (returned as written), "dir" makes them directories (0755),
    "file" makes them directories but the last an empty file (0644), as runc creates mount targets."""
    done: list[str] = []
    todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if create == "file" and all(p == ".." for p in todo):  # the last component
                os.close(os.open(here, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            elif create:
                os.mkdir(here, 0o755)
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(40, f"too many levels of symbolic links in {path}")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
            continue
        done.append(part)
    return os.path.join(root, *done)


class Plan:
    """One container's mounts on ``root`` (the overlay's merged dir); ``run()`` does them all and pivots."""

    def __init__(self, spec: dict[str, Any], cwd: str) -> None:
        self.spec = spec
        self.root = os.path.normpath(spec["merged"])
        self.cwd = cwd

    def mount_at(self, what: str, source: str | None, target: str, fstype: str | None, flags: int,
                 data: str | None = None, create: str = "dir") -> str:
        """Mount on container path ``target`` (created as ``create`` if missing) through an O_PATH fd of it."""
        try:
            host = resolve(self.root, target, create)
            fd = os.open(host, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise MountError(f'error mounting "{what}" to rootfs at "{target}": {e.strerror or e}') from e
        try:
            _sys.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
        except OSError as e:
            raise MountError(f'error mounting "{what}" to rootfs at "{target}": {_why(e)}') from e
        finally:
            os.close(fd)
        return host

    def remount_ro(self, host: str, target: str, rec: int = 0) -> None:
        """Make the bind mount at ``host`` read-only, keeping its nosuid/nodev/noexec/atime flags (runc)."""
        try:
            kept = os.statvfs(host).f_flag
            flags = _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY | rec
            for st_flag, ms_flag in _KEPT_FLAGS:
                if kept & st_flag:
                    flags |= ms_flag
            _sys.mount(None, host, None, flags)
        except OSError as e:
            raise MountError(f'error remounting "{target}" read-only: {_why(e)}') from e

    def ordinary_dir(self, fstype: str, target: str) -> None:
        """runc: proc, sysfs (and here /dev) only on a real directory or none, never through an image's symlink."""
        host = os.path.join(self.root, target.lstrip("/"))
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(host).st_mode):
                raise MountError(f'filesystem "{fstype}" must be mounted on ordinary directory (at "{target}")')

    def run(self) -> None:
        self.private_namespace()
        self.overlay()
        for fstype, target in (("proc", "/proc"), ("tmpfs", "/dev"), ("sysfs", "/sys")):
            self.ordinary_dir(fstype, target)
        self.mount_at("proc", "proc", "/proc", "proc", NOSUID_NODEV_NOEXEC)
        self.dev()
        self.mount_at("sysfs", "sysfs", "/sys", "sysfs", _sys.MS_RDONLY | NOSUID_NODEV_NOEXEC)
        for bind in self.spec.get("binds") or []:
            self.bind(str(bind["source"]), str(bind["target"]), bool(bind.get("readonly")))
        self.mask()
        for path in READONLY:
            host = resolve(self.root, path)
            if os.path.lexists(host):
                self.mount_at(path, host, path, None, _sys.MS_BIND | _sys.MS_REC, create="")
                self.remount_ro(host, path, _sys.MS_REC)
        try:
            resolve(self.root, self.cwd, "dir")  # runc MkdirAll(cwd, 0755), before the root turns read-only
        except OSError as e:
            why = (e.strerror or str(e)).lower()
            raise MountError(f'chdir to cwd ("{self.cwd}") set in config.json failed: {why}') from e
        if self.spec.get("readonly"):
            self.remount_ro(self.root, "/")
        self.pivot()

    def private_namespace(self) -> None:
        try:
            _sys.unshare(_sys.CLONE_NEWNS)
            _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)  # a shared / would leak our mounts
        except OSError as e:
            raise MountError(f"failed to make the container's mount namespace private: {_why(e)}") from e

    def overlay(self) -> None:
        lowers = [str(p) for p in self.spec["lowerdirs"]]
        if not lowers:
            raise MountError("the image has no layers to mount")
        for p in (*lowers, self.spec["upper"], self.spec["work"]):
            if "," in p or ":" in p:
                raise MountError(f"overlay path {p!r} contains ',' or ':'")
        options = f"lowerdir={':'.join(lowers)},upperdir={self.spec['upper']},workdir={self.spec['work']},index=off"
        where = None
        if len(options) > MAX_OPTIONS:  # containerd compactLowerdirOption: relative to their common parent
            where = os.path.commonpath(lowers)
            if where in lowers:  # one lowerdir is the parent of the others: its parent then
                where = os.path.dirname(where)
            relative = [os.path.relpath(p, where) for p in lowers]
            options = (f"lowerdir={':'.join(relative)},upperdir={self.spec['upper']},"
                       f"workdir={self.spec['work']},index=off")
            if len(options) > MAX_OPTIONS:
                raise MountError(f"the overlay options are {len(options)} bytes even with relative lowerdirs "
                                 f"(at most {MAX_OPTIONS}): the image has too many layers")
        try:
            if where is not None:
                os.chdir(where)
            _sys.mount("overlay", self.root, "overlay", 0, options)
        except OSError as e:
            raise MountError(f'error mounting "overlay" to rootfs at "{self.root}": {_why(e)}') from e
        finally:
            if where is not None:
                os.chdir("/")

    def dev(self) -> None:
        dev = self.mount_at("tmpfs", "tmpfs", "/dev", "tmpfs", _sys.MS_NOSUID | _sys.MS_STRICTATIME,
                            "mode=755,size=65536k")
        try:
            for name, major, minor in DEVICES:
                os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
                os.chmod(f"{dev}/{name}", 0o666)  # mknod is subject to the umask
            links = DEV_LINKS + (("core", "/proc/kcore"),) if os.path.exists("/proc/kcore") else DEV_LINKS
            for name, target in links:
                os.symlink(target, f"{dev}/{name}")
        except OSError as e:
            raise MountError(f"failed to create the device nodes in /dev: {e.strerror or e}") from e
        self.mount_at("devpts", "devpts", "/dev/pts", "devpts", _sys.MS_NOSUID | _sys.MS_NOEXEC,
                      "newinstance,ptmxmode=0666,mode=0620,gid=5")
        shm = self.spec.get("shm") or ""
        if shm:
            self.mount_at(shm, shm, "/dev/shm", None, _sys.MS_BIND)
        else:
            self.mount_at("shm", "shm", "/dev/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
        self.mount_at("mqueue", "mqueue", "/dev/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)

    def bind(self, source: str, target: str, readonly: bool) -> None:
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as e:
            raise MountError(f'error mounting "{source}" to rootfs at "{target}": stat {source}: '
                             f"{(e.strerror or str(e)).lower()}") from e
        host = self.mount_at(source, source, target, None, _sys.MS_BIND | _sys.MS_REC,
                             create="dir" if is_dir else "file")
        if readonly:
            self.remount_ro(host, target)

    def mask(self) -> None:
        """runc maskPaths: a directory gets a read-only tmpfs, a file /dev/null; an absent path is skipped."""
        null = f"{self.root}/dev/null"
        for path in MASKED:
            host = resolve(self.root, path)
            try:
                is_dir = stat.S_ISDIR(os.lstat(host).st_mode)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise MountError(f'error masking "{path}": {e.strerror or e}') from e
            if is_dir:
                self.mount_at("tmpfs", "tmpfs", path, "tmpfs", _sys.MS_RDONLY, create="")
            else:
                self.mount_at("/dev/null", null, path, None, _sys.MS_BIND, create="")

    def pivot(self) -> None:
        """runc pivotRoot: pivot_root(".", "."), then detach the old root stacked on top of the new one."""
        old = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(self.root)
            _sys.pivot_root(".", ".")
            os.fchdir(old)
            _sys.mount(None, ".", None, _sys.MS_SLAVE | _sys.MS_REC)  # never propagate the unmount to the host
            _sys.umount2(".", _sys.MNT_DETACH)
            os.chdir("/")
        except OSError as e:
            raise MountError(f"pivot_root to {self.root} failed: {_why(e)}") from e
        finally:
            with contextlib.suppress(OSError):
                os.close(old)


def enter(spec: dict[str, Any], cwd: str) -> None:
    """Mount the container's root filesystem described by the spawn request's ``rootfs`` and pivot into it."""
    Plan(spec, cwd).run()
