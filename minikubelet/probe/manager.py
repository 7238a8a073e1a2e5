"""ProbeManager: owns every probe worker task.

One worker per (pod uid, container, kind) for the probes defined on regular containers (never init containers).
Nothing here blocks: ``add_pod``/``update_pod``/``remove_pod`` only create or cancel tasks, and each worker is its own
task, so a hanging target delays nobody else (kubelet-semantics.md §2.2, prober_manager.go).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from minikubelet.pod.spec import Container, Pod, Probe, ProbeKind
from minikubelet.probe import PodView, ProbeResult
from minikubelet.probe.handlers import Outcome, exec_probe, http_get, tcp_socket
from minikubelet.probe.metrics import ProbeMetrics, Series
from minikubelet.probe.worker import Clock, ProbeWorker, RealClock, Runner

__all__ = ["ProbeManager"]

log = logging.getLogger(__name__)

_Key = tuple[str, ProbeKind]  # (container name, kind)
RESTART_GRACE_SECONDS = 10.0  # the kubelet's kubeletRestartGracePeriod: older containers keep Ready on a restart
LATENESS_SAMPLES = 10_000  # stats(): lateness percentiles over this many most recent probe starts
# stats(): a cumulative lateness histogram too, so that a reader can take percentiles over exactly the window between
# two reads: 0.1 ms buckets below 20 ms, 1 ms below 200 ms, 10 ms below 2 s, then one overflow bucket
_HIST_BOUNDS_MS: list[float] = (
    [round(0.1 * i, 1) for i in range(1, 201)]
    + [float(i) for i in range(21, 201)]
    + [float(i) for i in range(210, 2001, 10)]
)


def _hist_bucket(ms: float) -> int:
    if ms < 20.0:
        return int(ms * 10.0)
    if ms < 200.0:
        return 180 + int(ms)
    if ms < 2000.0:
        return 360 + int(ms / 10.0)
    return len(_HIST_BOUNDS_MS)


@dataclass(slots=True)
class _Entry:
    container: Container
    probe: Probe
    worker: ProbeWorker
    task: asyncio.Task[None]
    series: Series


def _wanted(pod: Pod) -> dict[_Key, tuple[Container, Probe]]:
    """The probes the pod's regular containers define."""
    wanted: dict[_Key, tuple[Container, Probe]] = {}
    for c in pod.spec.containers:
        for kind in ProbeKind:
            probe = c.probe(kind)
            if probe is not None:
                wanted[(c.name, kind)] = (c, probe)
    return wanted


