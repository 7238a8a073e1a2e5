"""The resource metrics API (``metrics.k8s.io/v1beta1``) that ``kubectl top pod`` and ``kubectl top node`` read.

On a cluster metrics-server serves it from the kubelets' cAdvisor figures; here the daemon measures its own pods:
with cgroups (``Sampler.cgroup_usage``) a container's figures are its cgroup's (working set, cpu usage), else from
/proc (psutil: its main process and every descendant, memory as resident set size); the node's from /proc/stat and
the machine's memory. CPU is a rate from the reading before (as metrics-server does with its scrapes); a first
request takes the counter's life so far as its window (the container's since it started, the node's since boot), so
no request ever sleeps for a second reading. Reading /proc happens in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from minikubelet.api.errors import not_found_error
from minikubelet.api.pods import check_namespace
from minikubelet.api.selectors import label_selector
from minikubelet.pod.spec import Pod
from minikubelet.pod.status import State
from minikubelet.runtime.proc import start_time
from minikubelet.timefmt import rfc3339

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext, CgroupFigures
    from minikubelet.pod.worker import PodWorker

__all__ = [
    "GROUP_VERSION", "Sampler", "aggregated_group", "group", "list_node_metrics", "list_pod_metrics", "resource_list",
]

GROUP_VERSION = "metrics.k8s.io/v1beta1"
MIN_WINDOW = 0.2  # seconds: a newer reading is too close to measure a rate against
RECENT = 60.0  # seconds: an older reading of a container or pod is no window start (its life so far is)
KEEP = 8  # readings kept per series (the newest window start and the ones too recent to be one yet)
NODE_KEY = ("", "", 0, 0)


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # monotonic
    cpu_seconds: float
    memory_bytes: int


def tree_reading(pid: int, start: int | None) -> Reading | None:
    """CPU seconds and RSS of a process and its descendants (reaped descendants' CPU included), None if gone."""
    try:
        root = psutil.Process(pid)
        if start is not None and start_time(pid) != start:
            return None
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu, memory = 0.0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                memory += proc.memory_info().rss
        except psutil.Error:
            continue
    return Reading(time.monotonic(), cpu, memory)


def node_cpu_seconds() -> float:
    """Busy CPU seconds of the machine since boot, from /proc/stat (guest time is already in user time)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _node_reading() -> Reading:
    vm = psutil.virtual_memory()
    return Reading(time.monotonic(), node_cpu_seconds(), vm.total - vm.available)


def born_at(start: int | None) -> float | None:
    """The monotonic instant a process started (``start`` in clock ticks since boot), None if unknown."""
    if start is None:
        return None
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - start / os.sysconf("SC_CLK_TCK")
    return time.monotonic() - max(age, 0.0)


def boot_at() -> float:
    """The monotonic instant of boot: where the node's /proc/stat counters started from zero."""
    return time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)


Key = tuple[str, str, int, int]  # (pod uid, container, pid, start): a new process starts a new series


