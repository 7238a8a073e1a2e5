"""PodCgroups: the daemon's cgroups, ``<cgroup-root>/kubepods/[qos/]pod<uid>/<container>.<instance>``.

Names derive from the pod UID and the container's record (name + instance), so a restarted daemon re-adopts them
with no state of its own. Each container instance gets a fresh leaf: its OOM counter then speaks only of it, and is
read when the instance exits, before the leaf is removed. The pod cgroup holds the kubelet's pod-level sums and
``--pod-pids-limit``; ``kubepods`` and the QoS cgroups are made once at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

import psutil

from minikubelet.cgroups.detect import Mounts, detect
from minikubelet.cgroups.resources import (
    CgroupConfig,
    QOSClass,
    container_config,
    of_container,
    oom_score_adj,
    pod_config,
    pod_qos,
)
from minikubelet.cgroups.tree import Cgroups, Usage, pod_path
from minikubelet.pod.spec import Pod

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a container process goes before it execs."""

    procs_files: list[str]
    oom_score_adj: int


class PodCgroups:
    def __init__(self, root: str, pids_limit: int, memory_capacity: int, mounts: Mounts | None = None) -> None:
        self.root = "/" + root.strip("/")
        self.pids_limit = pids_limit
        self.memory_capacity = memory_capacity
        self.tree = Cgroups(mounts or detect())

    @property
    def top(self) -> PurePosixPath:
        return PurePosixPath(self.root)

    @property
    def kubepods(self) -> PurePosixPath:
        return self.top / "kubepods"

    def start(self) -> None:
        """Make kubepods and the QoS cgroups (BestEffort gets the minimum cpu shares, as the kubelet sets)."""
        for qos in (QOSClass.BURSTABLE, QOSClass.BESTEFFORT):
            self.tree.create(self.kubepods / qos.value.lower())
        self.tree.apply(self.kubepods / "besteffort", CgroupConfig(cpu_shares=2))
        log.info("Cgroups ready root=%s version=%d", self.kubepods, self.tree.mounts.version)

    def pod_path(self, pod: Pod) -> PurePosixPath:
        return pod_path(self.root, pod_qos(pod.spec), pod.uid)

    def find_pod(self, uid: str) -> PurePosixPath | None:
        for qos in QOSClass:
            path = pod_path(self.root, qos, uid)
            if any(d.exists() for d in self.tree.dirs(path)):
                return path
        return None

    def place(self, pod: Pod, record: str) -> Placement:
        """Create the pod cgroup (with its sums) and the instance's leaf; returns where the process joins."""
        name = record.rsplit(".", 1)[0]
        spec = pod.spec
        container = next(c for c in (*spec.init_containers, *spec.containers) if c.name == name)
        qos = pod_qos(spec)
        pod_cg = pod_path(self.root, qos, pod.uid)
        leaf = pod_cg / record
        self.tree.create(leaf)
        pids = self.pids_limit if self.pids_limit > 0 else None
        self.tree.apply(pod_cg, pod_config([of_container(c) for c in spec.init_containers],
                                           [of_container(c) for c in spec.containers], pids))
        res = of_container(container)
        self.tree.apply(leaf, container_config(res, v2=self.tree.v2))
        adj = oom_score_adj(qos, res.request_memory(), self.memory_capacity)
        return Placement(self.tree.procs_files(leaf), adj)

    async def finished(self, uid: str, record: str) -> bool:
        """An instance exited: True when the OOM killer killed in its cgroup. Its leaf is removed afterwards."""
        pod_cg = self.find_pod(uid)
        if pod_cg is None:
            return False
        leaf = pod_cg / record
        oom = self.tree.oom_kills(leaf) > 0
        await self.tree.remove(leaf)
        return oom

    def usage(self, uid: str, record: str | None = None) -> Usage | None:
        pod_cg = self.find_pod(uid)
        if pod_cg is None:
            return None
        return self.tree.usage(pod_cg / record if record else pod_cg)

    def usage_of_pid(self, pid: int) -> tuple[int, int] | None:
        """(cpu ns, working set bytes) of the container cgroup ``pid`` is in, None unless it is one of ours."""
        for f in self.tree.procs_files_of(pid):
            for base in (self.tree.mounts.unified, self.tree.mounts.v1.get("memory")):
                if base is None:
                    continue
                rel = PurePosixPath("/" + str(PurePosixPath(f).parent.relative_to(base))) if f.startswith(
                    str(base) + "/") else None
                if rel is not None and str(rel).startswith(str(self.kubepods) + "/"):
                    u = self.tree.usage(rel)
                    return u.cpu_usage_ns, u.memory_working_set
        return None

    async def remove_pod(self, uid: str) -> None:
        pod_cg = self.find_pod(uid)
        if pod_cg is not None and not await self.tree.remove(pod_cg):
            log.warning("Pod cgroup not removed uid=%s path=%s", uid, pod_cg)

    async def remove_all(self) -> bool:
        """reset: every cgroup under this daemon's --cgroup-root (and that root), nothing else."""
        return await self.tree.remove(self.top)


def open_cgroups(root: str, pids_limit: int) -> PodCgroups | None:
    """The daemon's cgroups, or None (logged) when the host offers no usable cgroup memory/cpu/pids controllers."""
    mounts = detect()
    if mounts.version == 1 and not mounts.v1:
        log.warning("No cgroup controllers mounted: pods run without limits root=%s", root)
        return None
    cg = PodCgroups(root, pids_limit, psutil.virtual_memory().total, mounts)
    try:
        cg.start()
    except OSError as e:
        log.warning("Cannot create cgroups, pods run without limits root=%s error=%s", root, e)
        return None
    return cg
