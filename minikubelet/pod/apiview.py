"""The v1 Pod object the API serves for a pod: manifest + live metadata + status (pure reads of a ``PodState``).

Imports pod.state, pod.context (``NodeFacts``), pod.status and timefmt; never the worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

from minikubelet.cgroups.resources import pod_qos
from minikubelet.pod.context import NodeFacts
from minikubelet.pod.state import PodState
from minikubelet.pod.status import PodPhase, conditions
from minikubelet.timefmt import rfc3339


def pod_to_api(w: PodState, node: NodeFacts) -> dict[str, Any]:
    """The v1 Pod: the manifest as loaded, live metadata, and the status. The result is read-only below its top
    level, metadata and spec: nested objects are shared with the pod's other snapshots (deep-copy to edit)."""
    base = w.api_base
    if base is None or base[0] is not w.pod.manifest:
        copied = json.loads(json.dumps(w.pod.manifest)) if w.pod.manifest else {"metadata": {}, "spec": {}}
        base = w.api_base = (w.pod.manifest, copied)
    pod = dict(base[1])
    pod["metadata"] = dict(pod.get("metadata") or {})
    pod["spec"] = dict(pod.get("spec") or {})
    pod["kind"], pod["apiVersion"] = "Pod", "v1"
    meta = pod.setdefault("metadata", {})
    meta.update(
        name=w.pod.name,
        namespace=w.pod.namespace,
        uid=w.pod.uid,
        resourceVersion=str(w.version),
        creationTimestamp=rfc3339(w.created_at),
    )
    if w.pod.labels:
        meta["labels"] = dict(w.pod.labels)
    if w.terminating is not None:
        meta["deletionTimestamp"] = rfc3339(w.terminating.since + w.terminating.grace)
        meta["deletionGracePeriodSeconds"] = w.terminating.grace
    pod.setdefault("spec", {})["nodeName"] = node.name
    pod["status"] = pod_status(w, node)
    return pod


def refresh_conditions(w: PodState, node: NodeFacts) -> None:
    """Bring the conditions' transition times up to date (they move when a status is built), so that a record
    saved now carries them across a daemon restart."""
    admitted = w.admitted or node.admit(w.pod)[0]
    if admitted:
        conditions(w.pod, w.records, w.phase(), w.sandbox is not None, w.conditions, time.time())


def pod_status(w: PodState, node: NodeFacts) -> dict[str, Any]:
    """status: phase, conditions, IPs, start time, container statuses (kubelet generate.go order)."""
    now = time.time()
    admitted = w.admitted or node.admit(w.pod)[0]
    scheduled = (True, "", "") if admitted else node.admit(w.pod)
    phase = w.phase() if admitted else PodPhase.PENDING
    status: dict[str, Any] = {"phase": phase.value}
    status["conditions"] = conditions(
        w.pod, w.records, phase, w.sandbox is not None, w.conditions, now, scheduled
    )
    if not admitted:
        return status
    if w.rejected is not None:  # as the kubelet's rejectPod: phase, reason and message, no container statuses
        status["reason"], status["message"] = w.rejected
        status["qosClass"] = pod_qos(w.pod.spec).value
        return status
    status["hostIP"] = node.host_ip
    status["hostIPs"] = [{"ip": node.host_ip}]
    if w.sandbox is not None and w.sandbox.ip:
        status["podIP"] = w.sandbox.ip
        status["podIPs"] = [{"ip": w.sandbox.ip}]
    if w.start_time is not None:
        status["startTime"] = rfc3339(w.start_time)
    inits = [w.records[c.name].to_api() for c in w.pod.spec.init_containers]
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = [w.records[c.name].to_api() for c in w.pod.spec.containers]
    status["qosClass"] = pod_qos(w.pod.spec).value
    return status
