"""Desired state: the supported subset of a v1 Pod as frozen dataclasses.

Built only by ``manifest.py`` from a validated manifest; everything downstream reads these and never the raw dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class ProbeKind(StrEnum):
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One env entry: a literal ``value`` or a ``valueFrom.fieldRef.fieldPath`` (``field_path``)."""

    name: str
    value: str = ""
    field_path: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    name: str | None = None
    protocol: str = "TCP"
    host_port: int | None = None


@dataclass(frozen=True, slots=True)
class HTTPHeader:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe with exactly one handler: ``http_get``, ``tcp_socket`` or ``exec_command`` (defaults applied)."""

    handler: str  # "httpGet" | "tcpSocket" | "exec"
    port: int | str | None = None  # httpGet / tcpSocket: number or named containerPort
    host: str | None = None
    path: str = "/"
    scheme: str = "HTTP"
    http_headers: tuple[HTTPHeader, ...] = ()
    command: tuple[str, ...] = ()
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    working_dir: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    run_as_user: int | None = None
    run_as_group: int | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    # securityContext fields recorded from the manifest (container value, else the pod-level one where k8s has it);
    # the runtime does not enforce privileged/allowPrivilegeEscalation/readOnlyRootFilesystem/capabilities yet.
    run_as_non_root: bool | None = None
    privileged: bool = False
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool = False
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    # resources after the API server's defaulting (requests default to limits), quantities as written
    requests: tuple[tuple[str, str], ...] = ()
    limits: tuple[tuple[str, str], ...] = ()
    # stdin/terminal (held by the container's relay, nsexec/relay.py; kubectl attach and run -it)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False

    def probe(self, kind: ProbeKind) -> Probe | None:
        if kind is ProbeKind.LIVENESS:
            return self.liveness_probe
        if kind is ProbeKind.READINESS:
            return self.readiness_probe
        return self.startup_probe


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    termination_grace_period_seconds: int = 30
    node_selector: tuple[tuple[str, str], ...] = ()
    hostname: str | None = None
    active_deadline_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod as a manifest file defines it.

    ``uid`` is stable across label/annotation-only edits and changes when the spec changes (see manifest.pod_uid),
    so a spec edit becomes remove-old + add-new while a metadata edit is an in-place update.
    ``manifest`` is the validated, defaulted v1 Pod dict (with metadata.uid filled in) echoed back by the API.
    """

    namespace: str
    name: str
    uid: str
    spec: PodSpec
    source: str  # absolute path of the manifest file
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def hostname(self) -> str:
        """The pod's hostname: spec.hostname or the name, truncated to 63 chars without a trailing '-' or '.'."""
        return (self.spec.hostname or self.name)[:63].rstrip("-.")

    @property
    def full_name(self) -> str:
        """``name_namespace(uid)`` as the kubelet writes it in back-off messages."""
        return f"{self.name}_{self.namespace}({self.uid})"
