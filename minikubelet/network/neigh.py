"""Capacity of the kernel's ARP table, which caps how many pods a node can reach.

The IPv4 neighbour table is one table for every network namespace: each pod takes two entries (the host's for the
pod IP, the pod's for its gateway), and once the table holds ``net.ipv4.neigh.default.gc_thresh3`` entries (1024 by
default) the kernel cannot add more, so packets to the pods beyond about 500 are dropped ("neighbour table
overflow"): measured, 560 pods on a default kernel, 49 of them unreachable from the host. minikubelet does not change
host sysctls; ``ArpCapacity`` warns once, with the command that raises the limit, as the pod count approaches it.

``MINIKUBELET_GC_THRESH3_FILE`` names another file to read the limit from (the integration test uses it to reach
the warning with a handful of pods).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["ENTRIES_PER_POD", "RESERVE", "ArpCapacity", "read_gc_thresh3"]

log = logging.getLogger(__name__)

GC_THRESH3 = Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
LIMIT_FILE_ENV = "MINIKUBELET_GC_THRESH3_FILE"
ENTRIES_PER_POD = 2
RESERVE = 32  # entries left for the host's other neighbours
WARN_AT = 0.9  # of the pods that fit
FIX = (
    "sysctl -w net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=8192 "
    "net.ipv4.neigh.default.gc_thresh3=16384"
)


def read_gc_thresh3() -> int | None:
    """The ARP table's hard limit, or None when it cannot be read (then nothing is checked)."""
    path = Path(os.environ.get(LIMIT_FILE_ENV) or GC_THRESH3)
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pods_that_fit(limit: int) -> int:
    return max(0, (limit - RESERVE) // ENTRIES_PER_POD)


class ArpCapacity:
    """Warns once when the pods with an IP reach 90 % of what the ARP table holds; again only after the count fell
    below 80 % (or the limit was raised and reached again). The limit is re-read only near the threshold."""

    def __init__(self, read: Callable[[], int | None] = read_gc_thresh3) -> None:
        self._read = read
        self._limit = read()
        self._warned = False

    def check(self, pods: int) -> bool:
        """Called with the number of pods holding an IP; True when it warned now."""
        if self._limit is None:
            return False
        fit = pods_that_fit(self._limit)
        if pods < WARN_AT * fit:
            if pods < 0.8 * fit:
                self._warned = False
            return False
        if self._warned:
            return False
        self._limit = self._read()  # the admin may have raised it meanwhile
        if self._limit is None or pods < WARN_AT * (fit := pods_that_fit(self._limit)):
            return False
        self._warned = True
        log.warning(
            "The kernel's ARP table is nearly full: each pod needs %d of its entries and net.ipv4.neigh.default."
            "gc_thresh3=%d (one table for all network namespaces) holds about %d pods, so pods beyond that will be "
            "unreachable; raise it with: %s pods=%d",
            ENTRIES_PER_POD,
            self._limit,
            fit,
            FIX,
            pods,
        )
        return True
