"""Running commands inside a pod's containers (kubectl exec, exec probes) and finding its log files.

Reads a ``PodState`` (pod/state.py); imports pod.context, pod.env, pod.spec, pod.status and runtime; never the worker.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

from minikubelet.errors import MinikubeletError
from minikubelet.images.content import ImageConfig
from minikubelet.pod.context import NodeFacts
from minikubelet.pod.env import build_env
from minikubelet.pod.process import env_of
from minikubelet.pod.spec import Container
from minikubelet.pod.state import PodState
from minikubelet.pod.status import ContainerRecord, State
from minikubelet.runtime.linux import LinuxRuntime

_records = itertools.count(1)


def _on_image(rec: ContainerRecord, spec: Container) -> tuple[str | None, str | None]:
    """(image user, cwd) of an exec'd command: the container's own on an image, (None, workingDir) on the node."""
    if rec.image_id:
        return rec.image_user, rec.image_cwd or spec.working_dir
    return None, spec.working_dir


def _target(
    w: PodState, node: NodeFacts, container: str
) -> tuple[ContainerRecord, Container, int, int, dict[str, str]]:
    """(record, spec, pid, start time, env) of a running container, or MinikubeletError saying why not."""
    rec = w.records.get(container)
    spec = next((c for c in w.pod.spec.containers if c.name == container), None)
    if rec is None or spec is None:
        raise MinikubeletError(f'container "{container}" not found in pod "{w.pod.name}"')
    if rec.state is not State.RUNNING or rec.pid is None or rec.start is None or w.sandbox is None:
        raise MinikubeletError(f'container "{container}" in pod "{w.pod.name}" is not running')
    if rec.image_id:  # on an image: its Env under the container's, as the container's own process has
        own = build_env(w.pod, spec, w.sandbox.ip, node.name, node.host_ip, defaults=False)
        env = env_of(w.pod.hostname, ImageConfig(env=tuple(rec.image_env)), own)
    else:
        env = build_env(w.pod, spec, w.sandbox.ip, node.name, node.host_ip)
    return rec, spec, rec.pid, rec.start, env


async def exec_start(
    w: PodState, runtime: LinuxRuntime, node: NodeFacts, container: str, argv: list[str], fds: tuple[int, ...],
    tty: bool,
) -> tuple[int, int, str]:
    rec, spec, pid, start, env = _target(w, node, container)
    record = f"exec.{next(_records)}"
    image_user, cwd = _on_image(rec, spec)
    host_pid, host_start = await runtime.exec_process(
        w.pod.uid, pid, start, record, argv, env, cwd, spec.run_as_user, spec.run_as_group, fds, tty,
        image_user=image_user,
    )
    return host_pid, host_start, record


async def exec_exit_code(w: PodState, runtime: LinuxRuntime, record: str) -> int | None:
    status = await runtime.wait_exit_record(w.pod.uid, record, w.sandbox)
    with contextlib.suppress(FileNotFoundError):
        (runtime.pod_dir(w.pod.uid) / "exits" / record).unlink()
    return status.exit_code if status else None


async def exec_in_container(
    w: PodState, runtime: LinuxRuntime, node: NodeFacts, container: str, argv: list[str], timeout: float
) -> tuple[int | None, bytes]:
    rec, spec, pid, start, env = _target(w, node, container)
    image_user, cwd = _on_image(rec, spec)
    return await runtime.exec_sync(
        w.pod.uid, w.sandbox, pid, start, f"exec.{next(_records)}", argv, env, cwd, spec.run_as_user,
        spec.run_as_group, timeout, image_user=image_user,
    )


def log_path(w: PodState, runtime: LinuxRuntime, container: str, previous: bool) -> Path | None:
    rec = w.records.get(container)
    if rec is None or rec.instances == 0:
        return None
    index = rec.instances - (2 if previous else 1)
    return runtime.container_log(w.pod, container, index) if index >= 0 else None
