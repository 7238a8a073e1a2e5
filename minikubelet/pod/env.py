"""A container's environment and argv as the kubelet builds them (pure): fieldRef values and $(VAR) expansion."""

from __future__ import annotations

import re

from minikubelet.pod.spec import Container, Pod

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, unknown ones kept verbatim, $$ escapes a $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(sub, text)


def field_value(pod: Pod, path: str, pod_ip: str, node_name: str, host_ip: str) -> str:
    values = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": node_name,
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
        "spec.serviceAccountName": "",
    }
    if path in values:
        return values[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        source = pod.labels if m.group(1) == "labels" else pod.annotations
        return source.get(m.group(2), "")
    return ""


def build_env(
    pod: Pod, container: Container, pod_ip: str, node_name: str, host_ip: str, defaults: bool = True
) -> dict[str, str]:
    """The container's ``env`` resolved; with ``defaults`` over PATH and HOSTNAME (a node-filesystem container's
    whole environment), without them only its own entries (merged over an image's Env by pod/process.py)."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": pod.hostname} if defaults else {}
    for var in container.env:
        if var.field_path is not None:
            env[var.name] = field_value(pod, var.field_path, pod_ip, node_name, host_ip)
        else:
            env[var.name] = expand(var.value, env)
    return env


def build_argv(container: Container, env: dict[str, str]) -> list[str]:
    return [expand(a, env) for a in (*container.command, *container.args)]
