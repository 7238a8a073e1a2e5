"""One pod's observed state as its worker keeps it: the data the API view, the run-dir record and exec read.

Owner: the pod's ``PodWorker`` (pod/worker.py) and its two parts (pod/sandbox.py, pod/containers.py) are the only
writers; pod/apiview, pod/record and pod/exec read it (record also loads it on re-adoption). Imports pod.spec,
pod.status, pod.backoff and runtime.linux (for ``Sandbox``) only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from minikubelet.pod.backoff import Backoff
from minikubelet.pod.spec import Container, Pod
from minikubelet.pod.status import ContainerRecord, PodConditions, PodPhase, compute_phase
from minikubelet.runtime.linux import Sandbox


@dataclass(slots=True)
class Terminating:
    """A deletion in progress: the grace period it was given, since when, and an event set once the pod is gone."""

    grace: int
    since: float
    reason: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class PodState:
    """What one pod is now: its spec, its containers' records, its sandbox, conditions, back-off and version."""

    pod: Pod
    version: int
    records: dict[str, ContainerRecord] = field(default_factory=dict)
    sandbox: Sandbox | None = None
    created_at: float = field(default_factory=time.time)
    start_time: float | None = None
    terminal: bool = False  # Succeeded or Failed: nothing runs or restarts any more
    admitted: bool = False  # the nodeSelector matched once (a running pod is never evicted by a label change)
    rejected: tuple[str, str] | None = None  # (reason, message) of a failed resource admission: the pod is Failed
    terminating: Terminating | None = None
    conditions: PodConditions = field(default_factory=PodConditions)
    backoff: Backoff = field(default_factory=Backoff)
    # (manifest, its deep copy) shared by every API snapshot of this pod: snapshots are read-only, so successive
    # versions in the watch history share the unchanged spec instead of each holding a copy (issue 9, point 2)
    api_base: tuple[Any, dict[str, Any]] | None = None

    @classmethod
    def new(cls, pod: Pod, version: int) -> PodState:
        """A pod not started yet: every container waiting (init containers with PodInitializing)."""
        first = "PodInitializing" if pod.spec.init_containers else "ContainerCreating"
        records = {
            c.name: ContainerRecord(c.name, c.image, init=True, reason="PodInitializing")
            for c in pod.spec.init_containers
        }
        records.update({c.name: ContainerRecord(c.name, c.image, reason=first) for c in pod.spec.containers})
        return cls(pod, version, records)

    def phase(self) -> PodPhase:
        if self.rejected is not None:
            return PodPhase.FAILED
        return compute_phase(self.pod, self.records)

    def app_container(self, name: str) -> Container | None:
        """The spec of app container ``name`` (not an init container), or None."""
        return next((c for c in self.pod.spec.containers if c.name == name), None)
