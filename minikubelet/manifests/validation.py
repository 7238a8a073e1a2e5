"""Kubernetes validation rules as pure functions (apimachinery ``validation.go`` + k/k core ``validation.go``).

Every function returns a list of error strings in the API server's ``field.Error`` format, for example
``spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive``.
The pod-level functions (``validate_pod`` and below) take the *defaulted*, type-checked v1 Pod dict, as the API
server validates after defaulting; the label/annotation functions are reused by the API for ``kubectl label``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from minikubelet.images import reference

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
HTTP_HEADER_NAME_FMT = "[-A-Za-z0-9]+"
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024
MAX_INT32 = 2**31 - 1

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit"
)
_PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"

_DNS1123_LABEL_RE = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME_RE = re.compile(QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_FMT)
_ENV_VAR_NAME_RE = re.compile(ENV_VAR_NAME_FMT)
_HTTP_HEADER_NAME_RE = re.compile(HTTP_HEADER_NAME_FMT)
_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")

PROTOCOLS = ("SCTP", "TCP", "UDP")
RESTART_POLICIES = ("Always", "Never", "OnFailure")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("FallbackToLogsOnError", "File")
PROBE_SCHEMES = ("HTTP", "HTTPS")
ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "status.hostIP",
    "status.podIP",
)
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


# --- field.Error formatting ---------------------------------------------------------------------------------------


EXCERPT = 80  # characters of a refused value quoted in an error


def fmt_value(value: Any) -> str:
    """Render a value as Go's field.Error does: strings quoted, numbers and booleans bare.

    At most an 80-character excerpt: refused files are listed at /manifests/errors, in events and logs, and must
    never be echoed whole (a symlink to a root-only file would leak it; issue 9, point 4)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str) and len(value) > EXCERPT:
        value = value[: EXCERPT - 3] + "..."
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= EXCERPT + 2 else text[: EXCERPT - 1] + "..."


def invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {fmt_value(value)}: {detail}"


def required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def forbidden(path: str, detail: str) -> str:
    return f"{path}: Forbidden: {detail}"


def duplicate(path: str, value: Any) -> str:
    return f"{path}: Duplicate value: {fmt_value(value)}"


def not_found(path: str, value: Any) -> str:
    return f"{path}: Not found: {fmt_value(value)}"


def unsupported(path: str, value: Any, supported: Iterable[str]) -> str:
    return f"{path}: Unsupported value: {fmt_value(value)}: supported values: " + ", ".join(
        f'"{s}"' for s in sorted(supported)
    )


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery ``RegexError``: the message, examples and the regex used."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}'," for e in examples)
    return f"{msg} (e.g. {shown} regex used for validation is '{fmt}')"


# --- apimachinery string checks: each returns bare messages (no path) ------------------------------------------------


