"""Probes (liveness, readiness, startup): the seam between the prober and the pod worker.

The pod worker implements ``PodView``; the prober (``probe/manager.py`` + ``probe/worker.py`` + ``probe/handlers.py``)
reads container state through it and reports a result only when the published result changes (kubelet semantics,
kubelet-semantics.md §2). The pod worker decides what a result means: readiness sets ``ready``, startup sets
``started``, a liveness (or startup) Failure kills and recreates the whole pod.

Owns: one asyncio worker per (pod, container, probe kind) (``manager``, ``worker``), the handlers (``handlers``:
httpGet, tcpSocket, exec) and the kubelet's prober metrics (``metrics``).
May import: errors, pod.spec, pod.env ($(VAR) in exec commands). Never the pod worker: it reads a ``PodView``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from minikubelet.pod.spec import ProbeKind

__all__ = ["ContainerView", "PodView", "ProbeKind", "ProbeResult"]


class ProbeResult(StrEnum):
    SUCCESS = "Success"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class ContainerView:
    """What a probe worker may know about one container right now."""

    running: bool
    container_id: str  # changes with every new instance (restart or pod recreation)
    started_at: float | None  # wall clock (time.time()) of state.running.startedAt; persisted across daemon restarts
    started: bool  # the startup probe has succeeded (True at once when there is none)
    will_restart: bool  # False once it exited and will not run again (then the worker ends)
    ready: bool = False  # the container's ready as last set (persisted across daemon restarts)


class PodView(Protocol):
    """Implemented by the pod worker."""

    @property
    def uid(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    def pod_ip(self) -> str:
        """The pod IP, '' while there is no sandbox."""
        ...

    def container_view(self, container: str) -> ContainerView | None: ...

    def deleting(self) -> bool:
        """The pod is terminating (deletionTimestamp set): liveness/startup stop, readiness goes on."""
        ...

    def finished(self) -> bool:
        """The pod reached Succeeded or Failed: every probe worker ends."""
        ...

    def probe_result(self, container: str, kind: ProbeKind, result: ProbeResult, message: str) -> None:
        """Called when the published result of (container, kind) changes (after the thresholds)."""
        ...

    def record_event(self, type_: str, reason: str, message: str, container: str) -> None: ...

    async def exec_in_container(self, container: str, argv: list[str], timeout: float) -> tuple[int | None, bytes]:
        """Run argv in the container (its mount namespace too): (exit code, stdout+stderr capped at 10 KiB);
        exit code None means it timed out and was killed. Raises MinikubeletError when it cannot start."""
        ...
