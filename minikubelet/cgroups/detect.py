"""Which cgroup mode the host runs (v2 unified, or v1 / hybrid) and where each controller is mounted, read once at
start from ``/proc/self/mountinfo`` (as runc's ``IsCgroup2UnifiedMode`` does with statfs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")  # cpuset is skipped: a new cpuset cgroup refuses tasks
V2_CONTROLLERS = ("cpu", "memory", "pids")


@dataclass(frozen=True, slots=True)
class Mounts:
    """``unified`` is the cgroup2 mount when the host is v2-only; ``v1`` maps controller -> hierarchy mount."""

    unified: Path | None = None
    v1: dict[str, Path] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return 2 if self.unified is not None else 1


def parse_mountinfo(text: str) -> Mounts:
    unified: Path | None = None
    v1: dict[str, Path] = {}
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mountpoint, fstype, options = Path(fields[4].replace("\\040", " ")), tail[0], tail[2].split(",")
        if fstype == "cgroup2" and mountpoint == Path("/sys/fs/cgroup"):
            unified = mountpoint
        elif fstype == "cgroup":
            for ctrl in V1_CONTROLLERS:
                if ctrl in options:
                    v1.setdefault(ctrl, mountpoint)
    return Mounts(unified=unified, v1={} if unified else v1)


def detect(mountinfo: Path = Path("/proc/self/mountinfo")) -> Mounts:
    return parse_mountinfo(mountinfo.read_text())
