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
from pathlib import PurePosixPath

from minikubelet.cgroups.pods import PodCgroups
from minikubelet.cgroups.resources import QOSClass, pod_qos
from minikubelet.cgroups.tree import Cgroups
from minikubelet.pod.spec import Pod

UNLIMITED = 1 << 62  # v1 reports "no limit" as 9223372036854771712
V1_STAT = (b"total_inactive_file", b"total_rss", b"total_pgfault", b"total_pgmajfault")
V2_STAT = (b"inactive_file", b"anon", b"pgfault", b"pgmajfault")


@dataclass(frozen=True, slots=True)
class CgroupStats:
    cpu_ns: int
    usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    limit: int | None  # None: no memory limit (or not read)


def read_stats(tree: Cgroups, path: PurePosixPath | str, limit: bool = True) -> CgroupStats | None:
    """The cgroup's figures, None when it does not exist (any more); ``limit`` False skips the limit's file.

    Plain strings and raw reads: with 250 pods, pathlib's parsing cost more than the kernel's answers."""
    rel = "/" + str(path).strip("/")
    try:
        if tree.mounts.unified is not None:
            d = f"{tree.mounts.unified}{rel}/"
            usage = _int(d + "memory.current")
            stat = _stat(d + "memory.stat", V2_STAT)
            cpu_ns = _stat(d + "cpu.stat", (b"usage_usec",))[0] * 1000
            raw_limit = _raw(d + "memory.max") if limit else b""
        else:
            mem = tree.mounts.v1.get("memory")
            cpuacct = tree.mounts.v1.get("cpuacct")
            cpu_ns = _int(f"{cpuacct}{rel}/cpuacct.usage") if cpuacct is not None else 0
            if mem is None:
                return CgroupStats(cpu_ns, 0, 0, 0, 0, 0, None)
            d = f"{mem}{rel}/"
            usage = _int(d + "memory.usage_in_bytes")
            stat = _stat(d + "memory.stat", V1_STAT)
            raw_limit = _raw(d + "memory.limit_in_bytes") if limit else b""
    except FileNotFoundError:
        return None
    inactive, rss, faults, major = stat
    cap = int(raw_limit) if raw_limit.isdigit() else UNLIMITED
    return CgroupStats(cpu_ns, usage, max(0, usage - inactive), rss, faults, major, cap if cap < UNLIMITED else None)


class StatsReader:
    """The figures of a pod's cgroup (``record`` None) or of one container instance's leaf (``<name>.<n>``)."""

    def __init__(self, cgroups: PodCgroups) -> None:
        self.cgroups = cgroups
        self._paths: dict[str, str] = {}  # pod uid -> its cgroup path (a pod's QoS class never changes)

    def __call__(self, pod: Pod, record: str | None, limit: bool = True) -> CgroupStats | None:
        path = self._paths.get(pod.uid)
        if path is None:
            qos = pod_qos(pod.spec)
            base = f"{self.cgroups.kubepods}" if qos is QOSClass.GUARANTEED else \
                f"{self.cgroups.kubepods}/{qos.value.lower()}"
            if len(self._paths) > 10000:  # pods come and go: never grow without bound
                self._paths.clear()
            path = self._paths[pod.uid] = f"{base}/pod{pod.uid}"
        return read_stats(self.cgroups.tree, f"{path}/{record}" if record else path, limit)


def _raw(f: str) -> bytes:
    """The file's bytes; FileNotFoundError (the cgroup is gone) propagates, other errors read as empty."""
    try:
        with open(f, "rb", buffering=0) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        raise
    except OSError:
        return b""


def _int(f: str) -> int:
    raw = _raw(f)
    return int(raw) if raw.isdigit() else 0


def _stat(f: str, keys: tuple[bytes, ...]) -> list[int]:
    """The values of ``keys`` in a flat-keyed file (memory.stat, cpu.stat), 0 for a missing one."""
    words = _raw(f).split()
    found = dict(zip(words[::2], words[1::2], strict=False))
    return [int(found.get(k, b"0")) for k in keys]
