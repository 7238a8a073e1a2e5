"""A pod's volumes on the host: read from its validated manifest, prepared before its containers start, turned into
the container's ``binds``, and removed with the pod.

Layout (docs: issue 10 contract): ``<data-dir>/pods/<uid>/volumes/<name>/`` is an emptyDir (a directory, 0777 as
the kubelet makes it; for ``medium: Memory`` a tmpfs mounted there on the host); a hostPath is the node's path
itself. ``<run-dir>/pods/<uid>/shm/`` is the pod's ``/dev/shm``, a 64 MiB tmpfs. Every mount is made by a zygote
child in the host mount namespace (``runtime.mount_tmpfs``); binds exist only in containers' mount namespaces, so
the host has none to follow when a pod directory is removed, and ``cleanup`` checks that before it removes one.

Messages are the kubelet's (``pkg/volume/hostpath/host_path.go``, ``pkg/volume/emptydir/empty_dir.go``,
``pkg/kubelet/kubelet_pods.go`` ``makeMounts``); errors of the node's calls read as Go's (``mkdir /x: permission
denied``). Volume set-up failures raise ``VolumeError`` (the pod worker's FailedMount event and retry); a subPath
that cannot be prepared raises ``ContainerStartError`` with reason CreateContainerConfigError, as the kubelet's
container config does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from minikubelet.cgroups.resources import of_container, parse_quantity, pod_config, whole
from minikubelet.errors import ContainerStartError, VolumeError
from minikubelet.pod.spec import Pod

log = logging.getLogger(__name__)

EMPTY_DIR_MODE = 0o777  # empty_dir.go ``perm``
HOST_DIR_MODE = 0o755  # host_path.go makeDir; containerd's mode for a missing hostPath of type ""
HOST_FILE_MODE = 0o644  # host_path.go makeFile
SHM_SIZE = 64 * 1024 * 1024  # containerd's default /dev/shm
SHM_MODE = "1777"


class HostMounts(Protocol):
    """What this module needs of the runtime (LinuxRuntime; a fake in unit tests)."""

    async def mount_tmpfs(self, target: Path, size: int, mode: str = "1777") -> None: ...

    async def umount(self, targets: list[Path]) -> None: ...


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: str  # "emptyDir" or "hostPath"
    medium: str = ""  # emptyDir: "" (disk) or "Memory"
    size_limit: int = 0  # emptyDir sizeLimit in bytes, 0 for none
    path: str = ""  # hostPath
    type: str = ""  # hostPath type


@dataclass(frozen=True, slots=True)
class VolumeMount:
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


# --- parsing (pure) --------------------------------------------------------------------------------------------------


def volumes_of(manifest: Mapping[str, Any]) -> list[Volume]:
    """``spec.volumes`` of a validated, defaulted Pod dict (``Pod.manifest``), in spec order."""
    out = []
    for vol in (manifest.get("spec") or {}).get("volumes") or []:
        if vol.get("hostPath") is not None:
            hp = vol["hostPath"]
            out.append(Volume(vol["name"], "hostPath", path=hp["path"], type=hp.get("type") or ""))
        else:
            ed = vol.get("emptyDir") or {}
            limit = ed.get("sizeLimit")
            size = whole(parse_quantity(limit)) if limit is not None else 0
            out.append(Volume(vol["name"], "emptyDir", medium=ed.get("medium") or "", size_limit=max(size, 0)))
    return out


def mounts_of(manifest: Mapping[str, Any], container_name: str) -> list[VolumeMount]:
    """The volumeMounts of the (init) container named ``container_name``, in spec order; [] if it has none."""
    spec = manifest.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if c.get("name") == container_name:
            return [VolumeMount(m["name"], m["mountPath"], m.get("subPath") or "", bool(m.get("readOnly")))
                    for m in c.get("volumeMounts") or []]
    return []


def data_pod_dir(data_dir: Path, uid: str) -> Path:
    return data_dir / "pods" / uid


def volume_dir(data_dir: Path, uid: str, name: str) -> Path:
    """Where an emptyDir lives on the host."""
    return data_pod_dir(data_dir, uid) / "volumes" / name


def host_path_of(vol: Volume, data_dir: Path, uid: str) -> Path:
    return Path(vol.path) if vol.kind == "hostPath" else volume_dir(data_dir, uid, vol.name)


def memory_size(vol: Volume, pod: Pod) -> int:
    """tmpfs size for an emptyDir of medium Memory (empty_dir.go ``calculateEmptyDirMemorySize``): the pod's memory
    limit when every container has one, lowered to ``sizeLimit`` when that is smaller; 0 (the kernel's default,
    half of the RAM) when neither is set. The kubelet's last bound, the node's allocatable memory, is left out."""
    spec = pod.spec
    pod_limit = pod_config([of_container(c) for c in spec.init_containers],
                           [of_container(c) for c in spec.containers], None).memory_limit or 0
    size = pod_limit
    if vol.size_limit > 0 and (size == 0 or vol.size_limit < size):
        size = vol.size_limit
    return size


def go_error(op: str, path: str | Path, e: OSError) -> str:
    """An OSError as Go's ``*PathError`` prints: ``mkdir /x: permission denied``."""
    text = e.strerror or str(e)
    return f"{op} {path}: {text[:1].lower()}{text[1:]}"


