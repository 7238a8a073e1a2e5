"""``spec.volumes`` and ``volumeMounts``: the API server's defaulting and validation (k/k ``pkg/apis/core/v1/
defaults.go`` ``SetDefaults_Volume``, ``pkg/apis/core/validation/validation.go`` ``ValidateVolumes``,
``ValidateVolumeMounts``), with every error in ``validation.py``'s ``field.Error`` format.

This node supports two sources, ``emptyDir`` (``medium`` "" or ``Memory``, ``sizeLimit``) and ``hostPath`` (an
absolute ``path``, the API's ``type`` values); every other source is refused naming its field. Where minikubelet is
stricter than the API server, the message says why: ``mountPropagation`` other than ``None`` (volumes are mounted
private to the container), a relative ``hostPath.path`` or ``mountPath``, ``..`` in a ``mountPath``, media other
than "" and Memory. Deliberate difference: a ``subPath`` error is reported at ``volumeMounts[j].subPath`` (the API
server reports it at ``volumeMounts.subPath``, without the index).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from minikubelet.cgroups.resources import QUANTITY_REGEX, parse_quantity
from minikubelet.manifests.validation import (
    duplicate,
    forbidden,
    invalid,
    not_found,
    required,
    unsupported,
    validate_dns1123_label,
    validate_one_of,
)

VOLUME_SOURCES = ("emptyDir", "hostPath")  # supported, in the API server's checking order
UNSUPPORTED_VOLUME_SOURCES = (  # every other v1 VolumeSource field
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi", "downwardAPI",
    "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "image", "iscsi", "nfs",
    "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd", "scaleIO",
    "secret", "storageos", "vsphereVolume",
)
EMPTY_DIR_MEDIA = ("", "Memory")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket")
MOUNT_PROPAGATIONS = ("Bidirectional", "HostToContainer", "None")
UNSUPPORTED_SOURCE_MSG = "this node supports emptyDir and hostPath volumes only"
_PROPAGATION_MSG = (
    "this node mounts volumes private to the container: only None is supported (HostToContainer and Bidirectional "
    "need mount propagation from the host, which minikubelet does not set up)"
)


def default_volumes(spec: dict[str, Any]) -> None:
    """``SetDefaults_Volume``: a volume with no source is an emptyDir; ``hostPath.type`` defaults to "", in place."""
    for vol in spec.get("volumes") or []:
        if not any(vol.get(s) is not None for s in (*VOLUME_SOURCES, *UNSUPPORTED_VOLUME_SOURCES)):
            vol["emptyDir"] = {}
        if isinstance(vol.get("hostPath"), dict):
            vol["hostPath"].setdefault("type", "")


def validate_volumes_and_mounts(spec: Mapping[str, Any]) -> list[str]:
    """The volumes, then each container's mounts against the volumes that passed (as the API server does: a mount
    of a refused volume is also ``Not found``)."""
    names, errs = validate_volumes(spec.get("volumes") or [], "spec.volumes")
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or []):
            errs += validate_volume_mounts(c.get("volumeMounts") or [], f"spec.{field}[{i}].volumeMounts", names)
    return errs


def validate_volumes(volumes: Sequence[Mapping[str, Any]], path: str) -> tuple[set[str], list[str]]:
    """Names of the valid volumes, and the errors: DNS-label names, unique, exactly one supported source."""
    names: set[str] = set()
    errs: list[str] = []
    for i, vol in enumerate(volumes):
        p = f"{path}[{i}]"
        name = vol.get("name", "")
        found = _validate_source(vol, p) + validate_dns1123_label(name, f"{p}.name")
        if name in names:
            found.append(duplicate(f"{p}.name", name))
        if not found:
            names.add(name)
        errs += found
    return names, errs


def _validate_source(vol: Mapping[str, Any], path: str) -> list[str]:
    errs = [forbidden(f"{path}.{s}", UNSUPPORTED_SOURCE_MSG) for s in UNSUPPORTED_VOLUME_SOURCES
            if vol.get(s) is not None]
    given = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
    if not given and not errs:
        errs.append(required(path, "must specify a volume type"))
    errs += [forbidden(f"{path}.{s}", "may not specify more than 1 volume type") for s in given[1:]]
    if given[:1] == ["emptyDir"]:
        errs += _validate_empty_dir(vol["emptyDir"], f"{path}.emptyDir")
    elif given[:1] == ["hostPath"]:
        errs += _validate_host_path(vol["hostPath"], f"{path}.hostPath")
    return errs


def _validate_empty_dir(ed: Mapping[str, Any], path: str) -> list[str]:
    errs = validate_one_of(ed.get("medium"), f"{path}.medium", EMPTY_DIR_MEDIA)
    limit = ed.get("sizeLimit")
    if limit is None:
        return errs
    try:
        size = parse_quantity(limit)
    except ValueError:
        return errs + [invalid(f"{path}.sizeLimit", str(limit),
                               f"quantities must match the regular expression '{QUANTITY_REGEX}'")]
    if size < 0:
        errs.append(forbidden(f"{path}.sizeLimit", "SizeLimit field must be a valid resource quantity"))
    return errs


def _validate_host_path(hp: Mapping[str, Any], path: str) -> list[str]:
    where = hp.get("path", "")
    if not where:
        return [required(f"{path}.path")]
    errs = [] if where.startswith("/") else [invalid(f"{path}.path", where, "must be an absolute path")]
    errs += _no_backsteps(where, f"{path}.path")
    hp_type = hp.get("type")
    if hp_type is not None and hp_type not in HOST_PATH_TYPES:
        errs.append(unsupported(f"{path}.type", hp_type, HOST_PATH_TYPES))
    return errs


def validate_volume_mounts(mounts: Sequence[Mapping[str, Any]], path: str, volumes: set[str]) -> list[str]:
    """``ValidateVolumeMounts``: the name names a volume; mountPath absolute and unique; subPath relative without
    ``..``; mountPropagation None."""
    errs: list[str] = []
    seen: set[str] = set()
    for i, m in enumerate(mounts):
        p = f"{path}[{i}]"
        name = m.get("name", "")
        if not name:
            errs.append(required(f"{p}.name"))
        if name not in volumes:
            errs.append(not_found(f"{p}.name", name))
        target = m.get("mountPath", "")
        if not target:
            errs.append(required(f"{p}.mountPath"))
        elif not target.startswith("/"):
            errs.append(invalid(f"{p}.mountPath", target, "must be an absolute path"))
        else:
            errs += _no_backsteps(target, f"{p}.mountPath")
        if target and posixpath.normpath(target) in seen:
            errs.append(invalid(f"{p}.mountPath", target, "must be unique"))
        seen.add(posixpath.normpath(target) if target else "")
        sub = m.get("subPath")
        if sub:
            if sub.startswith("/"):
                errs.append(invalid(f"{p}.subPath", sub, "must be a relative path"))
            errs += _no_backsteps(sub, f"{p}.subPath")
        propagation = m.get("mountPropagation")
        if propagation is not None and propagation not in MOUNT_PROPAGATIONS:
            errs.append(unsupported(f"{p}.mountPropagation", propagation, MOUNT_PROPAGATIONS))
        elif propagation not in (None, "None"):
            errs.append(forbidden(f"{p}.mountPropagation", _PROPAGATION_MSG))
    return errs


def _no_backsteps(value: str, path: str) -> list[str]:
    """``validatePathNoBacksteps``: one error however many ``..`` parts."""
    return [invalid(path, value, "must not contain '..'")] if ".." in value.split("/") else []
