"""ContainerRunner: starts, watches and restarts one pod's containers inside its sandbox.

The container half of the kubelet's ``computePodActions`` and ``startContainer``: init containers one at a time in
order, app containers started once the inits succeeded, restarts by restart policy with CrashLoopBackOff, exit
records read back from pause, graceful stop (SIGTERM, grace, SIGKILL). Owner of the container process handles.
Imports pod.state, pod.context, pod.env, pod.spec, pod.status, runtime and timefmt; never the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from minikubelet.errors import ContainerStartError, MinikubeletError, VolumeError
from minikubelet.images.content import ImagePullError, ResolvedImage
from minikubelet.pod import volumes
from minikubelet.pod.context import ImageProvider, NodeFacts, Prober, WorkerHooks
from minikubelet.pod.env import build_argv, build_env
from minikubelet.pod.process import process_of
from minikubelet.pod.rootfs import (
    NODE_FILESYSTEM,
    instance_dirs,
    rootfs_request,
    uses_node_filesystem,
    write_pod_files,
)
from minikubelet.pod.spec import Container, RestartPolicy
from minikubelet.pod.state import PodState
from minikubelet.pod.status import ContainerRecord, State, Termination, container_id, should_restart
from minikubelet.runtime.linux import LinuxRuntime
from minikubelet.runtime.proc import ProcessHandle
from minikubelet.timefmt import go_duration

log = logging.getLogger(__name__)

MIN_GRACE_SECONDS = 2  # the kubelet's minimumGracePeriodInSeconds between the stop signal and SIGKILL
READINESS_RETRIGGER_SECONDS = 1.0  # trigger_readiness: the second immediate readiness probe after a start
BACKOFF_ON_PREPARE = 10.0  # a container that could not be created from its spec and image is tried again after this
IMAGE_RETRY_SECONDS = 10.0
VOLUME_RETRY_SECONDS = 5.0


def stop_signal(name: str | None) -> signal.Signals:
    """An image's StopSignal (``SIGQUIT``, ``QUIT`` or a number) as containerd reads it; SIGTERM when unset or bad."""
    if not name:
        return signal.SIGTERM
    text = name.strip().upper()
    try:
        return signal.Signals(int(text)) if text.isdigit() else signal.Signals[text if text.startswith("SIG") else
                                                                               "SIG" + text]
    except (KeyError, ValueError):
        return signal.SIGTERM


