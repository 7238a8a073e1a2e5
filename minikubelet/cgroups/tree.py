"""One interface above cgroup v1 and v2: make, limit, join, read and remove the kubelet's cgroupfs layout
``<root>/kubepods/[burstable|besteffort/]pod<uid>/<container>`` (Guaranteed pods directly under ``kubepods``).

Every call is a few small writes to cgroupfs; ``remove`` retries rmdir's EBUSY (v1: until the last task is gone) a
bounded number of times without blocking the loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from minikubelet.cgroups.detect import V1_CONTROLLERS, V2_CONTROLLERS, Mounts
from minikubelet.cgroups.resources import CgroupConfig, QOSClass, shares_to_weight

log = logging.getLogger(__name__)
RMDIR_TRIES = 50
RMDIR_PAUSE = 0.02


def pod_path(root: str, qos: QOSClass, uid: str) -> PurePosixPath:
    base = PurePosixPath("/") / root.strip("/") / "kubepods"
    if qos is QOSClass.GUARANTEED:
        return base / f"pod{uid}"
    return base / qos.value.lower() / f"pod{uid}"


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_usage_ns: int
    memory_usage: int
    memory_working_set: int


class Cgroups:
    """Cgroups under one hierarchy view; ``path`` arguments are absolute cgroup paths like ``/mk/kubepods/pod1``."""

    def __init__(self, mounts: Mounts) -> None:
        self.mounts = mounts
        self.v2 = mounts.version == 2

    # -- paths -------------------------------------------------------------------------------------------------
    def dirs(self, path: PurePosixPath) -> list[Path]:
        rel = str(path).lstrip("/")
        if self.mounts.unified is not None:
            return [self.mounts.unified / rel]
        return [self.mounts.v1[c] / rel for c in V1_CONTROLLERS if c in self.mounts.v1]

    def _dir(self, controller: str, path: PurePosixPath) -> Path:
        rel = str(path).lstrip("/")
        if self.mounts.unified is not None:
            return self.mounts.unified / rel
        return self.mounts.v1[controller] / rel

    def procs_files(self, path: PurePosixPath) -> list[str]:
        """The cgroup.procs files a child writes its pid into before it execs."""
        return [str(d / "cgroup.procs") for d in self.dirs(path)]

    # -- make and limit ----------------------------------------------------------------------------------------
    def create(self, path: PurePosixPath) -> None:
        """mkdir -p on every hierarchy; on v2 enable cpu, memory and pids for the children at every level."""
        if self.mounts.unified is not None:
            parts = PurePosixPath(str(path).lstrip("/")).parts
            level = self.mounts.unified
            for part in parts:
                self._enable_children(level)
                level = level / part
                level.mkdir(exist_ok=True)
            return
        for d in self.dirs(path):
            d.mkdir(parents=True, exist_ok=True)

    def _enable_children(self, level: Path) -> None:
        available = set((level / "cgroup.controllers").read_text().split())
        enabled = set((level / "cgroup.subtree_control").read_text().split())
        wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            (level / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))

    def apply(self, path: PurePosixPath, cfg: CgroupConfig) -> None:
        if self.v2:
            self._apply_v2(path, cfg)
        else:
            self._apply_v1(path, cfg)

    def _apply_v1(self, path: PurePosixPath, cfg: CgroupConfig) -> None:
        if cfg.cpu_shares is not None and "cpu" in self.mounts.v1:
            _write(self._dir("cpu", path) / "cpu.shares", str(cfg.cpu_shares))
        if cfg.cpu_quota_us is not None and "cpu" in self.mounts.v1:
            _write(self._dir("cpu", path) / "cpu.cfs_period_us", str(cfg.cpu_period_us))
            _write(self._dir("cpu", path) / "cpu.cfs_quota_us", str(cfg.cpu_quota_us or -1))
        if cfg.memory_limit is not None and "memory" in self.mounts.v1:
            mem = self._dir("memory", path)
            memsw = mem / "memory.memsw.limit_in_bytes"
            # the kernel demands memsw >= memory: raise memsw first when growing, memory first when shrinking
            order = [("memory.limit_in_bytes", cfg.memory_limit)]
            if memsw.exists():
                current = int((mem / "memory.limit_in_bytes").read_text())
                sw = ("memory.memsw.limit_in_bytes", cfg.memory_limit)
                order = [sw, *order] if cfg.memory_limit > current else [*order, sw]
            for name, value in order:
                _write(mem / name, str(value))
        if cfg.pids_max is not None and "pids" in self.mounts.v1:
            _write(self._dir("pids", path) / "pids.max", str(cfg.pids_max))

    def _apply_v2(self, path: PurePosixPath, cfg: CgroupConfig) -> None:
        d = self._dir("", path)
        if cfg.cpu_shares is not None and (d / "cpu.weight").exists():
            _write(d / "cpu.weight", str(shares_to_weight(cfg.cpu_shares)))
        if cfg.cpu_quota_us is not None and (d / "cpu.max").exists():
            _write(d / "cpu.max", f"{cfg.cpu_quota_us or 'max'} {cfg.cpu_period_us}")
        if cfg.memory_limit is not None and (d / "memory.max").exists():
            _write(d / "memory.max", str(cfg.memory_limit))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
        if cfg.oom_group and (d / "memory.oom.group").exists():
            _write(d / "memory.oom.group", "1")
        if cfg.pids_max is not None and (d / "pids.max").exists():
            _write(d / "pids.max", str(cfg.pids_max))

    def join(self, path: PurePosixPath, pid: int) -> None:
        for f in self.procs_files(path):
            _write(Path(f), str(pid))

    # -- read --------------------------------------------------------------------------------------------------
    def pids(self, path: PurePosixPath) -> list[int]:
        """Every pid in the cgroup on any hierarchy (a process may sit in one hierarchy only after a crash)."""
        out: set[int] = set()
        for d in self.dirs(path):
            out.update(int(x) for x in _read(d / "cgroup.procs").split())
        return sorted(out)

    def oom_kills(self, path: PurePosixPath) -> int:
        """The victim-side counter: v2 memory.events oom_kill, v1 memory.oom_control oom_kill (0 when unknown)."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            text = (self._dir("memory", path) / name).read_text()
        except (OSError, KeyError):
            return 0
        return _keyed(text).get("oom_kill", 0)

    def usage(self, path: PurePosixPath) -> Usage:
        if self.v2:
            d = self._dir("", path)
            cpu_ns = _keyed(_read(d / "cpu.stat")).get("usage_usec", 0) * 1000
            mem = int(_read(d / "memory.current") or 0)
            inactive = _keyed(_read(d / "memory.stat")).get("inactive_file", 0)
        else:
            cpu_ns = int(_read(self._dir("cpuacct", path) / "cpuacct.usage") or 0) if "cpuacct" in self.mounts.v1 else 0
            mem_dir = self._dir("memory", path)
            mem = int(_read(mem_dir / "memory.usage_in_bytes") or 0)
            inactive = _keyed(_read(mem_dir / "memory.stat")).get("total_inactive_file", 0)
        return Usage(cpu_ns, mem, max(0, mem - inactive))

    # -- remove ------------------------------------------------------------------------------------------------
    async def remove(self, path: PurePosixPath) -> bool:
        """rmdir the cgroup and its children, deepest first, on every hierarchy; True when all are gone."""
        ok = True
        for d in self.dirs(path):
            if not d.exists():
                continue
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                ok = await _rmdir(sub) and ok
            ok = await _rmdir(d) and ok
        return ok


async def _rmdir(d: Path) -> bool:
    for _ in range(RMDIR_TRIES):
        try:
            os.rmdir(d)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                log.warning("Could not remove cgroup path=%s error=%s", d, e)
                return False
        await asyncio.sleep(RMDIR_PAUSE)
    log.warning("Cgroup still busy after retries path=%s tries=%d", d, RMDIR_TRIES)
    return False


def _write(f: Path, value: str) -> None:
    with open(f, "w") as fh:
        fh.write(value)


def _read(f: Path) -> str:
    try:
        return f.read_text().strip()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out
