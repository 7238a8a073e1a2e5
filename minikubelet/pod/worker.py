"""PodWorker: one asyncio task per pod UID that drives the pod from desired spec to running processes.

Lifecycle: syncing (create sandbox, run init containers in order, start and restart app containers with
CrashLoopBackOff) → terminating (SIGTERM, grace, SIGKILL, then pause and network) → gone. Every failure becomes
status and an event, plus a retry; the loop itself never dies (house-style rule 3). Wake-ups come from process
exits (pidfd), metadata updates, termination requests and back-off timers; nothing here blocks the event loop.

The worker owns the pod's ``PodState`` (pod/state.py) and the loop; its two parts do the work:
``SandboxLifecycle`` (pod/sandbox.py: pause, network, whole-pod recreation, teardown) and ``ContainerRunner``
(pod/containers.py: start and restart decisions, exits). It implements the prober's ``PodView`` and the hooks its
parts call back (pod/context.py). Only pod/manager.py, the daemon and the API import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minikubelet.errors import MinikubeletError
from minikubelet.events import EventRecorder
from minikubelet.pod import apiview, record
from minikubelet.pod import exec as podexec
from minikubelet.pod.containers import ContainerRunner
from minikubelet.pod.context import ImageProvider, NodeFacts, Prober
from minikubelet.pod.sandbox import SandboxLifecycle
from minikubelet.pod.spec import Pod, ProbeKind
from minikubelet.pod.state import PodState, Terminating
from minikubelet.pod.status import PodPhase, State, should_restart
from minikubelet.probe import ContainerView, ProbeResult
from minikubelet.runtime.linux import LinuxRuntime

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerContext:
    """What every worker shares: the runtime, the event store, node facts, and the global resource version."""

    runtime: LinuxRuntime
    events: EventRecorder
    node: NodeFacts
    next_version: Callable[[], int]
    changed: Callable[[PodWorker | None], None] = lambda _w: None  # a worker's version moved (None: the set did)
    removed: Callable[[PodWorker], None] = lambda _w: None  # a worker is gone for good (its pod was deleted)
    probes: Prober | None = None
    images: ImageProvider | None = None  # images/manager.py ImageManager (the container start path calls it)


class PodWorker:
    def __init__(self, pod: Pod, ctx: WorkerContext, saved: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.runtime = ctx.runtime
        self.state = PodState.new(pod, ctx.next_version())
        self.containers = ContainerRunner(self.state, ctx.runtime, ctx.node, ctx.probes, self, ctx.images)
        self.lifecycle = SandboxLifecycle(self.state, ctx.runtime, self.containers, self)
        self._adopting = saved is not None  # a previous daemon's pod: follow its processes when the task starts
        if saved is not None:  # its state is loaded now, so the API never shows a re-adopted pod as new
            record.load(self.state, saved)
        self._wake = asyncio.Event()
        self._wake_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    @property
    def pod(self) -> Pod:
        return self.state.pod

    @property
    def version(self) -> int:
        return self.state.version

    # ----- interface used by the manager -------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.pod.key}")

    def update_metadata(self, pod: Pod) -> None:
        """A label/annotation-only edit: same UID, no restart."""
        self.state.pod = pod
        self.changed()
        self.wake()

    def terminate(self, grace: int | None = None, reason: str = "") -> asyncio.Event:
        """Begin graceful termination (idempotent); the returned event is set once the pod is gone."""
        st = self.state
        if st.terminating is None:
            g = st.pod.spec.termination_grace_period_seconds if grace is None else grace
            st.terminating = Terminating(g, time.time(), reason)
            self.changed()
        elif grace is not None and grace < st.terminating.grace:
            st.terminating.grace = grace
        self.wake()
        return st.terminating.done

    # ----- the loop ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._adopting:
                self._adopt()
                self._adopting = False
            if self.ctx.probes is not None and self.state.terminating is None:
                self.ctx.probes.add_pod(self, self.pod)
            while self.state.terminating is None:
                self._wake.clear()
                try:
                    await self._sync()
                except asyncio.CancelledError:
                    raise
                except MinikubeletError as exc:  # a known failure: its message says it all
                    log.error("Pod sync failed; retrying in 1 s pod=%s uid=%s error=%s", self.pod.key, self.pod.uid,
                              exc)
                    self.wake_in(1.0)
                except Exception:
                    log.exception("Pod sync failed; retrying in 1 s pod=%s uid=%s", self.pod.key, self.pod.uid)
                    self.wake_in(1.0)
                if self.state.terminating is not None:
                    break
                await self._sleep()
            assert self.state.terminating is not None
            await self.containers.cancel_pulls()
            await self.lifecycle.terminate(self.state.terminating.grace)
        finally:
            if self.ctx.probes is not None:
                self.ctx.probes.remove_pod(self.pod.uid)
            if self.ctx.images is not None:
                self.ctx.images.in_use(self.pod.uid, set())
            if self.state.terminating is not None:
                self.state.terminating.done.set()
            self.done.set()

    async def _sleep(self) -> None:
        timeout = None if self._wake_at is None else max(0.0, self._wake_at - time.monotonic())
        self._wake_at = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _sync(self) -> None:
        st = self.state
        if st.terminal:
            return
        if not st.admitted:
            ok, _, message = self.ctx.node.admit(st.pod)
            if not ok:
                log.info("Pod waits for a matching node pod=%s message=%r", st.pod.key, message)
                return
            st.admitted = True
            ok, reason, message = self.ctx.node.admit_resources(st.pod)
            if not ok:  # the kubelet's admission failure: the pod ends Failed, it never waits for room
                st.rejected, st.terminal = (reason, f"Pod was rejected: {message}"), True
                log.warning("Pod rejected at admission pod=%s reason=%s message=%r", st.pod.key, reason, message)
                self.event("Warning", reason, message)
                self.changed()
                return
            self.changed()
        if st.start_time is None:
            st.start_time = time.time()
        await self.lifecycle.recover()
        if not await self.lifecycle.ensure():
            return
        if not await self.containers.sync_init_containers():
            self.lifecycle.finish_if_done()
            return
        for c in st.pod.spec.containers:
            await self.containers.sync_container(c)
        if self.ctx.images is not None:
            self.ctx.images.in_use(st.pod.uid, self.containers.in_use_images())
        self.lifecycle.finish_if_done()

    def _adopt(self) -> None:
        """Take over a pod a previous daemon started (its state is loaded): same processes, no restart; learn what
        ended meanwhile."""
        self.lifecycle.adopt()
        for name, rec in self.state.records.items():
            if rec.state is State.RUNNING and rec.pid is not None and rec.start is not None:
                self.containers.watch(name, f"{name}.{rec.instances - 1}", rec.pid, rec.start)
        log.info("Pod re-adopted pod=%s uid=%s sandbox=%s", self.pod.key, self.pod.uid,
                 "alive" if self.lifecycle.pause else "gone")

    # ----- WorkerHooks: what the sandbox and container parts call back -----------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def wake_in(self, seconds: float) -> None:
        at = time.monotonic() + seconds
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at

    def changed(self) -> None:
        self.state.version = self.ctx.next_version()
        self.ctx.changed(self)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def event(self, type_: str, reason: str, message: str, container: str = "") -> None:
        path = ""
        if container:
            rec = self.state.records.get(container)
            kind = "initContainers" if rec is not None and rec.init else "containers"
            path = f"spec.{kind}{{{container}}}"
        self.ctx.events.record(self.pod.namespace, self.pod.name, self.pod.uid, type_, reason, message, path)

    def persist(self) -> None:
        apiview.refresh_conditions(self.state, self.ctx.node)
        record.save(self.state, self.runtime.pod_dir(self.pod.uid))

    # ----- PodView: what the prober reads and reports ---------------------------------------------------------

    @property
    def uid(self) -> str:
        return self.pod.uid

    @property
    def namespace(self) -> str:
        return self.pod.namespace

    @property
    def name(self) -> str:
        return self.pod.name

    def pod_ip(self) -> str:
        sandbox = self.state.sandbox
        return sandbox.ip if sandbox is not None else ""

    def container_view(self, container: str) -> ContainerView | None:
        rec = self.state.records.get(container)
        if rec is None or rec.init:
            return None
        running = rec.state is State.RUNNING
        term = rec.terminated or rec.last_terminated
        will_restart = running or rec.instances == 0 or should_restart(self.pod.spec.restart_policy, term)
        return ContainerView(running, rec.container_id, rec.started_at, rec.started, will_restart, rec.ready)

    def deleting(self) -> bool:
        return self.state.terminating is not None

    def finished(self) -> bool:
        return self.state.terminal

    def probe_result(self, container: str, kind: ProbeKind, result: ProbeResult, message: str) -> None:
        rec = self.state.records.get(container)
        spec = self.state.app_container(container)
        if rec is None or spec is None or rec.state is not State.RUNNING:
            return
        if kind is ProbeKind.READINESS:
            rec.ready = result is ProbeResult.SUCCESS and rec.started
        elif kind is ProbeKind.STARTUP and result is ProbeResult.SUCCESS:
            rec.started = True
            rec.ready = spec.readiness_probe is None
            self.containers.trigger_readiness(spec, rec)
        elif result is ProbeResult.FAILURE and self.state.terminating is None:
            if self.lifecycle.recreate_request is None:
                self.lifecycle.recreate_request = (container, kind, message)
                self.wake()
        self.persist()
        self.changed()

    def record_event(self, type_: str, reason: str, message: str, container: str) -> None:
        self.event(type_, reason, message, container)

    # ----- exec into a container (pod/exec.py) -------------------------------------------------------------

    async def exec_start(
        self, container: str, argv: list[str], fds: tuple[int, ...], tty: bool = False
    ) -> tuple[int, int, str]:
        """Start argv in a running container with stdio ``fds`` (or one pty slave with ``tty``): (pid, start,
        exit record). Raises MinikubeletError (not running, executable not found...)."""
        return await podexec.exec_start(self.state, self.runtime, self.ctx.node, container, argv, fds, tty)

    async def exec_exit_code(self, record: str) -> int | None:
        """After an exec'd process is gone: its exit code as pause recorded it (None if unknown)."""
        return await podexec.exec_exit_code(self.state, self.runtime, record)

    async def exec_in_container(self, container: str, argv: list[str], timeout: float) -> tuple[int | None, bytes]:
        """Run argv in the container and wait (exec probes): (exit code or None on timeout, output ≤ 10 KiB)."""
        return await podexec.exec_in_container(self.state, self.runtime, self.ctx.node, container, argv, timeout)

    def log_path(self, container: str, previous: bool = False) -> Path | None:
        """The log file of the container's current (or previous) instance, or None if there is none."""
        return podexec.log_path(self.state, self.runtime, container, previous)

    # ----- status for the API (pod/apiview.py builds the v1 objects) -------------------------------------------

    def phase(self) -> PodPhase:
        return self.state.phase()

    def to_api(self) -> dict[str, Any]:
        """The v1 Pod: the manifest as loaded, live metadata, and the status."""
        return apiview.pod_to_api(self.state, self.ctx.node)

    def status(self) -> dict[str, Any]:
        return apiview.pod_status(self.state, self.ctx.node)
