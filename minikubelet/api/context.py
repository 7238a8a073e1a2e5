"""ApiContext: what the route modules read of the API server, so that none of them imports api/app.py back.

``ApiServer`` (api/app.py) implements it; the route modules (pods, podpatch, nodes, events, access, metrics,
logs, exec, portforward) take it as their first argument. Imports events, manifests.store, node, pod and
api.watch only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from minikubelet.api.watch import WatchHub
from minikubelet.events import EventRecorder
from minikubelet.manifests.store import ManifestStore
from minikubelet.node.node import Node
from minikubelet.pod.spec import Pod
from minikubelet.pod.worker import PodWorker

UsageKey = tuple[str, str, int, int]  # (pod uid, container, pid, start), as api/metrics.py keys its readings


class CgroupFigures(Protocol):
    """One cgroup's counters as /stats/summary reports them (cgroups/stats.py ``CgroupStats``)."""

    @property
    def cpu_ns(self) -> int: ...
    @property
    def usage(self) -> int: ...
    @property
    def working_set(self) -> int: ...
    @property
    def rss(self) -> int: ...
    @property
    def page_faults(self) -> int: ...
    @property
    def major_page_faults(self) -> int: ...
    @property
    def limit(self) -> int | None: ...


class UsageSampler(Protocol):
    """kubectl top's readings (api/metrics.py ``Sampler``): (cores, bytes, window seconds) per key."""

    def usage(self, targets: dict[UsageKey, tuple[int, int | None]],
              cgroups: dict[UsageKey, tuple[Pod, str]] | None = None) -> dict[UsageKey, tuple[float, int, float]]: ...

    def rate(self, key: UsageKey, cpu_seconds: float, born: float | None) -> tuple[float, float]:
        """(cores, window seconds) of a cumulative CPU series read now (api/summary.py's figures)."""
        ...

    @property
    def cgroup_stats(self) -> Callable[[Pod, str | None, bool], CgroupFigures | None] | None:
        """The figures of a pod's cgroup (record None) or of a container instance's (``<name>.<n>``), with its
        memory limit if asked; None when it has none, or when the host has no cgroups (cgroups/stats.py
        ``StatsReader``)."""
        ...


class ApiContext(Protocol):
    @property
    def node_name(self) -> str: ...

    @property
    def node(self) -> Node: ...

    @property
    def store(self) -> ManifestStore:
        """Writes to the manifest directory (create, rewrite, delete a pod's file)."""
        ...

    @property
    def events(self) -> EventRecorder: ...

    @property
    def hub(self) -> WatchHub: ...

    @property
    def metrics(self) -> UsageSampler: ...

    @property
    def write_lock(self) -> asyncio.Lock:
        """Held by every write to the manifest directory, so read-modify-write requests do not interleave."""
        ...

    @property
    def manifest_errors(self) -> Callable[[], dict[str, str]]:
        """Refused manifest files right now: {path: message}."""
        ...

    def workers(self) -> list[PodWorker]:
        """Every pod worker, terminating ones included, in (namespace, name, creation) order."""
        ...

    def version(self) -> int:
        """The newest resourceVersion."""
        ...

    def bump_version(self) -> int:
        """Take a new resourceVersion (a write that changes no pod, e.g. node labels)."""
        ...

    def defined(self, namespace: str, name: str) -> Pod | None:
        """The pod as the manifest directory defines it now (None once its file or document is gone)."""
        ...

    def find_pod(self, namespace: str, name: str) -> PodWorker | None:
        """The live (newest) worker of namespace/name, or None."""
        ...

    def snapshot(self, worker: PodWorker) -> dict[str, Any]:
        """The worker's v1 Pod, cached per version."""
        ...
