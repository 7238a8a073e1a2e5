"""The allowed-field schema of a v1 Pod as minikubelet reads it, and the strict type checker over it.

A schema is a kind string (``string``, ``integer``, ``boolean``, ``int-or-string``, ``string-map``,
``string-list``, ``any``), a ``dict`` of field name to schema (an object), a one-element ``list`` (a list of that
schema), or ``Rejected(reason)`` (a real Pod field minikubelet refuses when it is set to something non-empty).
Fields marked *ignored* below are accepted and echoed back but do not change how the pod runs; ``any`` fields are
kept as they are (timestamps turned into RFC 3339 strings). A ``null`` value means "absent" for every field, as in
the API server's JSON decoding. Unknown fields are errors in strict mode (kubectl's ``fieldValidation=Strict``) and
dropped otherwise.
"""

from __future__ import annotations

import base64
import datetime
import difflib
from typing import Any, NamedTuple, TypeAlias

from minikubelet.manifests.validation import fmt_value, forbidden, invalid
from minikubelet.manifests.volumes import UNSUPPORTED_VOLUME_SOURCES


class Rejected(NamedTuple):
    reason: str


Schema: TypeAlias = "str | Rejected | dict[str, Schema] | list[Schema]"

STR, INT, BOOL, INT_OR_STR, STR_MAP, STR_LIST, ANY = (
    "string",
    "integer",
    "boolean",
    "int-or-string",
    "string-map",
    "string-list",
    "any",
)

_API_REFS = "minikubelet pods may not reference API objects (the kubelet refuses this for static pods too)"
_UNSUPPORTED = "is not supported by minikubelet yet"

VOLUME: dict[str, Schema] = {
    "name": STR,
    "emptyDir": {"medium": STR, "sizeLimit": INT_OR_STR},
    "hostPath": {"path": STR, "type": STR},
    **{source: ANY for source in UNSUPPORTED_VOLUME_SOURCES},  # refused by manifests.volumes, naming the field
}

VOLUME_MOUNT: dict[str, Schema] = {
    "name": STR,
    "mountPath": STR,
    "subPath": STR,
    "readOnly": BOOL,
    "mountPropagation": STR,  # None only (manifests.volumes)
    "subPathExpr": Rejected("subPathExpr " + _UNSUPPORTED + "; use subPath"),
    "recursiveReadOnly": Rejected("recursiveReadOnly " + _UNSUPPORTED + "; use readOnly"),
}

HTTP_GET: dict[str, Schema] = {
    "path": STR,
    "port": INT_OR_STR,
    "host": STR,
    "scheme": STR,
    "httpHeaders": [{"name": STR, "value": STR}],
}

PROBE: dict[str, Schema] = {
    "exec": {"command": STR_LIST},
    "httpGet": HTTP_GET,
    "tcpSocket": {"port": INT_OR_STR, "host": STR},
    "grpc": Rejected("grpc probes are not supported by minikubelet yet; use httpGet, tcpSocket or exec"),
    "initialDelaySeconds": INT,
    "periodSeconds": INT,
    "timeoutSeconds": INT,
    "successThreshold": INT,
    "failureThreshold": INT,
    "terminationGracePeriodSeconds": INT,
}

CONTAINER_SECURITY_CONTEXT: dict[str, Schema] = {
    "runAsUser": INT,
    "runAsGroup": INT,
    "runAsNonRoot": BOOL,
    "privileged": BOOL,  # recorded, not yet enforced
    "allowPrivilegeEscalation": BOOL,  # recorded, not yet enforced
    "readOnlyRootFilesystem": BOOL,  # recorded, not yet enforced
    "capabilities": {"add": STR_LIST, "drop": STR_LIST},  # recorded, not yet enforced
    "procMount": STR,  # ignored
    "seccompProfile": ANY,  # ignored
    "seLinuxOptions": ANY,  # ignored
    "appArmorProfile": ANY,  # ignored
    "windowsOptions": ANY,  # ignored
}

ENV_VAR: dict[str, Schema] = {
    "name": STR,
    "value": STR,
    "valueFrom": {
        "fieldRef": {"fieldPath": STR, "apiVersion": STR},
        "resourceFieldRef": Rejected("resourceFieldRef " + _UNSUPPORTED + "; use fieldRef"),
        "configMapKeyRef": Rejected(_API_REFS),
        "secretKeyRef": Rejected(_API_REFS),
        "fileKeyRef": Rejected("fileKeyRef " + _UNSUPPORTED + "; use fieldRef"),
    },
}