class ProbeManager:
    """Starts, replaces and cancels probe workers as pods come and go."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        runner: Runner | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._clock: Clock = clock or RealClock()
        self._runner: Runner = runner or self._run_probe
        self._rng = rng
        self._started: float | None = None
        self._started_wall: float | None = None
        self._pods: dict[str, dict[_Key, _Entry]] = {}
        self._views: dict[str, PodView] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each task is done
        self._probes_run = 0
        self._lateness: deque[float] = deque(maxlen=LATENESS_SAMPLES)  # seconds, most recent probe starts
        self._lateness_hist = [0] * (len(_HIST_BOUNDS_MS) + 1)  # cumulative counts per bucket, the last: beyond
        self.metrics = ProbeMetrics()  # GET /metrics/probes

    async def start(self) -> None:
        """Note the start time (workers added within one period of it get a random initial jitter)."""
        self._started = self._clock.monotonic()
        self._started_wall = self._clock.time()

    async def stop(self) -> None:
        """Cancel every worker and wait for them to end."""
        for uid in list(self._pods):
            self.remove_pod(uid)
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------------------------------------ pods

    def add_pod(self, view: PodView, pod: Pod) -> None:
        """Start one worker per probe of the pod's regular containers (replacing any for the same uid)."""
        if pod.uid in self._pods:
            self.remove_pod(pod.uid)
        self._views[pod.uid] = view
        entries: dict[_Key, _Entry] = {}
        for key, (container, probe) in _wanted(pod).items():
            entries[key] = self._spawn(view, container, key[1], probe)
        self._pods[pod.uid] = entries
        if entries:
            log.debug("Probe workers started pod=%s uid=%s count=%d", pod.key, pod.uid, len(entries))

    def update_pod(self, view: PodView, pod: Pod) -> None:
        """Restart only the workers whose container or probe changed; a no-op when nothing did."""
        if pod.uid not in self._pods or self._views.get(pod.uid) is not view:
            self.add_pod(view, pod)
            return
        entries = self._pods[pod.uid]
        wanted = _wanted(pod)
        for key in [k for k in entries if k not in wanted]:
            entries.pop(key).task.cancel()
        for key, (container, probe) in wanted.items():
            entry = entries.get(key)
            if entry is not None and entry.container == container and entry.probe == probe:
                continue  # unchanged (even if the worker ended on its own, e.g. liveness while deleting)
            if entry is not None:
                entry.task.cancel()
            entries[key] = self._spawn(view, container, key[1], probe)

    def remove_pod(self, uid: str) -> None:
        """Cancel the pod's workers; returns at once (an exec probe in flight is cancelled with its task)."""
        self._views.pop(uid, None)
        for entry in self._pods.pop(uid, {}).values():
            entry.task.cancel()

    def trigger_readiness(self, uid: str, container: str) -> None:
        """Run the container's readiness probe now, outside its schedule (the kubelet does this when it builds the
        status of a running container that is not ready: a pod turns Ready without waiting a period)."""
        entry = self._pods.get(uid, {}).get((container, ProbeKind.READINESS))
        if entry is not None and not entry.task.done():
            entry.worker.trigger()

    def stats(self) -> dict[str, float | int | list[float] | list[int]]:
        """Probes run since start, live workers, and probe start lateness against schedule: p50/p99/max in ms over
        the last ``LATENESS_SAMPLES`` probe starts, and a cumulative histogram since start (``lateness_hist_counts``
        per bucket of upper bound ``lateness_hist_bounds_ms``, plus one last bucket for anything beyond)."""
        samples = sorted(self._lateness)

        def pct(q: float) -> float:
            if not samples:
                return 0.0
            return round(samples[min(len(samples) - 1, round(q * (len(samples) - 1)))] * 1000, 3)

        return {
            "probes_run": self._probes_run,
            "workers": sum(1 for t in self._tasks if not t.done()),
            "lateness_samples": len(samples),
            "lateness_p50_ms": pct(0.50),
            "lateness_p99_ms": pct(0.99),
            "lateness_max_ms": round(samples[-1] * 1000, 3) if samples else 0.0,
            "lateness_hist_bounds_ms": _HIST_BOUNDS_MS,
            "lateness_hist_counts": list(self._lateness_hist),
        }

    def _probe_started(self, lateness: float) -> None:
        self._probes_run += 1
        self._lateness.append(lateness)
        self._lateness_hist[_hist_bucket(lateness * 1000.0)] += 1

    def workers(self, uid: str) -> list[ProbeWorker]:
        """The pod's workers whose task has not ended (for status and tests)."""
        return [e.worker for e in self._pods.get(uid, {}).values() if not e.task.done()]

    # ----------------------------------------------------------------------------------------------- internals

    def _spawn(self, view: PodView, container: Container, kind: ProbeKind, probe: Probe) -> _Entry:
        series = Series(kind, container.name, view.name, view.namespace, view.uid)
        metrics = self.metrics
        worker = ProbeWorker(
            view,
            container,
            kind,
            probe,
            self._runner,
            clock=self._clock,
            manager_started=self._started,
            rng=self._rng,
            on_probe_start=self._probe_started,
            on_probe_done=lambda result, seconds: metrics.observe(series, result, seconds),
            keep_ready_before=None if self._started_wall is None else self._started_wall - RESTART_GRACE_SECONDS,
        )
        task = asyncio.get_running_loop().create_task(worker.run(), name=f"probe {view.uid} {container.name} {kind}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, series))
        return _Entry(container, probe, worker, task, series)

    def _task_done(self, task: asyncio.Task[None], series: Series) -> None:
        self._tasks.discard(task)
        if not any(e.series == series and not e.task.done() for e in self._pods.get(series.pod_uid, {}).values()):
            self.metrics.forget(series)  # the worker's series go with it (not when a new worker took them over)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("Probe worker crashed task=%s", task.get_name(), exc_info=exc)

    async def _run_probe(self, probe: Probe, container: Container, view: PodView) -> Outcome:
        """The default runner: dispatch on the probe's handler."""
        if probe.handler == "exec":
            return await exec_probe(probe, container, view)
        if probe.handler == "tcpSocket":
            return await tcp_socket(probe, container, view.pod_ip(), self._clock.timeout)
        if probe.handler == "httpGet":
            return await http_get(probe, container, view.pod_ip(), self._clock.timeout)
        return Outcome(ProbeResult.UNKNOWN, f"unsupported probe handler {probe.handler!r}", error=True)