class Sampler:
    """Recent readings of every container (and the node, and /stats/summary's pods), to measure a rate against.

    A rate runs from the newest reading at least ``MIN_WINDOW`` old and, but for the node's, at most ``RECENT``;
    when there is none (a first call), from the start of the counter: the process's start for a container (its
    cgroup and its /proc times count from zero there), boot for the node. So no call ever sleeps to take a second
    reading. Thread-safe: both kubectl top and /stats/summary read in worker threads."""

    def __init__(self) -> None:
        self._series: dict[Key, list[Reading]] = {}
        self._lock = threading.Lock()
        # the daemon's cgroup counters when it has cgroups: pid -> (cpu ns, working set bytes) of its container's
        # cgroup, None when that process is in none of ours
        self.cgroup_usage: Callable[[int], tuple[int, int] | None] | None = None
        # /stats/summary's (api/summary.py): the figures of a pod's cgroup or of one container instance's
        self.cgroup_stats: Callable[[Pod, str | None, bool], CgroupFigures | None] | None = None

    def usage(self, targets: dict[Key, tuple[int, int | None]],
              cgroups: dict[Key, tuple[Pod, str]] | None = None) -> dict[Key, tuple[float, int, float]]:
        """(CPU cores, memory bytes, window seconds) per target key; blocking: call it in a thread. The node is
        ``NODE_KEY``; a container whose process is gone is left out. ``cgroups`` names a container's cgroup leaf
        (its pod and record), read by path rather than found through its pid."""
        out: dict[Key, tuple[float, int, float]] = {}
        for key, (pid, start) in targets.items():
            leaf = cgroups.get(key) if cgroups else None
            got = self.cgroup_stats(*leaf, False) if leaf is not None and self.cgroup_stats is not None else None
            after = Reading(time.monotonic(), got.cpu_ns / 1e9, got.working_set) if got is not None \
                else self._read(key, pid, start)
            if after is None:
                continue
            born = boot_at() if key == NODE_KEY else born_at(start)
            cores, window = self._rate(key, after, born)
            out[key] = (cores, after.memory_bytes, window)
        self.prune()
        return out

    def prune(self) -> None:
        """Forget the series not read for ``RECENT`` seconds (containers that are gone, pods no longer asked for);
        the node's is kept: its next window runs from its last reading, however old."""
        now = time.monotonic()
        with self._lock:
            for k in [k for k, s in self._series.items() if now - s[-1].at > RECENT and k != NODE_KEY]:
                del self._series[k]

    def rate(self, key: Key, cpu_seconds: float, born: float | None) -> tuple[float, float]:
        """(cores, window seconds) of the cumulative CPU series ``key`` read now; see ``_rate``."""
        return self._rate(key, Reading(time.monotonic(), cpu_seconds, 0), born)

    def _rate(self, key: Key, after: Reading, born: float | None) -> tuple[float, float]:
        """(cores, window seconds) of the series ``key`` up to ``after``, which is then remembered. ``born`` is
        where the counter started from zero (None: unknown, then a first reading gives 0 over no window)."""
        with self._lock:
            series = self._series.get(key, [])
            oldest = float("inf") if key == NODE_KEY else RECENT
            before = next((r for r in reversed(series) if MIN_WINDOW <= after.at - r.at <= oldest), None)
            if before is None:
                before = Reading(born, 0.0, 0) if born is not None else after
            newer = [r for r in series if r.at > before.at][-(KEEP - 2):]  # all too recent to start a window
            self._series[key] = [*([before] if before in series else []), *newer, after]
        window = after.at - before.at
        if window <= 0:
            return 0.0, 0.0
        return max(0.0, after.cpu_seconds - before.cpu_seconds) / max(window, 1e-3), window

    def _read(self, key: Key, pid: int, start: int | None) -> Reading | None:
        if key == NODE_KEY:
            return _node_reading()
        if self.cgroup_usage is not None and (got := self.cgroup_usage(pid)) is not None:
            return Reading(time.monotonic(), got[0] / 1e9, got[1])
        return tree_reading(pid, start)


def _cpu(cores: float) -> str:
    return f"{round(cores * 1e9)}n"


def _memory(size: int) -> str:
    return f"{size // 1024}Ki"


