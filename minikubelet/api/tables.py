"""``meta.k8s.io/v1`` Tables for kubectl get (contract §5): columns, cells computed as the real printers do, ages.

Everything here works on API dicts (a Pod from ``PodWorker.to_api()``, the Node, Events), so it is pure and testable.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _col(name: str, priority: int = 0, fmt: str = "", type_: str = "string") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": "", "priority": priority}


POD_COLUMNS = [
    _col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts"), _col("Age"),
    _col("IP", 1), _col("Node", 1), _col("Nominated Node", 1), _col("Readiness Gates", 1),
]
NODE_COLUMNS = [
    _col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
    _col("Internal-IP", 1), _col("External-IP", 1), _col("OS-Image", 1), _col("Kernel-Version", 1),
    _col("Container-Runtime", 1),
]
EVENT_COLUMNS = [
    _col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Subobject", 1), _col("Source", 1),
    _col("Message"), _col("First Seen", 1), _col("Count", 1), _col("Name", 1, fmt="name"),
]


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None, now: float) -> str:
    """translateTimestampSince: '<unknown>' for a missing time."""
    ts = parse_time(timestamp)
    return "<unknown>" if ts is None else human_duration(now - ts)


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "labels",
            "annotations")
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {k: meta[k] for k in keep if k in meta}}


def table(columns: list[dict[str, Any]], rows: list[dict[str, Any]], resource_version: int) -> dict[str, Any]:
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(resource_version)},
            "columnDefinitions": columns, "rows": rows}


# ----- pods ----------------------------------------------------------------------------------------------------------


def _terminated_reason(term: dict[str, Any], prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def pod_status_cells(pod: dict[str, Any], now: float) -> tuple[str, str, str]:
    """(READY, STATUS, RESTARTS) as kubectl's printPod computes them."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    last_restart: float | None = None
    reason = status.get("reason") or status.get("phase") or ""

    def note_restart(cs: dict[str, Any]) -> None:
        nonlocal last_restart
        finished = parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished

    inits = status.get("initContainerStatuses") or []
    initializing = False
    for i, cs in enumerate(inits):
        restarts += int(cs.get("restartCount") or 0)
        note_restart(cs)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode") == 0:
            continue
        if term is not None:
            reason = _terminated_reason(term, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or inits)}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts, last_restart = 0, None
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            note_restart(cs)
            state = cs.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif term is not None:
                reason = _terminated_reason(term)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in status.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    return f"{ready}/{total}", reason, restarts_cell


def pod_row(pod: dict[str, Any], now: float) -> dict[str, Any]:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ready, reason, restarts = pod_status_cells(pod, now)
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        gates_cell = f"{sum(conds.get(g.get('conditionType')) == 'True' for g in gates)}/{len(gates)}"
    cells = [meta.get("name", ""), ready, reason, restarts, since(meta.get("creationTimestamp"), now),
             status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
             status.get("nominatedNodeName") or "<none>", gates_cell]
    return {"cells": cells, "object": partial_metadata(pod)}


# ----- nodes ---------------------------------------------------------------------------------------------------------


def node_row(node: dict[str, Any], now: float) -> dict[str, Any]:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready is not None and ready.get("status") == "True" else "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix):] for k in meta.get("labels") or {} if k.startswith(prefix) and k[len(prefix):])
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    info = status.get("nodeInfo") or {}
    cells = [meta.get("name", ""), state, ",".join(roles) or "<none>", since(meta.get("creationTimestamp"), now),
             info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"), info.get("osImage", ""),
             info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]
    return {"cells": cells, "object": partial_metadata(node)}


# ----- events --------------------------------------------------------------------------------------------------------


def event_row(event: dict[str, Any], now: float) -> dict[str, Any]:
    first = since(event.get("firstTimestamp"), now)
    last = since(event.get("lastTimestamp"), now) if event.get("lastTimestamp") else first
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    src = source.get("component", "")
    if source.get("host"):
        src = f"{src}, {source['host']}"
    cells = [last, event.get("type", ""), event.get("reason", ""), target, involved.get("fieldPath", ""), src,
             str(event.get("message", "")).strip(), first, str(event.get("count") or 1),
             (event.get("metadata") or {}).get("name", "")]
    return {"cells": cells, "object": partial_metadata(event)}