def is_dns1123_label(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _DNS1123_LABEL_RE.fullmatch(value):
        errs.append(regex_error(_DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append("name part " + regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_name(value: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 of ``[-a-z0-9]``, at least one letter, no leading/trailing/double hyphen."""
    errs = ["must be no more than 15 characters"] if len(value) > 15 else []
    if not _PORT_NAME_CHARSET_RE.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_env_var_name(value: str) -> list[str]:
    errs = []
    if not _ENV_VAR_NAME_RE.fullmatch(value):
        errs.append(regex_error(_ENV_VAR_NAME_MSG, ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


# --- field validators: each returns full "path: ..." errors ----------------------------------------------------------


def _each(path: str, value: Any, msgs: list[str]) -> list[str]:
    return [invalid(path, value, m) for m in msgs]


def validate_dns1123_label(value: str, path: str) -> list[str]:
    return _each(path, value, is_dns1123_label(value)) if value else [required(path)]


def validate_dns1123_subdomain(value: str, path: str) -> list[str]:
    return _each(path, value, is_dns1123_subdomain(value)) if value else [required(path)]


def validate_label_key(key: str, path: str) -> list[str]:
    return _each(path, key, is_qualified_name(key))


def validate_label_value(value: str, path: str) -> list[str]:
    return _each(path, value, is_valid_label_value(value))


def validate_labels(labels: Mapping[str, str], path: str) -> list[str]:
    errs: list[str] = []
    for key, value in labels.items():
        errs += validate_label_key(key, path) + validate_label_value(value, path)
    return errs


def validate_annotation_key(key: str, path: str) -> list[str]:
    return _each(path, key, is_qualified_name(key.lower()))


def validate_annotations(annotations: Mapping[str, str], path: str) -> list[str]:
    errs: list[str] = []
    for key in annotations:
        errs += validate_annotation_key(key, path)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(f"{path}: Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes")
    return errs


def validate_port_number(port: int, path: str) -> list[str]:
    return [] if 1 <= port <= 65535 else [invalid(path, port, _PORT_RANGE_MSG)]


def validate_port_name(name: str, path: str) -> list[str]:
    return _each(path, name, is_valid_port_name(name))


def validate_port_num_or_name(port: int | str | None, path: str) -> list[str]:
    if isinstance(port, int):
        return validate_port_number(port, path)
    if not port:
        return [required(path)]
    return validate_port_name(port, path)


def validate_env_var_name(name: str, path: str) -> list[str]:
    return _each(path, name, is_env_var_name(name)) if name else [required(path)]


def validate_nonnegative(value: int | None, path: str) -> list[str]:
    if value is None or value >= 0:
        return []
    return [invalid(path, value, "must be greater than or equal to 0")]


def validate_one_of(value: str | None, path: str, allowed: Iterable[str]) -> list[str]:
    allowed = tuple(allowed)
    if value is None or value in allowed:
        return []
    return [unsupported(path, value, allowed)]


# --- Pod (defaulted v1 dict) -----------------------------------------------------------------------------------------


def validate_pod(pod: Mapping[str, Any]) -> list[str]:
    """All checks on one defaulted, type-checked v1 Pod dict."""
    return validate_metadata(pod.get("metadata") or {}) + validate_pod_spec(pod.get("spec"))


def validate_metadata(meta: Mapping[str, Any]) -> list[str]:
    errs = validate_dns1123_subdomain(meta.get("name", ""), "metadata.name")
    errs += validate_dns1123_label(meta.get("namespace", ""), "metadata.namespace")
    errs += validate_log_dir_name(str(meta.get("name", "")), str(meta.get("namespace", "")))
    errs += validate_labels(meta.get("labels") or {}, "metadata.labels")
    errs += validate_annotations(meta.get("annotations") or {}, "metadata.annotations")
    return errs


MAX_FILE_NAME = 255  # bytes in one path component (NAME_MAX)
UID_LENGTH = 36  # a UUID as the API gives it; a file pod's MD5 hex UID is 32


def validate_log_dir_name(name: str, namespace: str) -> list[str]:
    """The pod's log directory ``<namespace>_<name>_<uid>`` is one path component: Kubernetes allows names up to
    253 characters and namespaces up to 63, which together may not fit in 255 bytes (ENAMETOOLONG on every start)."""
    room = MAX_FILE_NAME - UID_LENGTH - 2 - len(namespace.encode())
    if not name or len(name.encode()) <= room:
        return []
    return [invalid("metadata.name", name, f"must be no more than {room} characters in namespace \"{namespace}\": the "
                    f"log directory <namespace>_<name>_<uid> is one file name of at most {MAX_FILE_NAME} bytes")]


def validate_pod_spec(spec: Mapping[str, Any] | None) -> list[str]:
    if spec is None:
        return [required("spec")]
    errs = validate_one_of(spec.get("restartPolicy"), "spec.restartPolicy", RESTART_POLICIES)
    errs += validate_one_of(spec.get("dnsPolicy"), "spec.dnsPolicy", DNS_POLICIES)
    errs += validate_nonnegative(spec.get("terminationGracePeriodSeconds"), "spec.terminationGracePeriodSeconds")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        errs.append(invalid("spec.activeDeadlineSeconds", deadline, f"must be between 1 and {MAX_INT32}, inclusive"))
    if spec.get("hostname"):
        errs += validate_dns1123_label(spec["hostname"], "spec.hostname")
    errs += validate_labels(spec.get("nodeSelector") or {}, "spec.nodeSelector")
    if spec.get("shareProcessNamespace") is False:
        errs.append(invalid("spec.shareProcessNamespace", False, "minikubelet always shares the pod's PID namespace"))
    errs += validate_container_list(spec.get("initContainers") or [], "spec.initContainers", init=True)
    if not spec.get("containers"):
        errs.append(required("spec.containers"))
    errs += validate_container_list(spec.get("containers") or [], "spec.containers", init=False)
    errs += _duplicate_container_names(spec)
    return errs


def _duplicate_container_names(spec: Mapping[str, Any]) -> list[str]:
    seen: set[str] = set()
    errs: list[str] = []
    for field in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field) or []):
            name = container.get("name")
            if name and name in seen:
                errs.append(duplicate(f"spec.{field}[{i}].name", name))
            seen.add(name)
    return errs


def validate_image(image: str, path: str) -> list[str]:
    """A reference the runtime can pull (the kubelet's InvalidImageName, caught before any traffic)."""
    if image != image.strip():
        return [invalid(path, image, "must not have leading or trailing whitespace")]
    try:
        reference.parse(image)
    except reference.InvalidReference as e:
        return [invalid(path, image, f"{e} (write a reference such as nginx:1.14 or registry.example:5000/app:v1)")]
    return []


def validate_container_list(containers: Sequence[Mapping[str, Any]], path: str, *, init: bool) -> list[str]:
    errs: list[str] = []
    for i, container in enumerate(containers):
        errs += validate_container(container, f"{path}[{i}]", init=init)
    return errs


def validate_container(c: Mapping[str, Any], path: str, *, init: bool = False) -> list[str]:
    errs = validate_dns1123_label(c.get("name", ""), f"{path}.name")
    if not c.get("image", "").strip():
        errs.append(required(f"{path}.image"))
    else:
        errs += validate_image(c["image"], f"{path}.image")
    errs += validate_one_of(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", PULL_POLICIES)
    errs += validate_one_of(
        c.get("terminationMessagePolicy"), f"{path}.terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES
    )
    errs += validate_ports(c.get("ports") or [], f"{path}.ports")
    errs += validate_env(c.get("env") or [], f"{path}.env")
    errs += validate_security_context(c.get("securityContext") or {}, f"{path}.securityContext")
    for field in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.get(field) is None:
            continue
        if init:
            errs.append(forbidden(f"{path}.{field}", "may not be set for init containers"))
        else:
            errs += validate_probe(c[field], f"{path}.{field}", field)
    return errs


def validate_ports(ports: Sequence[Mapping[str, Any]], path: str) -> list[str]:
    errs: list[str] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        if port.get("containerPort") is None:
            errs.append(required(f"{p}.containerPort"))
        else:
            errs += validate_port_number(port["containerPort"], f"{p}.containerPort")
        if port.get("hostPort") is not None:
            errs += validate_port_number(port["hostPort"], f"{p}.hostPort")
        if port.get("name"):
            errs += validate_port_name(port["name"], f"{p}.name")
            if port["name"] in names:
                errs.append(duplicate(f"{p}.name", port["name"]))
            names.add(port["name"])
        errs += validate_one_of(port.get("protocol"), f"{p}.protocol", PROTOCOLS)
    return errs


def validate_env(env: Sequence[Mapping[str, Any]], path: str) -> list[str]:
    errs: list[str] = []
    for i, var in enumerate(env):
        p = f"{path}[{i}]"
        errs += validate_env_var_name(var.get("name", ""), f"{p}.name")
        source = var.get("valueFrom")
        if source is None:
            continue
        if var.get("value"):
            errs.append(invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty"))
        field_ref = source.get("fieldRef")
        if field_ref is None:
            errs.append(required(f"{p}.valueFrom", "must specify one of: `fieldRef`"))
            continue
        errs += _validate_field_ref(field_ref, f"{p}.valueFrom.fieldRef")
    return errs


def _validate_field_ref(ref: Mapping[str, Any], path: str) -> list[str]:
    errs = validate_one_of(ref.get("apiVersion"), f"{path}.apiVersion", ("v1",))
    field_path = ref.get("fieldPath")
    if not field_path:
        return errs + [required(f"{path}.fieldPath")]
    return errs + validate_one_of(field_path, f"{path}.fieldPath", ENV_FIELD_PATHS)


def validate_security_context(sc: Mapping[str, Any], path: str) -> list[str]:
    errs: list[str] = []
    for field in ("runAsUser", "runAsGroup"):
        value = sc.get(field)
        if value is not None and not 0 <= value <= MAX_INT32:
            errs.append(invalid(f"{path}.{field}", value, f"must be between 0 and {MAX_INT32}, inclusive"))
    return errs


def validate_probe(probe: Mapping[str, Any], path: str, kind: str) -> list[str]:
    """§2.1: non-negative numbers, thresholds, exactly one handler, handler details."""
    errs: list[str] = []
    for field in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += validate_nonnegative(probe.get(field), f"{path}.{field}")
    success = probe.get("successThreshold")
    if kind != "readinessProbe" and success not in (None, 1) and success >= 0:
        errs.append(invalid(f"{path}.successThreshold", success, "must be 1"))
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None and kind == "readinessProbe":
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes"))
    elif grace is not None and grace <= 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
    return errs + _validate_probe_handler(probe, path)


def _validate_probe_handler(probe: Mapping[str, Any], path: str) -> list[str]:
    handlers = [h for h in PROBE_HANDLERS if probe.get(h) is not None]
    if not handlers:
        return [required(path, "must specify a handler type")]
    errs = [forbidden(f"{path}.{h}", "may not specify more than 1 handler type") for h in handlers[1:]]
    handler = handlers[0]
    if handler == "exec" and not probe["exec"].get("command"):
        errs.append(required(f"{path}.exec.command"))
    if handler in ("httpGet", "tcpSocket"):
        errs += validate_port_num_or_name(probe[handler].get("port"), f"{path}.{handler}.port")
    if handler == "httpGet":
        errs += _validate_http_get(probe["httpGet"], f"{path}.httpGet")
    return errs


def _validate_http_get(http: Mapping[str, Any], path: str) -> list[str]:
    errs = validate_one_of(http.get("scheme"), f"{path}.scheme", PROBE_SCHEMES)
    for i, header in enumerate(http.get("httpHeaders") or []):
        name = header.get("name", "")
        if not _HTTP_HEADER_NAME_RE.fullmatch(name):
            msg = regex_error(
                "a valid HTTP header must consist of alphanumeric characters or '-'",
                HTTP_HEADER_NAME_FMT,
                "X-Header-Name",
            )
            errs.append(invalid(f"{path}.httpHeaders[{i}].name", name, msg))
    return errs
