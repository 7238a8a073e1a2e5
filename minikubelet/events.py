"""A bounded store of Kubernetes Events (pod lifecycle, probes), also written to the daemon log."""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minikubelet.timefmt import rfc3339

log = logging.getLogger(__name__)

MAX_EVENTS = 2000


@dataclass(slots=True)
class Event:
    name: str
    namespace: str
    pod_name: str
    pod_uid: str
    reason: str
    message: str
    type: str
    field_path: str
    first: float
    last: float
    count: int
    resource_version: int
    kind: str = "Pod"  # of the involved object: "Pod", or "Node" (pod_name/pod_uid are then the node's name)

    def to_api(self, node: str) -> dict[str, Any]:
        involved: dict[str, Any] = {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.pod_name,
            "uid": self.pod_uid,
            "apiVersion": "v1",
        }
        if self.kind == "Node":  # as the kubelet: the event lives in "default", the node has no namespace
            involved["namespace"] = ""
        if self.field_path:
            involved["fieldPath"] = self.field_path
        return {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": self.name,
                "namespace": "default" if self.kind == "Node" else self.namespace,
                "uid": self.name,
                "resourceVersion": str(self.resource_version),
                "creationTimestamp": rfc3339(self.first),
            },
            "involvedObject": involved,
            "reason": self.reason,
            "message": self.message,
            "type": self.type,
            "count": self.count,
            "firstTimestamp": rfc3339(self.first),
            "lastTimestamp": rfc3339(self.last),
            "source": {"component": "minikubelet", "host": node},
            "reportingComponent": "minikubelet",
            "reportingInstance": node,
        }


class EventRecorder:
    """Keeps the newest MAX_EVENTS events; repeats of the same (pod, object, reason, message) bump ``count``."""

    def __init__(self, next_version: Callable[[], int], maxlen: int = MAX_EVENTS) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._index: dict[tuple[str, str, str, str], Event] = {}
        self._next_version = next_version
        self._seq = itertools.count(1)

    def record(
        self, namespace: str, pod_name: str, pod_uid: str, type_: str, reason: str, message: str, field_path: str = "",
        *, kind: str = "Pod",
    ) -> None:
        now = time.time()
        key = (pod_uid, field_path, reason, message)
        level = logging.WARNING if type_ == "Warning" else logging.INFO
        if kind == "Node":
            log.log(level, "Event %s node=%s message=%r", reason, pod_name, message)
        else:
            log.log(level, "Event %s pod=%s/%s object=%s message=%r", reason, namespace, pod_name,
                    field_path or "pod", message)
        ev = self._index.get(key)
        if ev is not None and ev in self._events:
            ev.count += 1
            ev.last = now
            ev.resource_version = self._next_version()
            return
        if len(self._events) == self._events.maxlen:
            old = self._events[0]
            self._index.pop((old.pod_uid, old.field_path, old.reason, old.message), None)
        ev = Event(
            f"{pod_name}.{int(now * 1e9):x}{next(self._seq):x}",
            namespace,
            pod_name,
            pod_uid,
            reason,
            message,
            type_,
            field_path,
            now,
            now,
            1,
            self._next_version(),
            kind,
        )
        self._events.append(ev)
        self._index[key] = ev

    def record_node(self, node: str, type_: str, reason: str, message: str) -> None:
        """An event about the Node itself (kubelet style: involvedObject uid = the node's name, namespace "default")."""
        self.record("default", node, node, type_, reason, message, kind="Node")

    def list(self) -> list[Event]:
        return list(self._events)
