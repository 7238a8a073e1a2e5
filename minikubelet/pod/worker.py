"""PodWorker: one asyncio task per pod UID that drives the pod from desired spec to running processes.

Lifecycle: syncing (create sandbox, run init containers in order, start and restart app containers with
CrashLoopBackOff) → terminating (SIGTERM, grace, SIGKILL, then pause and network) → gone. Every failure becomes
status and an event, plus a retry; the loop itself never dies (house-style rule 3). Wake-ups come from process
exits (pidfd), metadata updates, termination requests and back-off timers; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from minikubelet.errors import ContainerStartError, MinikubeletError
from minikubelet.events import EventRecorder
from minikubelet.pod import apiview as podapi
from minikubelet.pod import exec as podexec
from minikubelet.pod import record as podrecord
from minikubelet.pod.backoff import Backoff
from minikubelet.pod.env import build_argv, build_env
from minikubelet.pod.spec import Container, Pod, ProbeKind, RestartPolicy
from minikubelet.pod.status import (
    ContainerRecord,
    PodConditions,
    PodPhase,
    State,
    Termination,
    compute_phase,
    container_id,
    should_restart,
)
from minikubelet.probe import ContainerView, PodView, ProbeResult
from minikubelet.runtime.linux import LinuxRuntime, Sandbox
from minikubelet.runtime.proc import ProcessHandle
from minikubelet.timefmt import go_duration

log = logging.getLogger(__name__)

MIN_GRACE_SECONDS = 2  # the kubelet's minimumGracePeriodInSeconds between the stop signal and SIGKILL
READINESS_RETRIGGER_SECONDS = 1.0  # _trigger_readiness: the second immediate readiness probe after a start
SANDBOX_KEY = "\0sandbox"
RECREATE_KEY = "\0recreate"


class Prober(Protocol):
    """What the pod worker needs of the probe manager (probe/manager.py)."""

    def add_pod(self, view: PodView, pod: Pod) -> None: ...

    def remove_pod(self, uid: str) -> None: ...

    def trigger_readiness(self, uid: str, container: str) -> None: ...


@dataclass(slots=True)
class WorkerContext:
    """What every worker shares: the runtime, the event store, node facts, and the global resource version."""

    runtime: LinuxRuntime
    events: EventRecorder
    node_name: str
    host_ip: str
    next_version: Callable[[], int]
    changed: Callable[[PodWorker | None], None] = lambda _w: None  # a worker's version moved (None: the set did)
    removed: Callable[[PodWorker], None] = lambda _w: None  # a worker is gone for good (its pod was deleted)
    admit: Callable[[Pod], tuple[bool, str, str]] = lambda _p: (True, "", "")  # (ok, reason, message)
    probes: Prober | None = None


@dataclass(slots=True)
class Terminating:
    grace: int
    since: float
    reason: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PodWorker:
    def __init__(self, pod: Pod, ctx: WorkerContext, record: dict[str, Any] | None = None) -> None:
        self.pod = pod
        self.ctx = ctx
        self.runtime = ctx.runtime
        self.sandbox: Sandbox | None = None
        first = "PodInitializing" if pod.spec.init_containers else "ContainerCreating"
        self.records: dict[str, ContainerRecord] = {
            c.name: ContainerRecord(c.name, c.image, init=True, reason="PodInitializing")
            for c in pod.spec.init_containers
        }
        self.records.update({c.name: ContainerRecord(c.name, c.image, reason=first) for c in pod.spec.containers})
        self.handles: dict[str, ProcessHandle] = {}
        self.pause: ProcessHandle | None = None
        self.backoff = Backoff()
        self.created_at = time.time()
        self.start_time: float | None = None
        self.terminal = False
        self.admitted = False
        self.terminating: Terminating | None = None
        self.version = ctx.next_version()
        self.conditions = PodConditions()
        self._record = record
        self._sandbox_dead = False
        self._recreate: tuple[str, ProbeKind, str] | None = None  # (container, probe kind, probe output)
        self._wake = asyncio.Event()
        self._wake_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    # ----- interface used by the manager -------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.pod.key}")

    def update_metadata(self, pod: Pod) -> None:
        """A label/annotation-only edit: same UID, no restart."""
        self.pod = pod
        self._changed()
        self.wake()

    def terminate(self, grace: int | None = None, reason: str = "") -> asyncio.Event:
        """Begin graceful termination (idempotent); the returned event is set once the pod is gone."""
        if self.terminating is None:
            g = self.pod.spec.termination_grace_period_seconds if grace is None else grace
            self.terminating = Terminating(g, time.time(), reason)
            self._changed()
        elif grace is not None and grace < self.terminating.grace:
            self.terminating.grace = grace
        self.wake()
        return self.terminating.done

    def wake(self) -> None:
        self._wake.set()

    # ----- the loop ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._record is not None:
                self._adopt(self._record)
                self._record = None
            if self.ctx.probes is not None and self.terminating is None:
                self.ctx.probes.add_pod(self, self.pod)
            while self.terminating is None:
                self._wake.clear()
                try:
                    await self._sync()
                except asyncio.CancelledError:
                    raise
                except MinikubeletError as exc:  # a known failure: its message says it all
                    log.error("Pod sync failed; retrying in 1 s pod=%s uid=%s error=%s", self.pod.key, self.pod.uid,
                              exc)
                    self._wake_in(1.0)
                except Exception:
                    log.exception("Pod sync failed; retrying in 1 s pod=%s uid=%s", self.pod.key, self.pod.uid)
                    self._wake_in(1.0)
                if self.terminating is not None:
                    break
                await self._sleep()
            await self._terminate()
        finally:
            if self.ctx.probes is not None:
                self.ctx.probes.remove_pod(self.pod.uid)
            if self.terminating is not None:
                self.terminating.done.set()
            self.done.set()

    async def _sleep(self) -> None:
        timeout = None if self._wake_at is None else max(0.0, self._wake_at - time.monotonic())
        self._wake_at = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _wake_in(self, seconds: float) -> None:
        at = time.monotonic() + seconds
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at

    def _changed(self) -> None:
        self.version = self.ctx.next_version()
        self.ctx.changed(self)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _event(self, type_: str, reason: str, message: str, container: str = "") -> None:
        path = ""
        if container:
            kind = "initContainers" if self.records.get(container) and self.records[container].init else "containers"
            path = f"spec.{kind}{{{container}}}"
        self.ctx.events.record(self.pod.namespace, self.pod.name, self.pod.uid, type_, reason, message, path)

    # ----- sync ----------------------------------------------------------------------------------------------

    async def _sync(self) -> None:
        if self.terminal:
            return
        if not self.admitted:
            ok, _, message = self.ctx.admit(self.pod)
            if not ok:
                log.info("Pod waits for a matching node pod=%s message=%r", self.pod.key, message)
                return
            self.admitted = True
            self._changed()
        if self.start_time is None:
            self.start_time = time.time()
        if self._sandbox_dead:
            await self._sandbox_changed()
        if self._recreate is not None:
            await self._recreate_pod(*self._recreate)
        if self.sandbox is None and not await self._create_sandbox():
            return
        if not await self._sync_init_containers():
            self._finish_if_done()
            return
        for c in self.pod.spec.containers:
            await self._sync_container(c)
        self._finish_if_done()

    async def _create_sandbox(self) -> bool:
        now = time.time()
        remaining = self.backoff.remaining(SANDBOX_KEY, self._last_sandbox_failure, now)
        if self._recreated is not None:
            container, at = self._recreated
            remaining = max(remaining, self.backoff.remaining(RECREATE_KEY, at, now))
            if remaining <= 0:
                self.backoff.next(RECREATE_KEY, at)
                self._recreated = None
            else:
                self._show_backoff(container, RECREATE_KEY)
        if remaining > 0:
            self._wake_in(remaining)
            return False
        try:
            sandbox = await self.runtime.create_sandbox(self.pod)
        except MinikubeletError as e:
            self._last_sandbox_failure = time.time()
            delay = self.backoff.next(SANDBOX_KEY, self._last_sandbox_failure)
            self._event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            self._wake_in(delay)
            return False
        self.backoff.forget(SANDBOX_KEY)
        self.sandbox = sandbox
        self._watch_pause()
        log.info(
            "Pod sandbox started pod=%s uid=%s pause=%d ip=%s", self.pod.key, self.pod.uid, sandbox.pid, sandbox.ip
        )
        self._persist()
        self._changed()
        return True

    _last_sandbox_failure = 0.0
    _recreated: tuple[str, float] | None = None  # (container whose probe failed, when) until the pod is back

    def _watch_pause(self) -> None:
        assert self.sandbox is not None
        self.pause = ProcessHandle(self.sandbox.pid, self.sandbox.start)
        pause = self.pause
        pause.add_exit_callback(lambda: self._on_pause_exit(pause))

    def _on_pause_exit(self, pause: ProcessHandle) -> None:
        if pause is self.pause and self.terminating is None:
            self._sandbox_dead = True
            self.wake()

    async def _sandbox_changed(self) -> None:
        """pause died: the kernel killed the pod's processes. Clean up and start over in a new sandbox."""
        self._sandbox_dead = False
        log.warning("Pod sandbox died; recreating it pod=%s uid=%s", self.pod.key, self.pod.uid)
        self._event("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
        for name in list(self.handles):
            await self.handles[name].wait(5)
        await self._discard_sandbox()

    async def _discard_sandbox(self) -> None:
        """Remove pause and network after the containers are gone; init containers run again in the next one."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        sandbox, self.sandbox, self.pause = self.sandbox, None, None  # its exit is ours, not a sandbox death
        await self.runtime.kill_sandbox(self.pod.uid, sandbox, remove_state=False)
        for c in self.pod.spec.init_containers:
            rec = self.records[c.name]
            if rec.state is State.TERMINATED:
                rec.last_terminated, rec.terminated = rec.terminated, None
            rec.state, rec.reason, rec.message = State.WAITING, "PodInitializing", ""
        self._persist()
        self._changed()

    async def _stop_containers(self, grace: int, messages: dict[str, str]) -> None:
        """SIGTERM every running container, SIGKILL what is left after ``grace`` (floored at 2 s)."""
        grace = max(grace, MIN_GRACE_SECONDS)
        running = {n: h for n, h in self.handles.items() if not h.exited}
        for name, handle in running.items():
            self._event("Normal", "Killing", messages.get(name) or f"Stopping container {name}", name)
            handle.send(signal.SIGTERM)
        if not running:
            return
        await asyncio.gather(*(h.wait(grace) for h in running.values()))
        for name, handle in running.items():
            if not handle.exited:
                log.warning("Container ignored SIGTERM for the grace period; killing it pod=%s container=%s "
                            "grace=%ds", self.pod.key, name, grace)
                handle.send(signal.SIGKILL)
        await asyncio.gather(*(h.wait(10) for h in running.values()))

    async def _recreate_pod(self, container: str, kind: ProbeKind, output: str) -> None:
        """A liveness (or startup) failure: kill the whole pod and recreate it from the same spec (new pause, new
        namespaces, new containers), with restart counts kept and CrashLoopBackOff between recreations.

        A deliberate difference from the kubelet, which restarts only the failing container (see README)."""
        self._recreate = None
        spec = next(c for c in self.pod.spec.containers if c.name == container)
        probe = spec.probe(kind)
        grace = self.pod.spec.termination_grace_period_seconds
        if probe is not None and probe.termination_grace_period_seconds is not None:
            grace = probe.termination_grace_period_seconds
        restart = self.pod.spec.restart_policy is not RestartPolicy.NEVER
        what = kind.value.lower()
        suffix = ", pod will be killed and re-created" if restart else ""
        log.warning("Probe failure kills the pod pod=%s container=%s probe=%s output=%r", self.pod.key, container,
                    what, output)
        await self._stop_containers(grace, {container: f"Container {container} failed {what} probe{suffix}"})
        if not restart:
            return
        self._recreated = (container, time.time())
        await self._discard_sandbox()

    async def _sync_init_containers(self) -> bool:
        """Run init containers one at a time, in order; True once all have succeeded."""
        for c in self.pod.spec.init_containers:
            rec = self.records[c.name]
            if rec.succeeded():
                continue
            if rec.state is State.RUNNING:
                return False
            if rec.instances and not self._restart_allowed(c, rec):
                return False
            await self._start(c, rec)
            return False
        return True

    async def _sync_container(self, c: Container) -> None:
        rec = self.records[c.name]
        if rec.state is State.RUNNING:
            return
        if rec.instances == 0:
            if rec.reason != "CreateContainerConfigError":
                await self._start(c, rec)
            return
        if self._restart_allowed(c, rec):
            await self._start(c, rec)

    def _restart_allowed(self, c: Container, rec: ContainerRecord) -> bool:
        """Restart policy plus CrashLoopBackOff; moves the record to waiting/CrashLoopBackOff while backing off."""
        term = rec.terminated or rec.last_terminated
        policy = self.pod.spec.restart_policy
        if c in self.pod.spec.init_containers and policy.value == "Always":
            policy = type(policy)("OnFailure")  # init containers are restarted only when they fail
        if not should_restart(policy, term):
            return False
        finished = term.finished_at if term else time.time()
        remaining = self.backoff.remaining(c.name, finished, time.time())
        if remaining <= 0:
            self.backoff.next(c.name, finished)
            return True
        self._show_backoff(c.name, c.name)
        self._wake_in(remaining)
        return False

    def _show_backoff(self, name: str, key: str) -> None:
        """waiting/CrashLoopBackOff with the kubelet's message, and one BackOff event per back-off period."""
        rec = self.records[name]
        if rec.state is State.WAITING and rec.reason == "CrashLoopBackOff":
            return
        if rec.state is State.TERMINATED:
            rec.last_terminated = rec.terminated
            rec.terminated = None
        rec.state = State.WAITING
        rec.reason = "CrashLoopBackOff"
        delay = go_duration(self.backoff.delay(key))
        rec.message = f"back-off {delay} restarting failed container={name} pod={self.pod.full_name}"
        self._event("Warning", "BackOff", f"Back-off restarting failed container {name} in pod {self.pod.full_name}",
                    name)
        self._persist()
        self._changed()

    async def _start(self, c: Container, rec: ContainerRecord) -> None:
        assert self.sandbox is not None
        if not c.command and not c.args:  # until images land, the node is an image without ENTRYPOINT or CMD
            rec.state, rec.reason = State.WAITING, "CreateContainerConfigError"
            rec.message = (
                f'container "{c.name}" has no command: minikubelet does not run images yet, so set '
                f"spec.containers[].command (or args) to a program on the node (the image {c.image!r} is recorded)"
            )
            self._event("Warning", "Failed", f"Error: {rec.message}", c.name)
            self._changed()
            return
        instance = rec.instances
        env = build_env(self.pod, c, self.sandbox.ip, self.ctx.node_name, self.ctx.host_ip)
        argv = build_argv(c, env)
        record = f"{c.name}.{instance}"
        log_path = self.runtime.container_log(self.pod, c.name, instance)
        if rec.state is State.TERMINATED:
            rec.last_terminated = rec.terminated
        rec.terminated = None
        rec.instances = instance + 1
        rec.restart_count = instance
        rec.container_id = container_id(self.pod.uid, c.name, instance)
        now = time.time()
        try:
            pid, start = await self.runtime.start_process(
                self.pod, self.sandbox, record, argv, env, c.working_dir, c.run_as_user, c.run_as_group, log_path
            )
        except ContainerStartError as e:
            rec.state = State.TERMINATED
            rec.terminated = Termination(
                128, "StartError", time.time(), now, message=str(e), container_id=rec.container_id
            )
            rec.pid = rec.start = None
            self._event("Warning", "Failed", f"Error: {e}", c.name)
            log.warning("Container failed to start pod=%s container=%s error=%s", self.pod.key, c.name, e)
            self._persist()
            self._changed()
            self.wake()
            return
        rec.state, rec.reason, rec.message = State.RUNNING, "", ""
        rec.pid, rec.start, rec.started_at = pid, start, now
        rec.started = c.startup_probe is None
        rec.ready = rec.started and c.readiness_probe is None and not rec.init
        self._event("Normal", "Created", f"Created container: {c.name}", c.name)
        self._event("Normal", "Started", f"Started container {c.name}", c.name)
        log.info(
            "Container started pod=%s container=%s pid=%d restartCount=%d", self.pod.key, c.name, pid, rec.restart_count
        )
        self._watch(c.name, record, pid, start)
        self._persist()
        self._changed()
        self._trigger_readiness(c, rec)

    def _trigger_readiness(self, c: Container, rec: ContainerRecord) -> None:
        """A started, running container that is not ready yet gets its readiness probe now and once more a second
        later (its server may not listen yet), instead of a whole period later. The kubelet triggers it whenever it
        builds such a status, which follows a container start by up to a second (the PLEG relist)."""
        if self.ctx.probes is None or c.readiness_probe is None or not rec.started or rec.ready:
            return
        self.ctx.probes.trigger_readiness(self.pod.uid, c.name)
        instance = rec.container_id

        def again() -> None:
            if self.ctx.probes is not None and rec.container_id == instance and rec.started and not rec.ready:
                if rec.state is State.RUNNING and self.terminating is None:
                    self.ctx.probes.trigger_readiness(self.pod.uid, c.name)

        asyncio.get_running_loop().call_later(READINESS_RETRIGGER_SECONDS, again)

    def _watch(self, name: str, record: str, pid: int, start: int) -> None:
        handle = ProcessHandle(pid, start)
        self.handles[name] = handle
        handle.add_exit_callback(lambda: self._spawn(self._on_exit(name, record, handle)))

    async def _on_exit(self, name: str, record: str, handle: ProcessHandle) -> None:
        status = await self.runtime.wait_exit_record(self.pod.uid, record, self.sandbox)
        rec = self.records[name]
        if self.handles.get(name) is handle:
            del self.handles[name]
        if rec.pid != handle.pid or rec.start != handle.start:
            return
        if status is None:
            term = Termination(
                137,
                "ContainerStatusUnknown",
                time.time(),
                rec.started_at,
                message="The container could not be located when the pod was terminated",
                container_id=rec.container_id,
            )
        else:
            term = Termination(
                status.exit_code,
                "Completed" if status.exit_code == 0 else "Error",
                status.finished_at,
                rec.started_at,
                status.signal,
                container_id=rec.container_id,
            )
        rec.state, rec.terminated, rec.pid, rec.start = State.TERMINATED, term, None, None
        rec.ready = False
        rec.started = False
        log.info(
            "Container exited pod=%s container=%s exitCode=%d reason=%s",
            self.pod.key,
            name,
            term.exit_code,
            term.reason,
        )
        self._persist()
        self._changed()
        self.wake()

    def _finish_if_done(self) -> None:
        """When nothing runs and nothing will restart, the pod is complete: its sandbox goes (as the kubelet)."""
        if self.handles or any(r.state is State.RUNNING for r in self.records.values()):
            return
        if compute_phase(self.pod, self.records) in (PodPhase.SUCCEEDED, PodPhase.FAILED):
            self.terminal = True
            self._spawn(self._release_sandbox())

    async def _release_sandbox(self) -> None:
        sandbox, self.sandbox, self.pause = self.sandbox, None, None
        await self.runtime.kill_sandbox(self.pod.uid, sandbox, remove_state=False)
        self._persist()
        self._changed()

    # ----- termination ---------------------------------------------------------------------------------------

    async def _terminate(self) -> None:
        assert self.terminating is not None
        await self._stop_containers(self.terminating.grace, {})
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.pause = None
        await self.runtime.kill_sandbox(self.pod.uid, self.sandbox)
        self.sandbox = None
        shutil.rmtree(self.runtime.pod_log_dir(self.pod), ignore_errors=True)
        log.info("Pod terminated pod=%s uid=%s", self.pod.key, self.pod.uid)
        self._changed()

    # ----- persistence and re-adoption (podrecord.py) -----------------------------------------------------

    def _persist(self) -> None:
        podapi.refresh_conditions(self)
        podrecord.save(self)

    def _adopt(self, data: dict[str, Any]) -> None:
        podrecord.adopt(self, data)

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
        return self.sandbox.ip if self.sandbox is not None else ""

    def container_view(self, container: str) -> ContainerView | None:
        rec = self.records.get(container)
        if rec is None or rec.init:
            return None
        running = rec.state is State.RUNNING
        term = rec.terminated or rec.last_terminated
        will_restart = running or rec.instances == 0 or should_restart(self.pod.spec.restart_policy, term)
        return ContainerView(running, rec.container_id, rec.started_at, rec.started, will_restart, rec.ready)

    def deleting(self) -> bool:
        return self.terminating is not None

    def finished(self) -> bool:
        return self.terminal

    def probe_result(self, container: str, kind: ProbeKind, result: ProbeResult, message: str) -> None:
        rec = self.records.get(container)
        spec = next((c for c in self.pod.spec.containers if c.name == container), None)
        if rec is None or spec is None or rec.state is not State.RUNNING:
            return
        if kind is ProbeKind.READINESS:
            rec.ready = result is ProbeResult.SUCCESS and rec.started
        elif kind is ProbeKind.STARTUP and result is ProbeResult.SUCCESS:
            rec.started = True
            rec.ready = spec.readiness_probe is None
            self._trigger_readiness(spec, rec)
        elif result is ProbeResult.FAILURE and self.terminating is None and self._recreate is None:
            self._recreate = (container, kind, message)
            self.wake()
        self._persist()
        self._changed()

    def record_event(self, type_: str, reason: str, message: str, container: str) -> None:
        self._event(type_, reason, message, container)

    # ----- exec into a container (podexec.py) -------------------------------------------------------------

    async def exec_start(
        self, container: str, argv: list[str], fds: tuple[int, ...], tty: bool = False
    ) -> tuple[int, int, str]:
        """Start argv in a running container with stdio ``fds`` (or one pty slave with ``tty``): (pid, start,
        exit record). Raises MinikubeletError (not running, executable not found...)."""
        return await podexec.exec_start(self, container, argv, fds, tty)

    async def exec_exit_code(self, record: str) -> int | None:
        """After an exec'd process is gone: its exit code as pause recorded it (None if unknown)."""
        return await podexec.exec_exit_code(self, record)

    async def exec_in_container(self, container: str, argv: list[str], timeout: float) -> tuple[int | None, bytes]:
        """Run argv in the container and wait (exec probes): (exit code or None on timeout, output ≤ 10 KiB)."""
        return await podexec.exec_in_container(self, container, argv, timeout)

    def log_path(self, container: str, previous: bool = False) -> Path | None:
        """The log file of the container's current (or previous) instance, or None if there is none."""
        return podexec.log_path(self, container, previous)

    # ----- status for the API (podapi.py builds the v1 objects) -------------------------------------------

    def phase(self) -> PodPhase:
        return compute_phase(self.pod, self.records)

    def to_api(self) -> dict[str, Any]:
        """The v1 Pod: the manifest as loaded, live metadata, and the status."""
        return podapi.pod_to_api(self)

    def status(self) -> dict[str, Any]:
        return podapi.pod_status(self)