def _window(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _running(w: PodWorker) -> dict[str, tuple[int, int | None, str]]:
    """name -> (pid, start, record: its cgroup leaf) of every running container."""
    out: dict[str, tuple[int, int | None, str]] = {}
    for c in w.pod.spec.containers:
        rec = w.state.records.get(c.name)
        if rec is not None and rec.state is State.RUNNING and rec.pid is not None:
            out[c.name] = (rec.pid, rec.start, f"{c.name}.{rec.instances - 1}")
    return out


async def list_pod_metrics(server: ApiContext, request: web.Request) -> web.Response:
    ns = request.match_info.get("namespace")
    if ns is not None:
        check_namespace(ns)
    name = request.match_info.get("name")
    labels = label_selector(request.query.get("labelSelector"))
    workers = [w for w in server.workers() if w.state.terminating is None and (ns is None or w.pod.namespace == ns)
               and (name is None or w.pod.name == name) and labels(w.pod.labels)]
    targets: dict[Key, tuple[int, int | None]] = {}
    leaves: dict[Key, tuple[Pod, str]] = {}
    for w in workers:
        for cname, (pid, start, record) in _running(w).items():
            key = (w.pod.uid, cname, pid, start or 0)
            targets[key] = (pid, start)
            leaves[key] = (w.pod, record)
    usage = await asyncio.to_thread(server.metrics.usage, targets, leaves) if targets else {}
    items = []
    stamp = rfc3339(time.time())
    by_pod: dict[str, list[tuple[Key, tuple[float, int, float]]]] = {}
    for k, u in usage.items():
        by_pod.setdefault(k[0], []).append((k, u))
    for w in workers:
        mine = by_pod.get(w.pod.uid)
        if not mine:
            continue  # metrics-server has nothing for a pod that runs no container yet
        containers = [{"name": k[1], "usage": {"cpu": _cpu(u[0]), "memory": _memory(u[1])}} for k, u in mine]
        window = max(u[2] for _, u in mine)
        items.append({"metadata": {"name": w.pod.name, "namespace": w.pod.namespace,
                                   "creationTimestamp": rfc3339(w.state.created_at), "labels": w.pod.labels},
                      "timestamp": stamp, "window": _window(window), "containers": containers})
    if name is not None:
        if not items:
            raise not_found_error("pods.metrics.k8s.io", name)
        return web.json_response({"kind": "PodMetrics", "apiVersion": GROUP_VERSION, **items[0]})
    return web.json_response({"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})


async def list_node_metrics(server: ApiContext, request: web.Request) -> web.Response:
    name = request.match_info.get("name")
    if name is not None and name != server.node_name:
        raise not_found_error("nodes.metrics.k8s.io", name)
    labels = label_selector(request.query.get("labelSelector"))
    node_labels = dict(sorted(server.node.labels.items()))  # not to_api(): that reads /proc and statvfs here
    usage = await asyncio.to_thread(server.metrics.usage, {NODE_KEY: (0, None)})
    cores, memory, window = usage[NODE_KEY]
    item = {"metadata": {"name": server.node_name, "creationTimestamp": rfc3339(server.node.created_at),
                         "labels": node_labels}, "timestamp": rfc3339(time.time()), "window": _window(window),
            "usage": {"cpu": _cpu(cores), "memory": _memory(memory)}}
    if name is not None:
        return web.json_response({"kind": "NodeMetrics", "apiVersion": GROUP_VERSION, **item})
    items = [item] if labels(node_labels) else []
    return web.json_response({"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})


RESOURCES: list[dict[str, Any]] = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]


async def resource_list(request: web.Request) -> web.Response:
    return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
                              "resources": RESOURCES})


def group() -> dict[str, Any]:
    """The APIGroup entry of ``/apis``."""
    version = {"groupVersion": GROUP_VERSION, "version": "v1beta1"}
    return {"name": "metrics.k8s.io", "versions": [version], "preferredVersion": version}


def aggregated_group() -> dict[str, Any]:
    """The APIGroupDiscovery entry of the aggregated ``/apis``."""
    resources = [{"resource": r["name"], "responseKind": {"group": "metrics.k8s.io", "version": "v1beta1",
                                                          "kind": r["kind"]},
                  "scope": "Namespaced" if r["namespaced"] else "Cluster", "singularResource": r["name"][:-1],
                  "verbs": r["verbs"]} for r in RESOURCES]
    return {"metadata": {"name": "metrics.k8s.io", "creationTimestamp": None},
            "versions": [{"version": "v1beta1", "freshness": "Current", "resources": resources}]}
