"""This daemon's Node object: default and user labels (persisted), status, and nodeSelector admission.

User labels live in ``<data-dir>/node-labels.json`` (atomic writes) and survive restarts; the default labels
(kubernetes.io/hostname, os, arch and their beta twins) are always re-applied at start (kubelet-semantics §6).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import psutil

from minikubelet import __version__
from minikubelet.cgroups.admission import admit, allocatable
from minikubelet.cgroups.resources import milli, parse_quantity, whole
from minikubelet.fileio import write_atomic
from minikubelet.pod.spec import Pod
from minikubelet.timefmt import rfc3339

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.37.1-minikubelet"
MAX_PODS = 110  # the kubelet's --max-pods default; --max-pods changes it
REFUSED_ANNOTATION = "minikubelet.io/refused-manifests"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "armv6l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


def go_arch(machine: str | None = None) -> str:
    m = machine if machine is not None else platform.machine()
    return _ARCH.get(m, m.lower())


def os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def default_labels(node_name: str) -> dict[str, str]:
    arch = go_arch()
    return {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
            "kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux"}


class Node:
    """Owns the node's labels; ``admit`` is the WorkerContext admission function (nodeSelector)."""

    def __init__(self, name: str, data_dir: Path, host_ip: str, on_labels_changed: Callable[[], None] | None = None
                 ) -> None:
        self.name = name
        self.host_ip = host_ip
        self.path = data_dir / "node-labels.json"
        self.created_at = time.time()
        self.version = 0
        self.generation = 0  # bumps on every label change (cache key for pod status)
        self.on_labels_changed = on_labels_changed
        self.labels = default_labels(name)
        self.labels.update(self._load())
        self.refused: Callable[[], dict[str, str]] | None = None  # manifest file -> why it was refused
        self.images: Callable[[], list[dict[str, Any]]] | None = None  # status.images (ImageManager.node_images)
        self.reserved: list[dict[str, Fraction]] = []  # --system-reserved, --kube-reserved: off the allocatable
        self.max_pods = MAX_PODS
        self.data_dir = data_dir

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("Ignoring unreadable node labels file path=%s error=%s", self.path, e)
            return {}
        labels = data.get("labels") if isinstance(data, dict) else None
        if not isinstance(labels, dict):
            return {}
        return {str(k): str(v) for k, v in labels.items()}

    def set_labels(self, labels: dict[str, str], version: int) -> None:
        """Replace the labels (already validated), persist the user ones, and wake pods waiting for a match."""
        defaults = default_labels(self.name)
        user = {k: v for k, v in labels.items() if defaults.get(k) != v}
        write_atomic(self.path, json.dumps({"labels": user}, indent=2, sort_keys=True).encode() + b"\n", 0o644)
        old, self.labels = self.labels, dict(labels)
        self.version = version
        self.generation += 1
        log.info("Node labels changed node=%s added=%s removed=%s", self.name,
                 sorted(f"{k}={v}" for k, v in labels.items() if old.get(k) != v), sorted(old.keys() - labels.keys()))
        if self.on_labels_changed is not None:
            self.on_labels_changed()

    def admit(self, pod: Pod) -> tuple[bool, str, str]:
        """(ok, reason, message): does the pod's nodeSelector match this node's labels?"""
        missing = [f"{k}={v}" for k, v in pod.spec.node_selector if self.labels.get(k) != v]
        if not missing:
            return True, "", ""
        return False, "Unschedulable", (
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector "
            f"(missing {', '.join(missing)}).")

    def capacity(self) -> dict[str, str]:
        """cpu, memory, pods and ephemeral-storage (the data dir's filesystem) of this machine."""
        mem = psutil.virtual_memory().total // 1024
        try:
            st = os.statvfs(self.data_dir)
            storage = f"{st.f_blocks * st.f_frsize // 1024}Ki"
        except OSError:
            storage = "0"
        return {"cpu": str(os.cpu_count() or 1), "memory": f"{mem}Ki", "pods": str(self.max_pods),
                "ephemeral-storage": storage}

    def admit_resources(self, pod: Pod, others: list[Pod]) -> tuple[bool, str, str]:
        """The kubelet's resource admission against the allocatable and the admitted, unfinished ``others``."""
        alloc = allocatable({k: parse_quantity(v) for k, v in self.capacity().items()}, *self.reserved)
        return admit(pod, others, alloc)

    def _allocatable(self, capacity: dict[str, str]) -> dict[str, str]:
        if not any(self.reserved):
            return dict(capacity)
        alloc = allocatable({k: parse_quantity(v) for k, v in capacity.items()}, *self.reserved)
        out = dict(capacity)
        out["cpu"] = f"{milli(alloc['cpu'])}m"
        out["memory"] = f"{whole(alloc['memory']) // 1024}Ki"
        return out

    def to_api(self) -> dict[str, Any]:
        resources = self.capacity()
        uname = platform.uname()
        now = rfc3339(time.time())
        since = rfc3339(self.created_at)
        annotations = {"node.alpha.kubernetes.io/ttl": "0"}
        refused = sorted(self.refused()) if self.refused is not None else []
        if refused:  # kubectl describe node lists annotations: the refused files show there (events say why)
            annotations[REFUSED_ANNOTATION] = ", ".join(refused)
        return {
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": self.name, "uid": f"node-{self.name}", "resourceVersion": str(self.version),
                         "creationTimestamp": since, "labels": dict(sorted(self.labels.items())),
                         "annotations": annotations},
            "spec": {},
            "status": {
                "capacity": resources, "allocatable": self._allocatable(resources),
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now,
                                "lastTransitionTime": since, "reason": "KubeletReady",
                                "message": "minikubelet is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": self.host_ip},
                              {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": uname.release,
                             "osImage": os_image(), "containerRuntimeVersion": f"minikubelet://{__version__}",
                             "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                             "operatingSystem": "linux", "architecture": go_arch()},
                **({"images": self.images()} if self.images is not None else {}),
            },
        }