class ContainerRunner:
    def __init__(
        self, state: PodState, runtime: LinuxRuntime, node: NodeFacts, probes: Prober | None, hooks: WorkerHooks,
        images: ImageProvider | None = None,
    ) -> None:
        self.state = state
        self.runtime = runtime
        self.node = node
        self.probes = probes
        self.hooks = hooks
        self.images = images
        self.handles: dict[str, ProcessHandle] = {}  # container name -> its running process
        self._pulls: dict[str, asyncio.Task[None]] = {}  # container name -> its image's pull, while it runs
        self._images: dict[str, ResolvedImage] = {}  # container name -> its image, ready for the next start
        self._stop_signals: dict[str, signal.Signals] = {}  # the image's StopSignal (nginx: SIGQUIT), else SIGTERM

    # ----- decisions -----------------------------------------------------------------------------------------

    async def sync_init_containers(self) -> bool:
        """Run init containers one at a time, in order; True once all have succeeded."""
        for c in self.state.pod.spec.init_containers:
            rec = self.state.records[c.name]
            if rec.succeeded():
                continue
            if rec.state is State.RUNNING or c.name in self._pulls:
                return False
            if c.name in self._images:
                await self._start(c, rec)
                return False
            if rec.instances and not self._restart_allowed(c, rec):
                return False
            await self._start(c, rec)
            return False
        return True

    async def sync_container(self, c: Container) -> None:
        rec = self.state.records[c.name]
        if rec.state is State.RUNNING or c.name in self._pulls:
            return
        if c.name in self._images:  # its image became ready: the start the restart policy allowed goes on
            await self._start(c, rec)
            return
        if rec.instances == 0:
            if rec.reason != "CreateContainerConfigError" or not uses_node_filesystem(self.state.pod):
                await self._start(c, rec)
            return
        if self._restart_allowed(c, rec):
            await self._start(c, rec)

    def _specs(self) -> tuple[Container, ...]:
        return (*self.state.pod.spec.init_containers, *self.state.pod.spec.containers)

    def anything_running(self) -> bool:
        return bool(self.handles) or any(r.state is State.RUNNING for r in self.state.records.values())

    def _restart_allowed(self, c: Container, rec: ContainerRecord) -> bool:
        """Restart policy plus CrashLoopBackOff; moves the record to waiting/CrashLoopBackOff while backing off."""
        term = rec.terminated or rec.last_terminated
        policy = self.state.pod.spec.restart_policy
        if c in self.state.pod.spec.init_containers and policy is RestartPolicy.ALWAYS:
            policy = RestartPolicy.ON_FAILURE  # init containers are restarted only when they fail
        if not should_restart(policy, term):
            return False
        finished = term.finished_at if term else time.time()
        remaining = self.state.backoff.remaining(c.name, finished, time.time())
        if remaining <= 0:
            self.state.backoff.next(c.name, finished)
            return True
        self.show_backoff(c.name, c.name)
        self.hooks.wake_in(remaining)
        return False

    def show_backoff(self, name: str, key: str) -> None:
        """waiting/CrashLoopBackOff with the kubelet's message, and one BackOff event per back-off period."""
        rec = self.state.records[name]
        if rec.state is State.WAITING and rec.reason == "CrashLoopBackOff":
            return
        if rec.state is State.TERMINATED:
            rec.last_terminated = rec.terminated
            rec.terminated = None
        rec.state = State.WAITING
        rec.reason = "CrashLoopBackOff"
        pod = self.state.pod
        delay = go_duration(self.state.backoff.delay(key))
        rec.message = f"back-off {delay} restarting failed container={name} pod={pod.full_name}"
        self.hooks.event("Warning", "BackOff", f"Back-off restarting failed container {name} in pod {pod.full_name}",
                         name)
        self.hooks.persist()
        self.hooks.changed()

    # ----- starting ------------------------------------------------------------------------------------------

    async def _start(self, c: Container, rec: ContainerRecord) -> None:
        sandbox = self.state.sandbox
        assert sandbox is not None
        pod = self.state.pod
        image: ResolvedImage | None = None
        if not uses_node_filesystem(pod):
            image = self._image_for(c, rec)
            if image is None:
                return  # being pulled (or backing off): the pull's end wakes the worker
        elif not c.command and not c.args:
            rec.state, rec.reason = State.WAITING, "CreateContainerConfigError"
            rec.message = (
                f'container "{c.name}" has no command: the pod is annotated {NODE_FILESYSTEM}="true", so it runs '
                f"programs of the node, not its image {c.image!r}: set spec.containers[].command (or args), or "
                "remove the annotation to run the image"
            )
            self.hooks.event("Warning", "Failed", f"Error: {rec.message}", c.name)
            self.hooks.changed()
            return
        instance = rec.instances
        rootfs: dict[str, Any] | None = None
        if image is None:
            env = build_env(pod, c, sandbox.ip, self.node.name, self.node.host_ip)
            argv = build_argv(c, env)
            cwd = c.working_dir
        else:
            own = build_env(pod, c, sandbox.ip, self.node.name, self.node.host_ip, defaults=False)
            proc = process_of(c, image.content.config, pod.hostname, own)
            argv, env, cwd = proc.argv, proc.env, proc.cwd
            try:
                rootfs = await self._prepare_rootfs(c, instance, image, proc.image_user)
            except VolumeError as e:  # as the kubelet: the container waits in ContainerCreating, FailedMount says why
                self._images[c.name] = image
                if rec.reason != "ContainerCreating" or rec.message != e.setup_failed():
                    self.hooks.event("Warning", "FailedMount", e.setup_failed())
                rec.reason, rec.message = "ContainerCreating", e.setup_failed()
                self.hooks.changed()
                self.hooks.wake_in(VOLUME_RETRY_SECONDS)
                return
            except ContainerStartError as e:  # a subPath the kubelet refuses
                self._config_error(c, rec, e.reason, str(e))
                self.hooks.wake_in(BACKOFF_ON_PREPARE)
                return
            except (OSError, MinikubeletError) as e:
                self._config_error(c, rec, "CreateContainerError", f"failed to prepare the container's root "
                                   f"filesystem: {e}")
                self.hooks.wake_in(BACKOFF_ON_PREPARE)
                return
            rec.image_id = image.image_id
            rec.image = image.content.reference  # as containerd reports it: docker.io/library/busybox:latest
            self._stop_signals[c.name] = stop_signal(image.content.config.stop_signal)
            rec.image_env = list(image.content.config.env)
            rec.image_user, rec.image_cwd = proc.image_user, proc.cwd
            if not argv:
                self._config_error(c, rec, "CreateContainerError", "failed to generate container spec: no command "
                                   "specified")
                return
        record = f"{c.name}.{instance}"
        log_path = self.runtime.container_log(pod, c.name, instance)
        before = (rec.restart_count, rec.container_id, rec.terminated, rec.last_terminated)
        if rec.state is State.TERMINATED:
            rec.last_terminated = rec.terminated
        rec.terminated = None
        rec.instances = instance + 1
        rec.restart_count = instance
        rec.container_id = container_id(pod.uid, c.name, instance)
        now = time.time()
        try:
            fds: tuple[int, ...] = ()
            if c.stdin or c.tty:  # its relay holds the stdin/pty and copies the output to the log (kubectl attach)
                fds = await self.runtime.start_relay(pod, record, log_path, c.tty, c.stdin_once)
            try:
                pid, start = await self.runtime.start_process(
                    pod, sandbox, record, argv, env, cwd, c.run_as_user, c.run_as_group, log_path, rootfs=rootfs,
                    stdio_fds=fds, tty=c.tty,
                )
            finally:
                for fd in fds:
                    os.close(fd)
        except ContainerStartError as e:
            if e.reason == "CreateContainerConfigError":  # runAsNonRoot and the image's user: nothing was started
                rec.instances = instance
                rec.restart_count, rec.container_id, rec.terminated, rec.last_terminated = before
                self._config_error(c, rec, e.reason, str(e))
                self.hooks.wake_in(BACKOFF_ON_PREPARE)
                return
            rec.state = State.TERMINATED
            rec.terminated = Termination(
                128, "StartError", time.time(), now, message=str(e), container_id=rec.container_id
            )
            rec.pid = rec.start = None
            self.hooks.event("Warning", "Failed", f"Error: {e}", c.name)
            log.warning("Container failed to start pod=%s container=%s error=%s", pod.key, c.name, e)
            self.hooks.persist()
            self.hooks.changed()
            self.hooks.wake()
            return
        rec.state, rec.reason, rec.message = State.RUNNING, "", ""
        rec.pid, rec.start, rec.started_at = pid, start, now
        rec.started = c.startup_probe is None
        rec.ready = rec.started and c.readiness_probe is None and not rec.init
        self.hooks.event("Normal", "Created", f"Created container: {c.name}", c.name)
        self.hooks.event("Normal", "Started", f"Started container {c.name}", c.name)
        log.info(
            "Container started pod=%s container=%s pid=%d restartCount=%d", pod.key, c.name, pid, rec.restart_count
        )
        self.watch(c.name, record, pid, start)
        self.hooks.persist()
        self.hooks.changed()
        self.trigger_readiness(c, rec)

    def _config_error(self, c: Container, rec: ContainerRecord, reason: str, message: str) -> None:
        """A container that cannot be created from its spec and image: waiting with the kubelet's reason."""
        changed = rec.reason != reason or rec.message != message
        if rec.state is State.TERMINATED:
            rec.last_terminated, rec.terminated = rec.terminated, None
        rec.state, rec.reason, rec.message = State.WAITING, reason, message
        if changed:
            self.hooks.event("Warning", "Failed", f"Error: {message}", c.name)
            log.warning("Container cannot be created pod=%s container=%s reason=%s error=%s", self.state.pod.key,
                        c.name, reason, message)
        self.hooks.persist()
        self.hooks.changed()

    # ----- images --------------------------------------------------------------------------------------------

    def _image_for(self, c: Container, rec: ContainerRecord) -> ResolvedImage | None:
        """The container's image if ready now; else start (or keep) its pull in a task of its own and return None.

        The pull runs beside the worker so that deletion, probes and other containers never wait for it; its end
        wakes the worker, which then starts the container."""
        ready = self._images.pop(c.name, None)
        if ready is not None:
            return ready
        if c.name in self._pulls:
            return None
        if self.images is None:
            self._config_error(c, rec, "ErrImagePull", "this node has no image service")
            return None
        self._pulls[c.name] = asyncio.get_running_loop().create_task(self._pull(c), name=f"image {c.image}")
        return None

    async def _pull(self, c: Container) -> None:
        assert self.images is not None
        pod = self.state.pod
        rec = self.state.records[c.name]
        try:
            self._images[c.name] = await self.images.ensure(
                pod, c, lambda type_, reason, message: self.hooks.event(type_, reason, message, c.name)
            )
        except ImagePullError as e:  # the status says why; the worker tries again when the back-off allows
            self._pulls.pop(c.name, None)
            self.hooks.event("Warning", "Failed", f"Error: {e.reason}", c.name)  # the kubelet's startContainer
            if rec.state is not State.RUNNING:
                if rec.state is State.TERMINATED:
                    rec.last_terminated, rec.terminated = rec.terminated, None
                rec.state, rec.reason, rec.message = State.WAITING, e.reason, e.message
                self.hooks.persist()
                self.hooks.changed()
            asyncio.get_running_loop().call_later(e.retry_in, self.hooks.wake)  # the worker may be asleep now
            return
        except asyncio.CancelledError:
            self._pulls.pop(c.name, None)
            raise
        except Exception as e:  # never let a pull's surprise kill the pod: show it and retry
            self._pulls.pop(c.name, None)
            log.exception("Image pull failed unexpectedly pod=%s container=%s image=%s", pod.key, c.name, c.image)
            rec.state, rec.reason, rec.message = State.WAITING, "ErrImagePull", str(e) or repr(e)
            self.hooks.changed()
            asyncio.get_running_loop().call_later(IMAGE_RETRY_SECONDS, self.hooks.wake)
            return
        self._pulls.pop(c.name, None)
        self.hooks.wake()  # the image is ready: start the container now

    async def _prepare_rootfs(
        self, c: Container, instance: int, image: ResolvedImage, image_user: str
    ) -> dict[str, Any]:
        pod = self.state.pod
        sandbox = self.state.sandbox
        assert sandbox is not None
        run_pod_dir = self.runtime.pod_dir(pod.uid)
        data_dir = self.runtime.data_dir
        files = await asyncio.to_thread(write_pod_files, run_pod_dir, pod, sandbox.ip)
        dirs = await asyncio.to_thread(instance_dirs, data_dir, pod.uid, c.name, instance)
        shm, binds = await self._volumes(c)
        return rootfs_request(pod, c, image.lowerdirs, dirs, files, binds, shm, image_user)

    async def _volumes(self, c: Container) -> tuple[Path | None, list[dict[str, Any]]]:
        """The pod's volumes made ready (idempotent), its shared /dev/shm, and this container's volume binds."""
        pod = self.state.pod
        data_dir = self.runtime.data_dir
        await volumes.prepare(pod, self.runtime, data_dir)
        shm = await volumes.prepare_shm(self.runtime, self.runtime.pod_dir(pod.uid))
        binds = await asyncio.to_thread(volumes.binds_for, pod, c.name, data_dir)
        return shm, binds

    async def release_files(self) -> None:
        """A deleted pod's writable layers, volumes and shm (``<data-dir>/pods/<uid>``, tmpfs mounts unmounted
        first), after its processes are gone. Raises VolumeError if a mount stays (the caller retries)."""
        uid = self.state.pod.uid
        await volumes.cleanup(uid, self.runtime, self.runtime.data_dir, self.runtime.pod_dir(uid))

    def in_use_images(self) -> set[str]:
        return {r.image_id for r in self.state.records.values() if r.image_id}

    async def cancel_pulls(self) -> None:
        """Stop waiting for pulls (the pulls themselves go on for other pods: they are shared and shielded)."""
        tasks = list(self._pulls.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pulls.clear()
        self._images.clear()

    def trigger_readiness(self, c: Container, rec: ContainerRecord) -> None:
        """A started, running container that is not ready yet gets its readiness probe now and once more a second
        later (its server may not listen yet), instead of a whole period later. The kubelet triggers it whenever it
        builds such a status, which follows a container start by up to a second (the PLEG relist)."""
        if self.probes is None or c.readiness_probe is None or not rec.started or rec.ready:
            return
        uid = self.state.pod.uid
        self.probes.trigger_readiness(uid, c.name)
        instance = rec.container_id

        def again() -> None:
            if self.probes is not None and rec.container_id == instance and rec.started and not rec.ready:
                if rec.state is State.RUNNING and self.state.terminating is None:
                    self.probes.trigger_readiness(uid, c.name)

        asyncio.get_running_loop().call_later(READINESS_RETRIGGER_SECONDS, again)

    # ----- exits ---------------------------------------------------------------------------------------------

    def watch(self, name: str, record: str, pid: int, start: int) -> None:
        """Follow a running container process (started now, or re-adopted) until it exits."""
        handle = ProcessHandle(pid, start)
        self.handles[name] = handle
        handle.add_exit_callback(lambda: self.hooks.spawn(self._on_exit(name, record, handle)))

    async def _on_exit(self, name: str, record: str, handle: ProcessHandle) -> None:
        pod = self.state.pod
        status = await self.runtime.wait_exit_record(pod.uid, record, self.state.sandbox)
        rec = self.state.records[name]
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
                "OOMKilled" if status.oom_killed else "Completed" if status.exit_code == 0 else "Error",
                status.finished_at,
                rec.started_at,
                status.signal,
                container_id=rec.container_id,
            )
        if term.reason == "OOMKilled":
            limit = dict(next((c.limits for c in self._specs() if c.name == name), ())).get("memory", "")
            self.hooks.event("Warning", "OOMKilled", f"Container {name} was killed by the kernel's OOM killer: it used "
                             f"more memory than its limit{f' ({limit})' if limit else ''}", name)
        rec.state, rec.terminated, rec.pid, rec.start = State.TERMINATED, term, None, None
        rec.ready = False
        rec.started = False
        log.info("Container exited pod=%s container=%s exitCode=%d reason=%s", pod.key, name, term.exit_code,
                 term.reason)
        self.hooks.persist()
        self.hooks.changed()
        self.hooks.wake()

    async def wait_all(self, timeout: float) -> None:
        """Wait (up to ``timeout`` each) for every container process to be gone (after the kernel killed them)."""
        for name in list(self.handles):
            await self.handles[name].wait(timeout)

    # ----- stopping ------------------------------------------------------------------------------------------

    async def stop(self, grace: int, messages: dict[str, str]) -> None:
        """SIGTERM every running container, SIGKILL what is left after ``grace`` (floored at 2 s)."""
        grace = max(grace, MIN_GRACE_SECONDS)
        running = {n: h for n, h in self.handles.items() if not h.exited}
        for name, handle in running.items():
            self.hooks.event("Normal", "Killing", messages.get(name) or f"Stopping container {name}", name)
            handle.send(self._stop_signals.get(name, signal.SIGTERM))
        if not running:
            return
        await asyncio.gather(*(h.wait(grace) for h in running.values()))
        for name, handle in running.items():
            if not handle.exited:
                log.warning("Container ignored SIGTERM for the grace period; killing it pod=%s container=%s "
                            "grace=%ds", self.state.pod.key, name, grace)
                handle.send(signal.SIGKILL)
        await asyncio.gather(*(h.wait(10) for h in running.values()))
