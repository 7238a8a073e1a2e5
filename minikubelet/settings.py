"""Validated daemon settings (the CLI maps flags to this; nothing else reads argv)."""

from __future__ import annotations

import ipaddress
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    manifests: Path = Path("/etc/minikubelet/manifests")
    data_dir: Path = Path("/var/lib/minikubelet")
    run_dir: Path = Path("/run/minikubelet")
    log_dir: Path = Path("/var/log/pods")
    node_name: str = ""
    bridge: str = "mk0"
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    listen_host: str = "127.0.0.1"
    listen_port: int = 10250
    rescan_interval: float = 20.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    given: frozenset[str] = frozenset()  # the flags of --bridge/--pod-cidr given on the command line
    kubeconfig_mode: int = 0o600  # --write-kubeconfig-mode (as k3s)
    kubeconfig_group: int | None = None  # --write-kubeconfig-group, as a gid (None: root's group)
    cgroup_root: str = "/minikubelet"  # pods' cgroups: <cgroup-root>/kubepods/... on every hierarchy
    pod_pids_limit: int = -1  # pids.max of every pod cgroup (the kubelet's podPidsLimit); -1: unlimited
    system_reserved: str = ""  # --system-reserved cpu=500m,memory=1Gi: taken off the node's allocatable
    kube_reserved: str = ""  # --kube-reserved, the same
    max_pods: int = 110  # --max-pods, the kubelet's default

    # images (issue 10): registries.yaml (optional), no fallback to the registry itself, image GC thresholds (%)
    registries: Path = Path("/etc/minikubelet/registries.yaml")
    disable_default_registry_endpoint: bool = False
    image_gc_high_threshold: int = 85
    image_gc_low_threshold: int = 80

    @property
    def node(self) -> str:
        return (self.node_name or socket.gethostname()).lower()

    def directory_flags(self) -> list[str]:
        """The directory flags that differ from their defaults, to repeat in a command a message suggests."""
        d = Settings()
        out: list[str] = []
        for flag, value, default in (
            ("--manifests", self.manifests, d.manifests), ("--data-dir", self.data_dir, d.data_dir),
            ("--run-dir", self.run_dir, d.run_dir), ("--log-dir", self.log_dir, d.log_dir),
            ("--cgroup-root", self.cgroup_root, d.cgroup_root),
        ):
            if value != default:
                out += [flag, shlex.quote(str(value))]
        return out

    def reset_command(self) -> str:
        """``minikubelet reset`` with this daemon's directories: all it needs to undo what the daemon created."""
        return " ".join(["minikubelet", "reset", *self.directory_flags()])


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) → (host, port); raises ValueError with a clear message."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:10250")
    host = host.strip("[]") or "127.0.0.1"
    ipaddress.ip_address(host)
    return host, int(port)
