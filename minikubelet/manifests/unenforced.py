"""Fields a Pod may set that minikubelet accepts but does not enforce, as one sentence per field set to something
that matters (not the defaults kubectl and the API write themselves: ``resources: {}``, ``dnsPolicy`` ...).

The API sends each as a ``Warning: 299`` header (kubectl prints ``Warning: ...``) and the pod manager records each
as a Warning event on the pod (reason ``FieldNotEnforced``), so an accepted field is never silently ignored."""

from __future__ import annotations

from typing import Any

NODE_FILESYSTEM = "minikubelet.io/node-filesystem"  # = pod/rootfs.py NODE_FILESYSTEM (manifests never import pod)
REASON = "FieldNotEnforced"
_NOTE = "is accepted but not enforced by this node (minikubelet)"

# container field -> (value that is enforced or harmless, why)
_CONTAINER: dict[str, str] = {
    "resizePolicy": "resources are not resized in place: a changed limit applies when the container restarts",
}
_CONTAINER_SECURITY: dict[str, str] = {
    "privileged": "containers run as root with the daemon's capabilities either way",
    "allowPrivilegeEscalation": "no_new_privs is not set yet",
    "capabilities": "capabilities are not added or dropped yet",
    "procMount": "/proc is the pod's own either way",
    "seccompProfile": "no seccomp filter is loaded",
    "seLinuxOptions": "no SELinux label is set",
    "appArmorProfile": "no AppArmor profile is loaded",
    "windowsOptions": "this is a Linux node",
}
_POD_SECURITY: dict[str, str] = {
    "fsGroup": "volumes are not chowned to it",
    "fsGroupChangePolicy": "volumes are not chowned",
    "supplementalGroups": "containers keep only their user's primary group",
    "supplementalGroupsPolicy": "containers keep only their user's primary group",
    "sysctls": "the pod's sysctls are not set",
    "seccompProfile": "no seccomp filter is loaded",
    "seLinuxOptions": "no SELinux label is set",
    "appArmorProfile": "no AppArmor profile is loaded",
    "windowsOptions": "this is a Linux node",
}
_SPEC: dict[str, str] = {
    "tolerations": "there are no taints on this node to tolerate",
    "priority": "there is no preemption on one node",
    "priorityClassName": "there is no preemption on one node",
    "preemptionPolicy": "there is no preemption on one node",
    "subdomain": "there is no cluster DNS",
    "topologySpreadConstraints": "there is no scheduler: the pod runs on this node",
    "overhead": "the pod overhead is not added to the pod's cgroup",
}
_METADATA: dict[str, str] = {
    "ownerReferences": "there is no garbage collector: the pod's file is its owner",
    "finalizers": "deleting a pod removes its file at once",
}


def _set(value: Any) -> bool:
    """Set to something that asks for behaviour: not absent, null, false, empty, or an empty resources block."""
    if isinstance(value, dict):
        return any(_set(v) for v in value.values())
    return value not in (None, False, "", [], {})


def _check(obj: Any, fields: dict[str, str], path: str, out: list[str]) -> None:
    if not isinstance(obj, dict):
        return
    for name, why in fields.items():
        value = obj.get(name)
        if name == "privileged" and value is True:
            continue  # asks for what a container here has anyway (root, the daemon's capabilities)
        if name == "allowPrivilegeEscalation" and value is True:
            continue  # asks for the default
        if _set(value) or (name == "allowPrivilegeEscalation" and value is False):
            out.append(f"{path}{name} {_NOTE}: {why}")


def unenforced(manifest: dict[str, Any]) -> list[str]:
    """One sentence per accepted-but-not-enforced field that the (validated) Pod manifest sets, by field path."""
    out: list[str] = []
    _check(manifest.get("metadata"), _METADATA, "metadata.", out)
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return out
    meta = manifest.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    node_fs = isinstance(annotations, dict) and str(annotations.get(NODE_FILESYSTEM, "")).lower() == "true"
    _check(spec, _SPEC, "spec.", out)
    if node_fs and spec.get("volumes"):
        out.append(f"spec.volumes {_NOTE}: the pod runs on the node's filesystem ({NODE_FILESYSTEM}), where "
                   "volumeMounts are not mounted; remove the annotation to run the image with its volumes")
    _check(spec.get("securityContext"), _POD_SECURITY, "spec.securityContext.", out)
    for group in ("initContainers", "containers"):
        containers = spec.get(group)
        for i, c in enumerate(containers if isinstance(containers, list) else []):
            if not isinstance(c, dict):
                continue
            where = f"spec.{group}[{i}]."
            _check(c, _CONTAINER, where, out)
            sc = c.get("securityContext")
            _check(sc, _CONTAINER_SECURITY, where + "securityContext.", out)
            if node_fs and isinstance(sc, dict) and sc.get("readOnlyRootFilesystem"):
                out.append(f"{where}securityContext.readOnlyRootFilesystem {_NOTE}: the pod runs on the node's "
                           f"filesystem ({NODE_FILESYSTEM}), whose root stays writable")
    return out


def warning_header(text: str) -> str:
    """A Warning header as the API server writes it (RFC 7234 code 299); kubectl prints ``Warning: <text>``."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
