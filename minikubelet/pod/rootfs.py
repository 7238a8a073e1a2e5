"""What a container on an image needs on the host before its helper mounts it: directories, files, the request.

The kubelet writes ``/etc/hosts`` (``managedHostsFileContent``), the runtime ``/etc/hostname`` and
``/etc/resolv.conf``; they live in the pod's run dir and are bind-mounted into every container. The overlay's
upper, work and mount-point directories are per container *instance* under ``<data-dir>/pods/<uid>/containers/``:
a restarted container gets a fresh writable layer, as with containerd. The mount plan itself runs in the helper
(nsexec/rootfs.py); this module only prepares and describes it.

A pod annotated ``minikubelet.io/node-filesystem: "true"`` runs its containers on the node's own filesystem
instead (programs of the node, no image): the one switch for it. Imports pod.spec and pod.volumes only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from minikubelet.pod.spec import Container, Pod
from minikubelet.pod.volumes import data_pod_dir

NODE_FILESYSTEM = "minikubelet.io/node-filesystem"
HOST_RESOLV = Path("/etc/resolv.conf")
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")  # the kubelet's choice behind a 127.0.0.53 stub


def uses_node_filesystem(pod: Pod) -> bool:
    return pod.annotations.get(NODE_FILESYSTEM, "").lower() == "true"


def hosts_file(pod: Pod, ip: str) -> str:
    """/etc/hosts as the kubelet writes it for a pod that is not hostNetwork (tabs, one line for the pod IP)."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    if ip:
        lines.append(f"{ip}\t{pod.hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf() -> str:
    """The node's resolver configuration (dnsPolicy Default; ClusterFirst falls back to it: there is no cluster
    DNS). Behind systemd-resolved's loopback stub, which a pod cannot reach, its upstream file, as the kubelet."""
    try:
        text = HOST_RESOLV.read_text()
    except OSError:
        return ""
    stub = any(line.split()[1:2] and line.split()[1].startswith("127.") for line in text.splitlines()
               if line.startswith("nameserver"))
    if stub and RESOLVED_UPSTREAM.exists():
        try:
            return RESOLVED_UPSTREAM.read_text()
        except OSError:
            pass
    return text


def write_pod_files(run_pod_dir: Path, pod: Pod, ip: str) -> dict[str, Path]:
    """``etc-hosts``, ``hostname`` and ``resolv.conf`` in the pod's run dir (rewritten per start: the IP may move
    with a recreated sandbox). Returns container path -> host file."""
    files = {
        "/etc/hosts": (run_pod_dir / "etc-hosts", hosts_file(pod, ip)),
        "/etc/hostname": (run_pod_dir / "hostname", pod.hostname + "\n"),
        "/etc/resolv.conf": (run_pod_dir / "resolv.conf", resolv_conf()),
    }
    out: dict[str, Path] = {}
    for target, (path, text) in files.items():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        out[target] = path
    return out


def instance_dirs(data_dir: Path, uid: str, container: str, instance: int) -> dict[str, Path]:
    """Fresh upper, work and merged directories for one container instance; older instances' are removed."""
    base = data_pod_dir(data_dir, uid) / "containers"
    name = f"{container}.{instance}"
    if base.is_dir():
        for old in base.iterdir():
            if old.name.rpartition(".")[0] == container and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    top = base / name
    shutil.rmtree(top, ignore_errors=True)
    dirs = {part: top / part for part in ("upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir(parents=True, mode=0o755)
    return dirs


def rootfs_request(
    pod: Pod,
    container: Container,
    lowerdirs: tuple[Path, ...],
    dirs: dict[str, Path],
    files: dict[str, Path],
    volume_binds: list[dict[str, Any]],
    shm: Path | None,
    image_user: str,
) -> dict[str, Any]:
    """The ``rootfs`` key of the helper's spawn request (see nsexec/rootfs.py)."""
    binds: list[dict[str, Any]] = [
        {"source": str(path), "target": target, "readonly": container.read_only_root_filesystem}
        for target, path in files.items()
    ]
    binds += volume_binds
    return {
        "lowerdirs": [str(p) for p in lowerdirs],
        "upper": str(dirs["upper"]),
        "work": str(dirs["work"]),
        "merged": str(dirs["merged"]),
        "readonly": container.read_only_root_filesystem,
        "shm": str(shm) if shm is not None else "",
        "binds": binds,
        "image_user": image_user,
        "run_as_non_root": bool(container.run_as_non_root),
        "pod_id": f"{pod.name}_{pod.namespace}({pod.uid})",
        "container": container.name,
    }
