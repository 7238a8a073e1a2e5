"""Image garbage collection as the kubelet's (``images/image_gc_manager.go``).

When the store's filesystem is at or above ``--image-gc-high-threshold`` percent used (85), images no pod uses
are removed least recently used first, until usage is down to ``--image-gc-low-threshold`` (80). An image
younger than the minimum age (2 min) or in use by any pod is never removed. Runs every 5 minutes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minikubelet.images.store import ImageStore
from minikubelet.images.tool import prune_blobs

log = logging.getLogger(__name__)

GC_PERIOD = 300.0
MIN_AGE = 120.0


@dataclass(frozen=True, slots=True)
class Candidate:
    reference: str
    image_ids: frozenset[str]  # repo digest and config digest: what in_use may name
    last_used: float
    pulled_at: float
    size: int


def bytes_to_free(capacity: int, available: int, high: int, low: int) -> int:
    """0 below the high threshold, else what brings usage down to the low threshold (kubelet's arithmetic)."""
    if capacity <= 0:
        return 0
    usage = 100 * (capacity - available) // capacity
    if usage < high:
        return 0
    return max(0, capacity * (100 - low) // 100 - available)


def choose(candidates: list[Candidate], in_use: set[str], amount: int, now: float, min_age: float) -> list[Candidate]:
    """Least recently used first, skipping images in use or younger than ``min_age``, until ``amount`` is freed."""
    out: list[Candidate] = []
    freed = 0
    for c in sorted(candidates, key=lambda c: (c.last_used or c.pulled_at, c.reference)):
        if freed >= amount:
            break
        if c.image_ids & in_use or now - c.pulled_at < min_age:
            continue
        out.append(c)
        freed += c.size
    return out


class ImageGC:
    def __init__(
        self,
        store: ImageStore,
        in_use: Callable[[], set[str]],
        high: int = 85,
        low: int = 80,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] | None = None,
        min_age: float = MIN_AGE,
    ) -> None:
        self.store, self.in_use, self.high, self.low = store, in_use, high, low
        self._statvfs = statvfs
        self._clock = clock or time.time
        self.min_age = min_age

    def candidates(self) -> list[Candidate]:
        out = []
        for ref, rec in self.store.refs().items():
            c = self.store.content(ref)
            size = c.size if c else 0
            ids = frozenset({rec.repo_digest, rec.config_digest, rec.manifest_digest})
            out.append(Candidate(ref, ids, rec.last_used, rec.pulled_at, size))
        return out

    def collect(self) -> int:
        """One pass (blocking file work: run it in a thread); returns the bytes of images removed."""
        st = self._statvfs(self.store.root)
        capacity, available = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        amount = bytes_to_free(capacity, available, self.high, self.low)
        if amount == 0:
            return 0
        chosen = choose(self.candidates(), self.in_use(), amount, self._clock(), self.min_age)
        freed = 0
        for c in chosen:
            self.store.remove_image(c.reference)
            freed += c.size
            log.info("Image garbage collection removed image=%s bytes=%d", c.reference, c.size)
        prune_blobs(self.store, min_age=3600.0)  # leftovers of old pulls, never a pull running now
        if freed < amount:
            log.warning(
                "Image garbage collection could not free enough bytes=%d wanted=%d (the rest is in use or new)",
                freed,
                amount,
            )
        return freed
