"""SandboxLifecycle: one pod's sandbox (pause + network) from creation to removal, and whole-pod recreation.

Creates the sandbox with its own back-off, watches pause (its death means the kernel killed the pod: clean up and
start over), recreates the whole pod after a liveness or startup failure (minikubelet's deliberate difference from
the kubelet, see README), releases the sandbox of a finished pod, and tears everything down at termination.
Owner of the pause handle. Imports pod.state, pod.context, pod.containers, pod.spec, pod.status and runtime;
never the worker.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

from minikubelet.errors import MinikubeletError
from minikubelet.pod.containers import ContainerRunner
from minikubelet.pod.context import WorkerHooks
from minikubelet.pod.spec import ProbeKind, RestartPolicy
from minikubelet.pod.state import PodState
from minikubelet.pod.status import PodPhase, State
from minikubelet.runtime.linux import LinuxRuntime
from minikubelet.runtime.proc import ProcessHandle, is_alive

log = logging.getLogger(__name__)

SANDBOX_KEY = "\0sandbox"  # back-off keys beside the containers' names (which cannot hold a NUL)
RECREATE_KEY = "\0recreate"
MAX_CLEANUP_DELAY = 10.0  # seconds between attempts to finish removing a deleted pod


class SandboxLifecycle:
    def __init__(self, state: PodState, runtime: LinuxRuntime, containers: ContainerRunner, hooks: WorkerHooks
                 ) -> None:
        self.state = state
        self.runtime = runtime
        self.containers = containers
        self.hooks = hooks
        self.pause: ProcessHandle | None = None
        self.dead = False  # pause died while the pod should run: recreate on the next sync
        self.recreate_request: tuple[str, ProbeKind, str] | None = None  # (container, probe kind, probe output)
        self._recreated: tuple[str, float] | None = None  # (container whose probe failed, when) until the pod is back
        self._last_failure = 0.0

    # ----- creation ------------------------------------------------------------------------------------------

    async def ensure(self) -> bool:
        """The pod has a sandbox (created now if needed, unless backing off); False while it has none."""
        if self.state.sandbox is not None:
            return True
        backoff = self.state.backoff
        now = time.time()
        remaining = backoff.remaining(SANDBOX_KEY, self._last_failure, now)
        if self._recreated is not None:
            container, at = self._recreated
            remaining = max(remaining, backoff.remaining(RECREATE_KEY, at, now))
            if remaining <= 0:
                backoff.next(RECREATE_KEY, at)
                self._recreated = None
            else:
                self.containers.show_backoff(container, RECREATE_KEY)
        if remaining > 0:
            self.hooks.wake_in(remaining)
            return False
        pod = self.state.pod
        try:
            sandbox = await self.runtime.create_sandbox(pod)
        except MinikubeletError as e:
            self._last_failure = time.time()
            delay = backoff.next(SANDBOX_KEY, self._last_failure)
            self.hooks.event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            self.hooks.wake_in(delay)
            return False
        backoff.forget(SANDBOX_KEY)
        self.state.sandbox = sandbox
        self.watch_pause()
        log.info("Pod sandbox started pod=%s uid=%s pause=%d ip=%s", pod.key, pod.uid, sandbox.pid, sandbox.ip)
        self.hooks.persist()
        self.hooks.changed()
        return True

    def adopt(self) -> None:
        """After a daemon restart: follow the recorded sandbox's pause, or recreate the sandbox if it died."""
        sandbox = self.state.sandbox
        if sandbox is None:
            return
        if is_alive(sandbox.pid, sandbox.start):
            self.watch_pause()
        else:
            self.dead = True

    def watch_pause(self) -> None:
        """Follow the sandbox's pause: if it dies, the next sync recreates the sandbox."""
        sandbox = self.state.sandbox
        assert sandbox is not None
        self.pause = ProcessHandle(sandbox.pid, sandbox.start)
        pause = self.pause
        pause.add_exit_callback(lambda: self._on_pause_exit(pause))

    def _on_pause_exit(self, pause: ProcessHandle) -> None:
        if pause is self.pause and self.state.terminating is None:
            self.dead = True
            self.hooks.wake()

    # ----- sandbox death and whole-pod recreation -----------------------------------------------------------

    async def recover(self) -> None:
        """Before a sync: handle a dead pause and a pending recreation request."""
        if self.dead:
            await self._sandbox_changed()
        if self.recreate_request is not None:
            await self._recreate_pod(*self.recreate_request)

    async def _sandbox_changed(self) -> None:
        """pause died: the kernel killed the pod's processes. Clean up and start over in a new sandbox."""
        self.dead = False
        pod = self.state.pod
        log.warning("Pod sandbox died; recreating it pod=%s uid=%s", pod.key, pod.uid)
        self.hooks.event("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
        await self.containers.wait_all(5)
        await self._discard()

    async def _discard(self) -> None:
        """Remove pause and network after the containers are gone; init containers run again in the next one."""
        await self.hooks.settle()
        sandbox, self.state.sandbox, self.pause = self.state.sandbox, None, None  # its exit is ours, not a death
        await self.runtime.kill_sandbox(self.state.pod.uid, sandbox, remove_state=False)
        for c in self.state.pod.spec.init_containers:
            rec = self.state.records[c.name]
            if rec.state is State.TERMINATED:
                rec.last_terminated, rec.terminated = rec.terminated, None
            rec.state, rec.reason, rec.message = State.WAITING, "PodInitializing", ""
        self.hooks.persist()
        self.hooks.changed()

    async def _recreate_pod(self, container: str, kind: ProbeKind, output: str) -> None:
        """A liveness (or startup) failure: kill the whole pod and recreate it from the same spec (new pause, new
        namespaces, new containers), with restart counts kept and CrashLoopBackOff between recreations.

        A deliberate difference from the kubelet, which restarts only the failing container (see README)."""
        self.recreate_request = None
        pod = self.state.pod
        spec = next(c for c in pod.spec.containers if c.name == container)
        probe = spec.probe(kind)
        grace = pod.spec.termination_grace_period_seconds
        if probe is not None and probe.termination_grace_period_seconds is not None:
            grace = probe.termination_grace_period_seconds
        restart = pod.spec.restart_policy is not RestartPolicy.NEVER
        what = kind.value.lower()
        suffix = ", pod will be killed and re-created" if restart else ""
        log.warning("Probe failure kills the pod pod=%s container=%s probe=%s output=%r", pod.key, container,
                    what, output)
        await self.containers.stop(grace, {container: f"Container {container} failed {what} probe{suffix}"})
        if not restart:
            return
        self._recreated = (container, time.time())
        await self._discard()

    # ----- the end -------------------------------------------------------------------------------------------

    def finish_if_done(self) -> None:
        """When nothing runs and nothing will restart, the pod is complete: its sandbox goes (as the kubelet)."""
        if self.containers.anything_running():
            return
        if self.state.phase() in (PodPhase.SUCCEEDED, PodPhase.FAILED):
            self.state.terminal = True
            self.hooks.spawn(self._release())

    async def _release(self) -> None:
        sandbox, self.state.sandbox, self.pause = self.state.sandbox, None, None
        await self.runtime.kill_sandbox(self.state.pod.uid, sandbox, remove_state=False)
        self.hooks.persist()
        self.hooks.changed()

    async def terminate(self, grace: int) -> None:
        """Deletion: stop the containers (grace, then SIGKILL), then pause, network, run state and logs."""
        pod = self.state.pod
        await self.containers.stop(grace, {})
        await self.hooks.settle()
        self.pause = None
        delay = 1.0
        while True:  # until the lease and run state are gone: a full disk must not leave them to the next restart
            try:
                await self.containers.release_files()  # tmpfs mounts in the run dir go before it does
                await self.runtime.kill_sandbox(pod.uid, self.state.sandbox)
                break
            except (MinikubeletError, OSError) as e:
                log.error("Could not finish removing a deleted pod; retrying in %.0f s pod=%s uid=%s error=%s",
                          delay, pod.key, pod.uid, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_CLEANUP_DELAY)
        self.state.sandbox = None
        shutil.rmtree(self.runtime.pod_log_dir(pod), ignore_errors=True)
        log.info("Pod terminated pod=%s uid=%s", pod.key, pod.uid)
        self.hooks.changed()