# --- set-up ----------------------------------------------------------------------------------------------------------


async def prepare(pod: Pod, runtime: HostMounts, data_dir: Path) -> None:
    """Make every volume of ``pod`` ready, in spec order; idempotent (the pod worker calls it on each sync until it
    succeeds). Raises VolumeError naming the volume; ``e.setup_failed()`` is the kubelet's FailedMount message."""
    for vol in volumes_of(pod.manifest):
        try:
            if vol.kind == "emptyDir":
                await _prepare_empty_dir(vol, pod, runtime, data_dir)
            else:
                check_host_path(vol.path, vol.type)
        except VolumeError as e:
            raise VolumeError(e.message, vol.name) from e


async def _prepare_empty_dir(vol: Volume, pod: Pod, runtime: HostMounts, data_dir: Path) -> None:
    target = volume_dir(data_dir, pod.uid, vol.name)
    make_dir(target, EMPTY_DIR_MODE)
    if vol.medium == "Memory" and not os.path.ismount(target):
        await runtime.mount_tmpfs(target, memory_size(vol, pod), "1777")


def make_dir(target: Path, mode: int) -> None:
    """empty_dir.go ``setupDir``: MkdirAll, then chmod to exactly ``mode`` (the daemon's umask must not narrow it).
    Only when it is made: a container may chmod its own volume later, and a resync must not undo that."""
    try:
        if not target.is_dir():
            target.mkdir(parents=True, exist_ok=True, mode=mode)
            os.chmod(target, mode)
    except OSError as e:
        raise VolumeError(go_error("mkdir", target, e)) from e


_TYPE_TESTS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def check_host_path(path: str, host_type: str) -> None:
    """host_path.go ``checkTypeInternal``: the type checks (following symlinks, as stat does); DirectoryOrCreate
    makes a missing directory 0755 (MkdirAll, parents too), FileOrCreate an empty 0644 file (its parent must exist,
    as Go's OpenFile needs). Type "" checks nothing; a missing path is made a 0755 directory, as containerd does
    before it bind-mounts a hostPath. Raises VolumeError."""
    exists = os.path.exists(path)
    try:
        if not exists and host_type in ("", "DirectoryOrCreate"):
            os.makedirs(path, HOST_DIR_MODE, exist_ok=True)
            return
        if not exists and host_type == "FileOrCreate":
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, HOST_FILE_MODE))
            return
    except OSError as e:
        raise VolumeError(go_error("mkdir" if host_type != "FileOrCreate" else "open", path, e)) from e
    if host_type == "":
        return
    test, what = _TYPE_TESTS[host_type.removesuffix("OrCreate")]
    try:
        ok = test(os.stat(path).st_mode)
    except OSError:
        ok = False
    if not ok:
        raise VolumeError(f"hostPath type check failed: {path} is not {what}")


async def prepare_shm(runtime: HostMounts, run_pod_dir: Path) -> Path:
    """``<run pod dir>/shm``: a 64 MiB tmpfs, mode 1777, mounted once (idempotent). Returns its path (the
    ``rootfs.shm`` of the spawn request). Raises VolumeError."""
    shm = run_pod_dir / "shm"
    try:
        shm.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as e:
        raise VolumeError(go_error("mkdir", shm, e)) from e
    if not os.path.ismount(shm):
        await runtime.mount_tmpfs(shm, SHM_SIZE, SHM_MODE)
    return shm


# --- binds -----------------------------------------------------------------------------------------------------------


def binds_for(pod: Pod, container_name: str, data_dir: Path) -> list[dict[str, Any]]:
    """The container's volumeMounts as spawn ``binds``: ``{"source": host path, "target": mountPath, "readonly":
    bool}``. Spec order, then stably sorted by the target's depth, as containerd orders mounts (so ``/data`` is
    mounted before ``/data/sub`` whatever the spec's order). A subPath is resolved under its volume (symlinks
    inside it followed), a missing one made a directory with the volume's mode (``makeMounts``); one that resolves
    outside the volume is refused. Raises ContainerStartError(reason CreateContainerConfigError) with the kubelet's
    words, which name neither host path (the kubelet keeps those out of user messages)."""
    volumes = {v.name: v for v in volumes_of(pod.manifest)}
    binds: list[dict[str, Any]] = []
    for m in mounts_of(pod.manifest, container_name):
        source = host_path_of(volumes[m.name], data_dir, pod.uid)
        if m.sub_path:
            source = resolve_sub_path(source, m.sub_path, m.name, container_name)
        binds.append({"source": str(source), "target": m.mount_path, "readonly": m.read_only})
    binds.sort(key=lambda b: len([p for p in str(b["target"]).split("/") if p]))
    return binds


