"""Running commands inside a pod worker's containers (kubectl exec, exec probes) and finding its log files."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from minikubelet.errors import MinikubeletError
from minikubelet.pod.env import build_env
from minikubelet.pod.spec import Container
from minikubelet.pod.status import ContainerRecord, State

if TYPE_CHECKING:
    from minikubelet.pod.worker import PodWorker

_records = itertools.count(1)


def _target(w: PodWorker, container: str) -> tuple[ContainerRecord, Container, int, int, dict[str, str]]:
    """(record, spec, pid, start time, env) of a running container, or MinikubeletError saying why not."""
    rec = w.records.get(container)
    spec = next((c for c in w.pod.spec.containers if c.name == container), None)
    if rec is None or spec is None:
        raise MinikubeletError(f'container "{container}" not found in pod "{w.pod.name}"')
    if rec.state is not State.RUNNING or rec.pid is None or rec.start is None or w.sandbox is None:
        raise MinikubeletError(f'container "{container}" in pod "{w.pod.name}" is not running')
    env = build_env(w.pod, spec, w.sandbox.ip, w.ctx.node_name, w.ctx.host_ip)
    return rec, spec, rec.pid, rec.start, env


async def exec_start(
    w: PodWorker, container: str, argv: list[str], fds: tuple[int, ...], tty: bool
) -> tuple[int, int, str]:
    _, spec, pid, start, env = _target(w, container)
    record = f"exec.{next(_records)}"
    host_pid, host_start = await w.runtime.exec_process(
        w.pod.uid, pid, start, record, argv, env, spec.working_dir, spec.run_as_user, spec.run_as_group, fds, tty
    )
    return host_pid, host_start, record


async def exec_exit_code(w: PodWorker, record: str) -> int | None:
    status = await w.runtime.wait_exit_record(w.pod.uid, record, w.sandbox)
    with contextlib.suppress(FileNotFoundError):
        (w.runtime.pod_dir(w.pod.uid) / "exits" / record).unlink()
    return status.exit_code if status else None


async def exec_in_container(w: PodWorker, container: str, argv: list[str], timeout: float) -> tuple[int | None, bytes]:
    _, spec, pid, start, env = _target(w, container)
    return await w.runtime.exec_sync(
        w.pod.uid, w.sandbox, pid, start, f"exec.{next(_records)}", argv, env, spec.working_dir, spec.run_as_user,
        spec.run_as_group, timeout,
    )


def log_path(w: PodWorker, container: str, previous: bool) -> Path | None:
    rec = w.records.get(container)
    if rec is None or rec.instances == 0:
        return None
    index = rec.instances - (2 if previous else 1)
    return w.runtime.container_log(w.pod, container, index) if index >= 0 else None
