from __future__ import annotations

import time
from typing import Any

import pytest

from minikubelet.api.tables import (
    EVENT_COLUMNS,
    NODE_COLUMNS,
    POD_COLUMNS,
    event_row,
    human_duration,
    node_row,
    pod_row,
    pod_status_cells,
)
from minikubelet.timefmt import rfc3339

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60 * 5, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def cs(state: dict[str, Any], ready: bool = False, restarts: int = 0, last: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "c", "state": state, "ready": ready, "restartCount": restarts, "lastState": {}}
    if last is not None:
        out["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": rfc3339(last)}}
    return out


def pod(
    phase: str,
    statuses: list[dict[str, Any]],
    inits: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    init_specs: int = 0,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "default", "creationTimestamp": rfc3339(NOW - 30)}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW + 30)
    status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses, "conditions": []}
    if inits is not None:
        status["initContainerStatuses"] = inits
    spec = {"containers": [{"name": "c"}] * len(statuses), "initContainers": [{"name": "i"}] * init_specs}
    return {"metadata": meta, "spec": spec, "status": status}


RUNNING = {"running": {"startedAt": rfc3339(NOW - 10)}}


@pytest.mark.parametrize(
    ("obj", "cells"),
    [
        (pod("Running", [cs(RUNNING, True)]), ("1/1", "Running", "0")),
        (pod("Pending", [cs({"waiting": {"reason": "ContainerCreating"}})]), ("0/1", "ContainerCreating", "0")),
        (
            pod("Running", [cs({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=2, last=NOW - 5)]),
            ("0/1", "CrashLoopBackOff", "2 (5s ago)"),
        ),
        (pod("Succeeded", [cs({"terminated": {"exitCode": 0, "reason": "Completed"}})]), ("0/1", "Completed", "0")),
        (pod("Failed", [cs({"terminated": {"exitCode": 3}})]), ("0/1", "ExitCode:3", "0")),
        (pod("Running", [cs(RUNNING, True)], deleting=True), ("1/1", "Terminating", "0")),
        (
            pod("Pending", [cs({"waiting": {"reason": "PodInitializing"}})], [cs(RUNNING)], init_specs=1),
            ("0/1", "Init:0/1", "0"),
        ),
        (
            pod(
                "Pending",
                [cs({"waiting": {"reason": "PodInitializing"}})],
                [cs({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=1, last=NOW - 200)],
                init_specs=1,
            ),
            ("0/1", "Init:CrashLoopBackOff", "1 (3m20s ago)"),
        ),
        (
            pod(
                "Pending",
                [cs({"waiting": {"reason": "PodInitializing"}})],
                [cs({"terminated": {"exitCode": 2, "reason": "Error"}})],
                init_specs=1,
            ),
            ("0/1", "Init:Error", "0"),
        ),
        (pod("Pending", []), ("0/0", "Pending", "0")),
    ],
)
def test_pod_status_cells(obj: dict[str, Any], cells: tuple[str, str, str]) -> None:
    assert pod_status_cells(obj, NOW) == cells


def test_pod_row_shape() -> None:
    obj = pod("Running", [cs(RUNNING, True)])
    obj["metadata"].update(uid="u", resourceVersion="7", labels={"app": "db"})
    obj["status"]["podIP"] = "10.0.0.2"
    obj["spec"]["nodeName"] = "node1"
    row = pod_row(obj, NOW)
    assert row["cells"] == ["p", "1/1", "Running", "0", "30s", "10.0.0.2", "node1", "<none>", "<none>"]
    assert len(row["cells"]) == len(POD_COLUMNS)
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["labels"] == {"app": "db"}
    assert POD_COLUMNS[0]["format"] == "name" and [c["priority"] for c in POD_COLUMNS] == [0] * 5 + [1] * 4


def test_node_and_event_rows() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "creationTimestamp": rfc3339(NOW - 7200),
            "labels": {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/edge": ""},
        },
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.2"}],
            "nodeInfo": {
                "kubeletVersion": "v1",
                "osImage": "Debian",
                "kernelVersion": "6",
                "containerRuntimeVersion": "minikubelet://0.1",
            },
        },
    }
    assert node_row(node, NOW)["cells"] == [
        "n1",
        "Ready",
        "edge,worker",
        "120m",
        "v1",
        "192.0.2.2",
        "<none>",
        "Debian",
        "6",
        "minikubelet://0.1",
    ]
    assert len(NODE_COLUMNS) == 10
    event = {
        "metadata": {"name": "p.1"},
        "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.x"},
        "reason": "Started",
        "message": " hi ",
        "type": "Normal",
        "count": 2,
        "firstTimestamp": rfc3339(NOW - 60),
        "lastTimestamp": rfc3339(NOW - 1),
        "source": {"component": "minikubelet", "host": "n1"},
    }
    assert event_row(event, NOW)["cells"] == [
        "1s",
        "Normal",
        "Started",
        "pod/p",
        "spec.x",
        "minikubelet, n1",
        "hi",
        "60s",
        "2",
        "p.1",
    ]
    assert [c["name"] for c in EVENT_COLUMNS][:7] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
    ]
    assert time.time() > 0