def resolve_sub_path(volume_root: Path, sub_path: str, mount: str, container: str) -> Path:
    """The host path of ``sub_path`` under ``volume_root``, symlinks resolved, created (as directories, with the
    volume root's permission bits) when missing. Refuses absolute paths, ``..`` and symlinks leading out."""
    def refuse(step: str, detail: str) -> ContainerStartError:
        log.warning("SubPath refused volumeMount=%s container=%s subPath=%s root=%s detail=%s", mount, container,
                    sub_path, volume_root, detail)
        return ContainerStartError(f'failed to {step} for volumeMount "{mount}" of container "{container}"',
                                   "CreateContainerConfigError")

    if os.path.isabs(sub_path) or ".." in sub_path.split("/"):
        raise refuse("prepare subPath", "absolute or with '..'")
    root = Path(os.path.realpath(volume_root))
    wanted = root / sub_path
    if not os.path.exists(wanted):
        try:
            mode = stat.S_IMODE(os.stat(root).st_mode)
            _safe_make_dirs(root, sub_path, mode)
        except (OSError, ValueError) as e:
            raise refuse("create subPath directory", str(e)) from e
    resolved = Path(os.path.realpath(wanted))
    if not resolved.is_relative_to(root) or not os.path.exists(resolved):
        raise refuse("prepare subPath", f"resolves to {resolved}, outside the volume or missing")
    return resolved


def _safe_make_dirs(root: Path, sub_path: str, mode: int) -> None:
    """subpath_linux.go ``doSafeMakeDir`` in spirit: walk ``sub_path`` below ``root`` one component at a time, each
    existing component resolved and checked to stay inside ``root``, each missing one made ``mode`` (chmod'ed past
    the umask)."""
    current = root
    for part in (p for p in sub_path.split("/") if p and p != "."):
        nxt = current / part
        if os.path.lexists(nxt):
            nxt = Path(os.path.realpath(nxt))
            if not nxt.is_relative_to(root):
                raise ValueError(f"{nxt} is not within {root}")
        else:
            os.mkdir(nxt, mode)
            os.chmod(nxt, mode)
        current = nxt


# --- tear-down -------------------------------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    r"""/proc/self/mountinfo writes space, tab, newline and backslash as octal escapes (``\040``)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount in this process's mount namespace, in mount order."""
    found = []
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5:
                found.append((_unescape(fields[4]), right.split(" ", 1)[0]))
    return found


def mounts_under(roots: Iterable[Path], mountinfo: str = "/proc/self/mountinfo") -> list[Path]:
    """Every mount point at or below any of ``roots`` (any fs type), deepest first, each once. The roots are
    resolved first: mountinfo names mount points by their real path (``/var/run/...`` is listed as ``/run/...``)."""
    prefixes = [os.path.realpath(r).rstrip("/") for r in roots]
    hits = {
        point for point, _ in mount_points(mountinfo)
        if any(point == p or point.startswith(p + "/") for p in prefixes)
    }
    return [Path(p) for p in sorted(hits, key=lambda p: (-p.count("/"), p))]


async def unmount_all(runtime: HostMounts, roots: list[Path]) -> None:
    """Unmount everything at or below ``roots`` on the host; VolumeError if any mount remains."""
    targets = mounts_under(roots)
    if targets:
        await runtime.umount(targets)
        log.info("Unmounted host mounts count=%d under=%s", len(targets), ",".join(map(str, roots)))
    left = mounts_under(roots)
    if left:
        raise VolumeError(f"still mounted after umount: {', '.join(map(str, left))}")


async def remove_tree(path: Path) -> None:
    """rmtree in a worker thread (a pod's directory can hold many files); failures are logged, not raised."""
    def failed(where: str, exc: BaseException) -> None:
        log.warning("Could not remove path=%s error=%s", where, exc)

    def remove() -> None:
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=lambda _f, where, exc: failed(where, exc))
        else:
            shutil.rmtree(path, onerror=lambda _f, where, info: failed(where, info[1]))

    if os.path.lexists(path):
        await asyncio.to_thread(remove)


async def cleanup(uid: str, runtime: HostMounts, data_dir: Path, run_pod_dir: Path) -> None:
    """Unmount every mount under ``<data-dir>/pods/<uid>`` (emptyDir tmpfs, anything else left there) and the pod's
    shm, then remove ``<data-dir>/pods/<uid>``. Removal only after the unmounting is verified in mountinfo, so
    rmtree can never descend into a mount. Idempotent; works for a pod already forgotten (only its uid needed).
    The run pod dir itself is the runtime's to remove. Raises VolumeError (nothing removed) if a mount stays."""
    pod_dir = data_pod_dir(data_dir, uid)
    await unmount_all(runtime, [pod_dir, run_pod_dir / "shm"])
    await remove_tree(pod_dir)


async def reset_host_mounts(runtime: HostMounts, data_dir: Path, run_dir: Path) -> None:
    """``minikubelet reset``: unmount every mount under ``<data-dir>/pods/`` and ``<run-dir>/pods/``, then remove
    ``<data-dir>/pods/``. Raises VolumeError (and removes nothing) if a mount stays."""
    await unmount_all(runtime, [data_dir / "pods", run_dir / "pods"])
    await remove_tree(data_dir / "pods")
