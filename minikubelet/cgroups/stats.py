"""What /stats/summary reads of one cgroup: cAdvisor's figures from the kernel's counters, on v1 and v2.

| figure        | v1                                             | v2                               |
|---------------|------------------------------------------------|----------------------------------|
| cpu           | ``cpuacct.usage`` (ns)                         | ``cpu.stat`` ``usage_usec``      |
| usage         | ``memory.usage_in_bytes``                      | ``memory.current``               |
| working set   | usage − ``memory.stat`` ``total_inactive_file`` | usage − ``inactive_file``        |
| rss           | ``total_rss``                                  | ``anon``                         |
| page faults   | ``total_pgfault``, ``total_pgmajfault``        | ``pgfault``, ``pgmajfault``      |
| limit         | ``memory.limit_in_bytes`` (huge = none)        | ``memory.max`` (``max`` = none)  |

``StatsReader`` is what the daemon hands the API (which never imports cgroups): figures by pod and container
record. Blocking file reads: call from a worker thread. Imports cgroups and pod.spec only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from minikubelet.cgroups.pods import PodCgroups
from minikubelet.cgroups.tree import Cgroups
from minikubelet.pod.spec import Pod

UNLIMITED = 1 << 62  # v1 reports "no limit" as 9223372036854771712


@dataclass(frozen=True, slots=True)
class CgroupStats:
    cpu_ns: int
    usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    limit: int | None  # None: no memory limit


def read_stats(tree: Cgroups, path: PurePosixPath) -> CgroupStats | None:
    """The cgroup's figures, None when it does not exist (any more)."""
    rel = str(path).lstrip("/")
    try:
        if tree.mounts.unified is not None:
            d = tree.mounts.unified / rel
            stat = _keyed(_read(d / "memory.stat"))
            cpu_ns = _keyed(_read(d / "cpu.stat")).get("usage_usec", 0) * 1000
            usage = int(_read(d / "memory.current") or 0)
            raw_limit = _read(d / "memory.max")
            inactive, rss = stat.get("inactive_file", 0), stat.get("anon", 0)
            faults, major = stat.get("pgfault", 0), stat.get("pgmajfault", 0)
        else:
            mem = tree.mounts.v1.get("memory")
            cpuacct = tree.mounts.v1.get("cpuacct")
            cpu_ns = int(_read(cpuacct / rel / "cpuacct.usage") or 0) if cpuacct is not None else 0
            if mem is None:
                return CgroupStats(cpu_ns, 0, 0, 0, 0, 0, None)
            stat = _keyed(_read(mem / rel / "memory.stat"))
            usage = int(_read(mem / rel / "memory.usage_in_bytes") or 0)
            raw_limit = _read(mem / rel / "memory.limit_in_bytes")
            inactive, rss = stat.get("total_inactive_file", 0), stat.get("total_rss", 0)
            faults, major = stat.get("total_pgfault", 0), stat.get("total_pgmajfault", 0)
    except FileNotFoundError:
        return None
    limit = int(raw_limit) if raw_limit.isdigit() and int(raw_limit) < UNLIMITED else None
    return CgroupStats(cpu_ns, usage, max(0, usage - inactive), rss, faults, major, limit)


class StatsReader:
    """The figures of a pod's cgroup (``record`` None) or of one container instance's leaf (``<name>.<n>``)."""

    def __init__(self, cgroups: PodCgroups) -> None:
        self.cgroups = cgroups

    def __call__(self, pod: Pod, record: str | None) -> CgroupStats | None:
        path = self.cgroups.pod_path(pod)
        return read_stats(self.cgroups.tree, path / record if record else path)


def _read(f: Path) -> str:
    """The file's text; FileNotFoundError (the cgroup is gone) propagates, other errors read as empty."""
    try:
        return f.read_text().strip()
    except FileNotFoundError:
        raise
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.isdigit():
            out[key] = int(value)
    return out
