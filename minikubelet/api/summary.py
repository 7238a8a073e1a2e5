"""The kubelet's Summary API, ``GET /stats/summary`` (k8s.io/kubelet ``pkg/apis/stats/v1alpha1`` Summary).

``node``: CPU from /proc/stat, memory from /proc/meminfo and /proc/vmstat (the kubelet's root-cgroup rules: working
set = usage − inactive file, available = capacity − working set), ``fs`` and ``runtime.imageFs`` from the data dir's
filesystem. ``pods``: per container its cgroup's counters (cgroups/stats.py), the pod's from the pod cgroup; on a host
without cgroups the /proc figures kubectl top uses (api/metrics.py), summed for the pod. ``network`` is the pod's
``/proc/<pause>/net/dev``. usageNanoCores is a rate from the reading before, shared with kubectl top (the
``Sampler``); a first call takes the counter's life so far, so no request sleeps. Every file is read in a worker
thread. ``?only_cpu_and_memory=true`` leaves out fs and network, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from minikubelet.api.errors import not_found_error
from minikubelet.api.metrics import NODE_KEY, boot_at, born_at, node_cpu_seconds, tree_reading
from minikubelet.pod.status import State
from minikubelet.runtime.proc import start_time
from minikubelet.timefmt import rfc3339

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext, CgroupFigures, UsageSampler
    from minikubelet.pod.spec import Pod
    from minikubelet.pod.worker import PodWorker

__all__ = ["get_summary"]


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    name: str
    pid: int
    start: int | None
    started_at: float | None
    record: str  # its cgroup leaf under the pod's: <name>.<instance>


@dataclass(frozen=True, slots=True)
class PodPlan:
    """What the worker thread needs of one pod, taken on the loop (workers are not thread-safe)."""

    pod: Pod
    start_time: float | None
    created: float | None  # wall time its sandbox (and pod cgroup) was made
    sandbox: tuple[int, int] | None  # (pid, start) of pause
    containers: list[ContainerPlan]


def _plan(w: PodWorker) -> PodPlan | None:
    sb = w.state.sandbox
    if sb is None or w.state.terminating is not None:
        return None
    containers = []
    for c in w.pod.spec.containers:
        rec = w.state.records.get(c.name)
        if rec is None or rec.state is not State.RUNNING or rec.pid is None:
            continue
        containers.append(ContainerPlan(c.name, rec.pid, rec.start, rec.started_at, f"{c.name}.{rec.instances - 1}"))
    return PodPlan(w.pod, w.state.start_time, sb.created_at, (sb.pid, sb.start), containers)


async def get_summary(server: ApiContext, request: web.Request) -> web.Response:
    name = request.match_info.get("name")
    if name is not None and name != server.node_name:
        raise not_found_error("nodes", name)
    only_cpu_memory = request.query.get("only_cpu_and_memory", "").lower() == "true"
    sampler = server.metrics
    plans = [p for w in server.workers() if (p := _plan(w)) is not None]
    images = server.node.images
    data_dir = server.node.data_dir
    summary = await asyncio.to_thread(_collect, sampler, server.node_name, plans, data_dir,
                                      images, not only_cpu_memory)
    return web.json_response(summary)


def _collect(sampler: UsageSampler, node_name: str, plans: list[PodPlan], data_dir: Path,
             images: Any, with_fs: bool) -> dict[str, Any]:
    node = _node(sampler, node_name, data_dir, images, with_fs)
    stamp = rfc3339(time.time())
    pods = [_pod(sampler, p, with_fs, stamp) for p in plans]
    return {"node": node, "pods": pods}


# ----- node ---------------------------------------------------------------------------------------------------------

def _node(sampler: UsageSampler, node_name: str, data_dir: Path, images: Any, with_fs: bool) -> dict[str, Any]:
    stamp = rfc3339(time.time())
    cpu_seconds = node_cpu_seconds()
    cores, _ = sampler.rate(NODE_KEY, cpu_seconds, boot_at())
    mem = _keyed(Path("/proc/meminfo"), ":")
    vm = _keyed(Path("/proc/vmstat"))
    total = mem.get("MemTotal", 0)
    usage = total - mem.get("MemFree", 0)
    working_set = max(0, usage - mem.get("Inactive(file)", 0))
    out: dict[str, Any] = {
        "nodeName": node_name,
        "startTime": rfc3339(psutil.boot_time()),
        "cpu": {"time": stamp, "usageNanoCores": round(cores * 1e9),
                "usageCoreNanoSeconds": round(cpu_seconds * 1e9)},
        "memory": {"time": stamp, "availableBytes": max(0, total - working_set), "usageBytes": usage,
                   "workingSetBytes": working_set, "rssBytes": mem.get("AnonPages", 0),
                   "pageFaults": vm.get("pgfault", 0), "majorPageFaults": vm.get("pgmajfault", 0)},
    }
    if with_fs:
        fs = _fs(data_dir, stamp)
        out["fs"] = fs
        image_fs = dict(fs)
        if callable(images):
            image_fs["usedBytes"] = sum(int(i.get("sizeBytes", 0)) for i in images())
        out["runtime"] = {"imageFs": image_fs}
    return out


def _fs(path: Path, stamp: str | None) -> dict[str, Any]:
    try:
        st = os.statvfs(path)
    except OSError:
        return {"time": stamp}
    return {"time": stamp, "availableBytes": st.f_bavail * st.f_frsize, "capacityBytes": st.f_blocks * st.f_frsize,
            "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize, "inodesFree": st.f_ffree, "inodes": st.f_files,
            "inodesUsed": st.f_files - st.f_ffree}


# ----- pods ---------------------------------------------------------------------------------------------------------

def _cpu(sampler: UsageSampler, key: tuple[str, str, int, int], cpu_ns: int, born: float | None, stamp: str | None
         ) -> dict[str, Any]:
    cores, _ = sampler.rate(key, cpu_ns / 1e9, born)
    return {"time": stamp, "usageNanoCores": round(cores * 1e9), "usageCoreNanoSeconds": cpu_ns}


def _memory(s: CgroupFigures, stamp: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": stamp}
    if s.limit is not None:
        out["availableBytes"] = max(0, s.limit - s.working_set)
    out.update(usageBytes=s.usage, workingSetBytes=s.working_set, rssBytes=s.rss, pageFaults=s.page_faults,
               majorPageFaults=s.major_page_faults)
    return out


def _wall_to_monotonic(wall: float | None) -> float | None:
    return None if wall is None else time.monotonic() - max(0.0, time.time() - wall)


def _pod(sampler: UsageSampler, p: PodPlan, with_fs: bool, stamp: str | None) -> dict[str, Any]:
    read = sampler.cgroup_stats
    uid = p.pod.uid
    containers: list[dict[str, Any]] = []
    total_cpu_ns, total_cores, memory = 0, 0, [0, 0, 0]
    for c in p.containers:
        entry: dict[str, Any] = {"name": c.name, "startTime": rfc3339(c.started_at)}
        key = (uid, c.name, c.pid, c.start or 0)
        stats = read(p.pod, c.record, True) if read is not None else None
        if stats is not None:
            entry["cpu"] = _cpu(sampler, key, stats.cpu_ns, born_at(c.start), stamp)
            entry["memory"] = _memory(stats, stamp)
        else:  # no cgroup: the process tree's /proc figures, as kubectl top reads them
            reading = tree_reading(c.pid, c.start)
            if reading is None:
                continue
            cores, _ = sampler.rate(key, reading.cpu_seconds, born_at(c.start))
            cpu_ns = round(reading.cpu_seconds * 1e9)
            entry["cpu"] = {"time": stamp, "usageNanoCores": round(cores * 1e9), "usageCoreNanoSeconds": cpu_ns}
            entry["memory"] = {"time": stamp, "usageBytes": reading.memory_bytes,
                               "workingSetBytes": reading.memory_bytes, "rssBytes": reading.memory_bytes}
        total_cpu_ns += entry["cpu"]["usageCoreNanoSeconds"]
        total_cores += entry["cpu"]["usageNanoCores"]
        for i, field in enumerate(("usageBytes", "workingSetBytes", "rssBytes")):
            memory[i] += entry["memory"].get(field, 0)
        containers.append(entry)
    out: dict[str, Any] = {"podRef": {"name": p.pod.name, "namespace": p.pod.namespace, "uid": uid},
                           "startTime": rfc3339(p.start_time if p.start_time is not None else p.created),
                           "containers": containers}
    pod_stats = read(p.pod, None, True) if read is not None else None
    if pod_stats is not None:
        out["cpu"] = _cpu(sampler, (uid, "", 0, 0), pod_stats.cpu_ns, _wall_to_monotonic(p.created), stamp)
        out["memory"] = _memory(pod_stats, stamp)
    elif containers:
        out["cpu"] = {"time": stamp, "usageNanoCores": total_cores, "usageCoreNanoSeconds": total_cpu_ns}
        out["memory"] = {"time": stamp, "usageBytes": memory[0], "workingSetBytes": memory[1], "rssBytes": memory[2]}
    if with_fs and p.sandbox is not None and (net := _network(*p.sandbox, stamp)) is not None:
        out["network"] = net
    return out


def _network(pid: int, start: int, stamp: str | None) -> dict[str, Any] | None:
    """The pod's interfaces from /proc/<pause>/net/dev (its network namespace's view), eth0 as the default."""
    try:
        text = Path(f"/proc/{pid}/net/dev").read_text()
    except OSError:
        return None
    if start_time(pid) != start:
        return None  # pause is gone and its pid reused: not this pod's figures
    interfaces = []
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        f = counters.split()
        if name.strip() == "lo" or len(f) < 11:
            continue
        interfaces.append({"name": name.strip(), "rxBytes": int(f[0]), "rxErrors": int(f[2]), "txBytes": int(f[8]),
                           "txErrors": int(f[10])})
    default = next((i for i in interfaces if i["name"] == "eth0"), interfaces[0] if interfaces else None)
    out: dict[str, Any] = {"time": stamp}
    if default is not None:
        out.update(default)
    out["interfaces"] = interfaces
    return out


def _keyed(path: Path, sep: str = " ") -> dict[str, int]:
    """``KEY VALUE`` lines (/proc/vmstat), or with ``sep=":"`` /proc/meminfo's ``KEY:  VALUE kB``, in bytes."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(sep)
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out
