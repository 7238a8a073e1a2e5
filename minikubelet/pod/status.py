"""Observed container state and the pod status the kubelet would report (phase, conditions, containerStatuses).

``ContainerRecord`` is mutable and owned by one pod worker; the functions here are pure and turn records into the
v1 status dicts the API serves (kubelet ``getPhase`` and ``status/generate.go`` rules).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from minikubelet.pod.spec import Container, Pod, RestartPolicy
from minikubelet.timefmt import rfc3339


class State(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(slots=True)
class Termination:
    exit_code: int
    reason: str
    finished_at: float
    started_at: float | None = None
    signal: int = 0
    message: str = ""
    container_id: str = ""

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason}
        if self.signal:
            out["signal"] = self.signal
        if self.message:
            out["message"] = self.message
        out["startedAt"] = rfc3339(self.started_at)
        out["finishedAt"] = rfc3339(self.finished_at)
        if self.container_id:
            out["containerID"] = self.container_id
        return out


@dataclass(slots=True)
class ContainerRecord:
    """What one container of a pod is doing now, and how it ended last time."""

    name: str
    image: str
    init: bool = False
    state: State = State.WAITING
    reason: str = "ContainerCreating"
    message: str = ""
    restart_count: int = 0
    instances: int = 0  # how many processes were started for it (restart_count = instances - 1 once started)
    pid: int | None = None
    start: int | None = None  # start time of pid, with it the process identity
    started_at: float | None = None
    container_id: str = ""
    terminated: Termination | None = None  # set when state is TERMINATED
    last_terminated: Termination | None = None
    ready: bool = False
    started: bool = False
    image_id: str = ""  # repo@sha256:... of the image the newest instance runs ("" on the node's filesystem)
    image_env: list[str] = field(default_factory=list)  # the image's Env, for exec'd commands
    image_user: str = ""  # the image's User, for exec'd commands
    image_cwd: str = ""  # the container's working directory on its image, for exec'd commands

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerRecord:
        data = dict(data)
        for key in ("terminated", "last_terminated"):
            if data.get(key):
                data[key] = Termination(**data[key])
        data["state"] = State(data["state"])
        return cls(**data)

    def succeeded(self) -> bool:
        return self.state is State.TERMINATED and self.terminated is not None and self.terminated.exit_code == 0

    def to_api(self) -> dict[str, Any]:
        if self.state is State.RUNNING:
            state: dict[str, Any] = {"running": {"startedAt": rfc3339(self.started_at)}}
        elif self.state is State.TERMINATED and self.terminated is not None:
            state = {"terminated": self.terminated.to_api()}
        else:
            waiting: dict[str, Any] = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        out: dict[str, Any] = {
            "name": self.name,
            "state": state,
            "lastState": {"terminated": self.last_terminated.to_api()} if self.last_terminated else {},
            "ready": self.succeeded() if self.init else self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": self.image_id,
            "started": self.started if not self.init else self.state is State.RUNNING,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def container_id(uid: str, name: str, instance: int) -> str:
    return "minikubelet://" + hashlib.sha256(f"{uid}/{name}/{instance}".encode()).hexdigest()


def should_restart(policy: RestartPolicy, term: Termination | None) -> bool:
    """The kubelet's ShouldContainerBeRestarted for an exited container."""
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.NEVER:
        return False
    return term is None or term.exit_code != 0


def compute_phase(pod: Pod, records: dict[str, ContainerRecord]) -> PodPhase:
    """kubelet_pods.go getPhase, for our records."""
    spec = pod.spec
    for ic in spec.init_containers:
        rec = records.get(ic.name)
        if rec is None or not rec.succeeded():
            if rec is not None and rec.state is State.TERMINATED and spec.restart_policy is RestartPolicy.NEVER:
                return PodPhase.FAILED
            return PodPhase.PENDING
    running = waiting = stopped = succeeded = 0
    for c in spec.containers:
        rec = records.get(c.name)
        if rec is None:
            waiting += 1
        elif rec.state is State.RUNNING:
            running += 1
        elif rec.state is State.TERMINATED:
            stopped += 1
            if rec.succeeded():
                succeeded += 1
        elif rec.last_terminated is not None:
            stopped += 1  # waiting to restart after a termination
            if rec.last_terminated.exit_code == 0:
                succeeded += 1
        else:
            waiting += 1
    if waiting:
        return PodPhase.PENDING
    if running:
        return PodPhase.RUNNING
    if spec.restart_policy is RestartPolicy.ALWAYS:
        return PodPhase.RUNNING
    if stopped == succeeded:
        return PodPhase.SUCCEEDED
    if spec.restart_policy is RestartPolicy.NEVER:
        return PodPhase.FAILED
    return PodPhase.RUNNING


@dataclass(slots=True)
class PodConditions:
    """Transition times of the pod conditions, kept so lastTransitionTime only moves on a change."""

    times: dict[str, tuple[str, float]] = field(default_factory=dict)

    def set(self, ctype: str, status: bool, now: float) -> tuple[str, float]:
        value = "True" if status else "False"
        old = self.times.get(ctype)
        if old is None or old[0] != value:
            self.times[ctype] = (value, now)
        return self.times[ctype]


def conditions(
    pod: Pod,
    records: dict[str, ContainerRecord],
    phase: PodPhase,
    sandbox_ready: bool,
    cond: PodConditions,
    now: float,
    scheduled: tuple[bool, str, str] = (True, "", ""),
) -> list[dict[str, Any]]:
    """status.conditions in the order the kubelet writes them."""
    inits_done = all(records.get(c.name) is not None and records[c.name].succeeded() for c in pod.spec.init_containers)
    unready = [c.name for c in pod.spec.containers if not (records.get(c.name) and records[c.name].ready)]
    out: list[dict[str, Any]] = []

    def add(ctype: str, ok: bool, reason: str = "", message: str = "") -> None:
        value, since = cond.set(ctype, ok, now)
        item: dict[str, Any] = {
            "type": ctype,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(since),
        }
        if reason:
            item["reason"] = reason
        if message:
            item["message"] = message
        out.append(item)

    ok, sreason, smessage = scheduled
    if not ok:
        add("PodScheduled", False, sreason, smessage)
        return out
    completed = phase is PodPhase.SUCCEEDED
    add("PodReadyToStartContainers", sandbox_ready)
    add(
        "Initialized",
        inits_done,
        "" if inits_done else "ContainersNotInitialized",
        ""
        if inits_done
        else "containers with incomplete status: ["
        + " ".join(
            c.name for c in pod.spec.init_containers if not (records.get(c.name) and records[c.name].succeeded())
        )
        + "]",
    )
    reason = "PodCompleted" if completed else ("" if not unready else "ContainersNotReady")
    msg = "" if not unready or completed else "containers with unready status: [" + " ".join(unready) + "]"
    add("Ready", not unready, reason, msg)
    add("ContainersReady", not unready, reason, msg)
    add("PodScheduled", True)
    return out


def first_container(pod: Pod, name: str) -> Container | None:
    for c in (*pod.spec.init_containers, *pod.spec.containers):
        if c.name == name:
            return c
    return None
