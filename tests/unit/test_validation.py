"""validation.py: the apimachinery / core validation rules, with the API server's exact messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from minikubelet.manifests import validation as v

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation "
    "is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

Case = tuple[Callable[..., list[str]], tuple[Any, ...], list[str]]

CASES: dict[str, Case] = {
    "pod-name-ok": (v.validate_dns1123_subdomain, ("web.example-1", "metadata.name"), []),
    "pod-name-bad": (
        v.validate_dns1123_subdomain,
        ("Foo_1", "metadata.name"),
        [f'metadata.name: Invalid value: "Foo_1": {SUBDOMAIN_MSG}'],
    ),
    "pod-name-too-long": (
        v.validate_dns1123_subdomain,
        ("a" * 254, "metadata.name"),
        [f'metadata.name: Invalid value: "{"a" * 77}...": must be no more than 253 characters'],
    ),
    "pod-name-empty": (v.validate_dns1123_subdomain, ("", "metadata.name"), ["metadata.name: Required value"]),
    "container-name-bad": (
        v.validate_dns1123_label,
        ("web.1", "spec.containers[0].name"),
        [f'spec.containers[0].name: Invalid value: "web.1": {LABEL_MSG}'],
    ),
    "container-name-64": (
        v.validate_dns1123_label,
        ("a" * 64, "n"),
        [f'n: Invalid value: "{"a" * 64}": must be no more than 63 characters'],
    ),
    "label-key-prefixed-ok": (v.validate_label_key, ("app.kubernetes.io/Name_1", "metadata.labels"), []),
    "label-key-bad-name": (
        v.validate_label_key,
        ("-app", "metadata.labels"),
        [f'metadata.labels: Invalid value: "-app": {QNAME_MSG}'],
    ),
    "label-key-empty-prefix": (
        v.validate_label_key,
        ("/app", "l"),
        ['l: Invalid value: "/app": prefix part must be non-empty'],
    ),
    "label-key-two-slashes": (
        v.validate_label_key,
        ("a/b/c", "l"),
        [
            "l: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', "
            "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
            "prefix and '/' (e.g. 'example.com/MyName')"
        ],
    ),
    "label-key-long-name": (
        v.validate_label_key,
        ("x/" + "a" * 64, "l"),
        [f'l: Invalid value: "x/{"a" * 64}": name part must be no more than 63 characters'],
    ),
    "label-value-empty-ok": (v.validate_label_value, ("", "l"), []),
    "label-value-bad": (v.validate_label_value, ("a b", "l"), [f'l: Invalid value: "a b": {VALUE_MSG}']),
    "labels": (
        v.validate_labels,
        ({"ok": "fine", "Bad Key": "x", "k": "-v"}, "metadata.labels"),
        [
            f'metadata.labels: Invalid value: "Bad Key": {QNAME_MSG}',
            f'metadata.labels: Invalid value: "-v": {VALUE_MSG}',
        ],
    ),
    "annotation-key-uppercase-ok": (v.validate_annotations, ({"Example.COM/Notes": "x"}, "a"), []),
    "annotations-too-big": (
        v.validate_annotations,
        ({"k": "x" * (256 * 1024)}, "metadata.annotations"),
        ["metadata.annotations: Too long: may not be more than 262144 bytes"],
    ),
    "port-0": (
        v.validate_port_number,
        (0, "spec.containers[0].ports[0].containerPort"),
        ["spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive"],
    ),
    "port-65535-ok": (v.validate_port_number, (65535, "p"), []),
    "port-name-ok": (v.validate_port_name, ("http-alt2", "p"), []),
    "port-name-bad": (
        v.validate_port_name,
        ("-Web--port_is-long-", "p"),
        [
            'p: Invalid value: "-Web--port_is-long-": must be no more than 15 characters',
            'p: Invalid value: "-Web--port_is-long-": must contain only alpha-numeric characters (a-z, 0-9), and '
            "hyphens (-)",
            'p: Invalid value: "-Web--port_is-long-": must not contain consecutive hyphens',
            'p: Invalid value: "-Web--port_is-long-": must not begin or end with a hyphen',
        ],
    ),
    "port-name-digits": (
        v.validate_port_name,
        ("8080", "p"),
        ['p: Invalid value: "8080": must contain at least one letter (a-z)'],
    ),
    "env-name-ok": (v.validate_env_var_name, ("my.env-NAME_1", "e"), []),
    "env-name-digit": (
        v.validate_env_var_name,
        ("1X", "e"),
        [
            'e: Invalid value: "1X": a valid environment variable name must consist of alphabetic characters, '
            "digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name', or 'MY_ENV.NAME', or "
            "'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
        ],
    ),
    "env-name-dotdot": (v.validate_env_var_name, ("..x", "e"), ["e: Invalid value: \"..x\": must not start with '..'"]),
    "protocol": (
        v.validate_one_of,
        ("tcp", "p", v.PROTOCOLS),
        ['p: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"'],
    ),
}


@pytest.mark.parametrize(("func", "args", "expected"), CASES.values(), ids=CASES.keys())
def test_rule(func: Callable[..., list[str]], args: tuple[Any, ...], expected: list[str]) -> None:
    assert func(*args) == expected


def probe(**fields: Any) -> dict[str, Any]:
    return {"tcpSocket": {"port": 80}, **fields}


PROBE_CASES: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    "ok": (probe(periodSeconds=5), "livenessProbe", []),
    "negative": (
        probe(timeoutSeconds=-1),
        "livenessProbe",
        ["p.timeoutSeconds: Invalid value: -1: must be greater than or equal to 0"],
    ),
    "liveness-success-2": (
        probe(successThreshold=2),
        "livenessProbe",
        ["p.successThreshold: Invalid value: 2: must be 1"],
    ),
    "startup-success-2": (
        probe(successThreshold=2),
        "startupProbe",
        ["p.successThreshold: Invalid value: 2: must be 1"],
    ),
    "readiness-success-2": (probe(successThreshold=2), "readinessProbe", []),
    "readiness-grace": (
        probe(terminationGracePeriodSeconds=3),
        "readinessProbe",
        ["p.terminationGracePeriodSeconds: Invalid value: 3: must not be set for readinessProbes"],
    ),
    "liveness-grace-0": (
        probe(terminationGracePeriodSeconds=0),
        "livenessProbe",
        ["p.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0"],
    ),
    "no-handler": ({"periodSeconds": 3}, "livenessProbe", ["p: Required value: must specify a handler type"]),
    "two-handlers": (
        probe(exec={"command": ["true"]}),
        "livenessProbe",
        ["p.tcpSocket: Forbidden: may not specify more than 1 handler type"],
    ),
    "exec-no-command": ({"exec": {}}, "livenessProbe", ["p.exec.command: Required value"]),
    "http-bad": (
        {"httpGet": {"port": "Web_Port", "scheme": "ftp", "httpHeaders": [{"name": "X Y", "value": ""}]}},
        "readinessProbe",
        [
            'p.httpGet.port: Invalid value: "Web_Port": must contain only alpha-numeric characters (a-z, 0-9), and '
            "hyphens (-)",
            'p.httpGet.scheme: Unsupported value: "ftp": supported values: "HTTP", "HTTPS"',
            'p.httpGet.httpHeaders[0].name: Invalid value: "X Y": a valid HTTP header must consist of alphanumeric '
            "characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
        ],
    ),
    "tcp-port-0": (
        {"tcpSocket": {"port": 0}},
        "livenessProbe",
        ["p.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive"],
    ),
}


@pytest.mark.parametrize(("value", "kind", "expected"), PROBE_CASES.values(), ids=PROBE_CASES.keys())
def test_probe(value: dict[str, Any], kind: str, expected: list[str]) -> None:
    assert v.validate_probe(value, "p", kind) == expected


def test_container_names_unique_across_init_and_regular() -> None:
    spec = {
        "initContainers": [{"name": "web", "image": "i"}],
        "containers": [{"name": "web", "image": "i"}, {"name": "side", "image": "i"}],
    }
    assert v.validate_pod_spec(spec) == ['spec.containers[0].name: Duplicate value: "web"']


def test_port_names_unique_within_container() -> None:
    ports = [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]
    assert v.validate_ports(ports, "p") == ['p[1].name: Duplicate value: "http"']


@pytest.mark.parametrize(
    ("value", "text"),
    [("a", '"a"'), (0, "0"), (True, "true"), (None, "null"), ('é"', '"é\\""')],
    ids=["string", "int", "bool", "null", "escapes"],
)
def test_fmt_value(value: Any, text: str) -> None:
    assert v.fmt_value(value) == text