CONTAINER: dict[str, Schema] = {
    "name": STR,
    "image": STR,
    "imagePullPolicy": STR,  # defaulted, ignored until images are pulled
    "command": STR_LIST,
    "args": STR_LIST,
    "env": [ENV_VAR],
    "workingDir": STR,
    "ports": [{"containerPort": INT, "name": STR, "protocol": STR, "hostPort": INT, "hostIP": STR}],
    "securityContext": CONTAINER_SECURITY_CONTEXT,
    "livenessProbe": PROBE,
    "readinessProbe": PROBE,
    "startupProbe": PROBE,
    "resources": ANY,  # ignored
    "resizePolicy": ANY,  # ignored
    "terminationMessagePath": STR,  # defaulted, ignored
    "terminationMessagePolicy": STR,  # defaulted, ignored
    "stdin": BOOL,  # ignored
    "stdinOnce": BOOL,  # ignored
    "tty": BOOL,  # ignored
    "envFrom": Rejected(_API_REFS),
    "volumeMounts": [VOLUME_MOUNT],
    "volumeDevices": Rejected("volumeDevices (raw block devices) " + _UNSUPPORTED + "; use volumeMounts"),
    "lifecycle": Rejected("lifecycle hooks are " + _UNSUPPORTED[3:]),
    "restartPolicy": Rejected("container restartPolicy (sidecar containers) " + _UNSUPPORTED),
}

POD_SECURITY_CONTEXT: dict[str, Schema] = {
    "runAsUser": INT,  # default for every container
    "runAsGroup": INT,  # default for every container
    "runAsNonRoot": BOOL,  # default for every container
    "fsGroup": INT,  # ignored
    "fsGroupChangePolicy": STR,  # ignored
    "supplementalGroups": [INT],  # ignored
    "supplementalGroupsPolicy": STR,  # ignored
    "sysctls": ANY,  # ignored
    "seccompProfile": ANY,  # ignored
    "seLinuxOptions": ANY,  # ignored
    "appArmorProfile": ANY,  # ignored
    "windowsOptions": ANY,  # ignored
}

TOLERATION: dict[str, Schema] = {"key": STR, "operator": STR, "value": STR, "effect": STR, "tolerationSeconds": INT}

POD_SPEC: dict[str, Schema] = {
    "containers": [CONTAINER],
    "initContainers": [CONTAINER],
    "restartPolicy": STR,
    "terminationGracePeriodSeconds": INT,
    "activeDeadlineSeconds": INT,
    "nodeSelector": STR_MAP,
    "hostname": STR,
    "nodeName": STR,  # overwritten with this node's name
    "dnsPolicy": STR,  # defaulted, ignored
    "schedulerName": STR,  # defaulted, ignored
    "securityContext": POD_SECURITY_CONTEXT,
    "tolerations": [TOLERATION],  # ignored
    "priority": INT,  # ignored
    "priorityClassName": STR,  # ignored
    "preemptionPolicy": STR,  # ignored
    "enableServiceLinks": BOOL,  # defaulted, ignored
    "automountServiceAccountToken": BOOL,  # ignored
    "shareProcessNamespace": BOOL,  # must be true or absent
    "subdomain": STR,  # ignored
    "affinity": Rejected("affinity " + _UNSUPPORTED + "; use nodeSelector"),
    "serviceAccountName": Rejected(_API_REFS + "; remove serviceAccountName"),
    "serviceAccount": Rejected(_API_REFS + "; remove serviceAccount"),
    "imagePullSecrets": Rejected(_API_REFS),
    "volumes": [VOLUME],
    "ephemeralContainers": Rejected("ephemeral containers are " + _UNSUPPORTED[3:]),
    "hostNetwork": Rejected("hostNetwork " + _UNSUPPORTED),
    "hostPID": Rejected("hostPID " + _UNSUPPORTED),
    "hostIPC": Rejected("hostIPC " + _UNSUPPORTED),
    "hostAliases": Rejected("hostAliases " + _UNSUPPORTED),
    "dnsConfig": Rejected("dnsConfig " + _UNSUPPORTED),
    "runtimeClassName": Rejected("runtimeClassName " + _UNSUPPORTED),
    "readinessGates": Rejected("readinessGates " + _UNSUPPORTED),
    "topologySpreadConstraints": ANY,  # ignored (scheduler only)
    "os": ANY,  # ignored
    "overhead": ANY,  # ignored
}

METADATA: dict[str, Schema] = {
    "name": STR,
    "namespace": STR,
    "labels": STR_MAP,
    "annotations": STR_MAP,
    "uid": STR,  # replaces the computed uid
    "generateName": Rejected("generateName is not supported in manifest files; set metadata.name"),
    "creationTimestamp": ANY,  # ignored
    "resourceVersion": STR,  # ignored
    "generation": INT,  # ignored
    "selfLink": STR,  # ignored
    "ownerReferences": ANY,  # ignored
    "finalizers": STR_LIST,  # ignored
    "managedFields": ANY,  # ignored
}

POD: dict[str, Schema] = {"apiVersion": STR, "kind": STR, "metadata": METADATA, "spec": POD_SPEC, "status": ANY}

_EMPTY: tuple[Any, ...] = ("", False, 0)


def _is_empty(value: Any) -> bool:
    return value is None or value in _EMPTY or value == [] or value == {}


class TypeChecker:
    """Checks a decoded document against a schema, collecting one error per bad field, and returns a clean copy."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.problems: list[str] = []
        self.bad_paths: set[str] = set()

    def check(self, value: Any, schema: Schema, path: str) -> Any:
        """Return ``value`` (copied, unknown and ill-typed fields removed) or ``None`` if it is unusable."""
        if isinstance(schema, dict):
            return self._object(value, schema, path)
        if isinstance(schema, list):
            return self._list(value, schema[0], path)
        if isinstance(schema, Rejected):
            return value
        return self._scalar(value, schema, path)

    def _fail(self, path: str, value: Any, expected: str) -> None:
        hint = ""
        if isinstance(value, bool | int | float) and expected in ("a string", "an integer or a string"):
            hint = f' (quote it in YAML: "{fmt_value(value)}")'
        self.problems.append(invalid(path, value, f"must be {expected}") + hint)
        self.bad_paths.add(path)

    def _object(self, value: Any, schema: dict[str, Schema], path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self._fail(path, _type_name(value), "an object")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            field = schema.get(key) if isinstance(key, str) else None
            if field is None:
                self._unknown(key, schema, sub)
            elif isinstance(field, Rejected) and not _is_empty(item):
                self.problems.append(forbidden(sub, field.reason))
                out[key] = item
            elif item is not None:
                checked = self.check(item, field, sub)
                if checked is not None:
                    out[key] = checked
        return out

    def _unknown(self, key: object, schema: dict[str, Schema], path: str) -> None:
        if not self.strict:
            return
        name = str(key)
        by_case = [k for k in schema if k.lower() == name.lower()]
        close = by_case or difflib.get_close_matches(name, list(schema), n=1, cutoff=0.6)
        home = field_homes().get(name)
        if close:
            hint = f' (did you mean "{close[0]}"?)'
        elif home:
            hint = f" ({name} belongs in {home}: check the indentation)"
        else:
            hint = ""
        self.problems.append(f'{path}: unknown field "{name}"{hint}')
        self.bad_paths.add(path)

    def _list(self, value: Any, item_schema: Schema, path: str) -> list[Any] | None:
        if not isinstance(value, list):
            self._fail(path, _type_name(value), "a list")
            return None
        out = []
        for i, item in enumerate(value):
            if item is None:
                self._fail(f"{path}[{i}]", None, "a list item, not null")
                continue
            checked = self.check(item, item_schema, f"{path}[{i}]")
            if checked is not None:
                out.append(checked)
        return out

    def _scalar(self, value: Any, kind: str, path: str) -> Any:
        if kind == ANY:
            return to_json_value(value)
        if kind == STR_MAP:
            return self._string_map(value, path)
        if kind == STR_LIST:
            return self._list(value, STR, path)
        ok, expected = _SCALAR_TESTS[kind]
        if ok(value):
            return value
        self._fail(path, value, expected)
        return None

    def _string_map(self, value: Any, path: str) -> dict[str, str] | None:
        if not isinstance(value, dict):
            self._fail(path, _type_name(value), "a map of string keys to string values")
            return None
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self._fail(path, key, "a map with string keys")
            elif not isinstance(item, str):
                self._fail(f"{path}[{key}]", item, "a string")
            else:
                out[key] = item
        return out


_HOMES: dict[str, str] = {}


def field_homes() -> dict[str, str]:
    """Field name → the shallowest path where the Pod schema has it (for "check the indentation" hints)."""
    if not _HOMES:
        queue: list[tuple[str, Schema]] = [("", POD)]
        while queue:
            path, schema = queue.pop(0)
            if isinstance(schema, list):
                queue.append((path + "[]", schema[0]))
            elif isinstance(schema, dict):
                for name, sub in schema.items():
                    full = f"{path}.{name}" if path else name
                    _HOMES.setdefault(name, full)
                    queue.append((full, sub))
    return _HOMES


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SCALAR_TESTS: dict[str, tuple[Any, str]] = {
    STR: (lambda v: isinstance(v, str), "a string"),
    INT: (_is_int, "an integer"),
    BOOL: (lambda v: isinstance(v, bool), "a boolean (true or false)"),
    INT_OR_STR: (lambda v: _is_int(v) or isinstance(v, str), "an integer or a string"),
}


def _type_name(value: Any) -> Any:
    """What to show for a value of the wrong container type: scalars as they are, containers by kind."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return value


def to_json_value(value: Any) -> Any:
    """A JSON-serialisable copy of a YAML-decoded value: timestamps become RFC 3339 strings, keys strings."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set):
        return sorted(str(v) for v in value)
    return value
