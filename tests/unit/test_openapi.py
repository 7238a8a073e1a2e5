"""The OpenAPI v3 document (api/openapi.py): every reference resolves, the Pod's lists carry Kubernetes' merge keys,
and the PATCH operations keep what kubectl create/apply need (fieldValidation; no strategic-merge requestBody, so
client-side apply keeps its built-in core/v1 patch metadata)."""

from __future__ import annotations

from typing import Any

from minikubelet.api import openapi
from minikubelet.manifests import schema

DOC = openapi.document()
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if "$ref" in node else []
        return out + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(ref: str) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix)
    out: dict[str, Any] = SCHEMAS[ref[len(prefix) :]]
    return out


def field(component: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = SCHEMAS[openapi.CORE + component]["properties"][name]
    return out


def test_every_reference_resolves() -> None:
    for ref in refs(DOC):
        assert resolve(ref), ref


def test_pod_and_node_are_found_by_kind() -> None:
    kinds = {g["kind"] for s in SCHEMAS.values() for g in s.get("x-kubernetes-group-version-kind", [])}
    assert kinds == {"Pod", "Node"}
    patch = DOC["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert [p["name"] for p in patch["parameters"]] == ["fieldValidation"]
    assert "requestBody" not in patch


def test_lists_merge_by_kubernetes_keys() -> None:
    for component, name, key in [
        ("PodSpec", "containers", "name"),
        ("PodSpec", "initContainers", "name"),
        ("PodSpec", "volumes", "name"),
        ("Container", "env", "name"),
        ("Container", "ports", "containerPort"),
        ("Container", "volumeMounts", "mountPath"),
    ]:
        f = field(component, name)
        assert f["x-kubernetes-patch-merge-key"] == key, (component, name)
        assert f["x-kubernetes-patch-strategy"].startswith("merge")
    assert field("Container", "command")["x-kubernetes-list-type"] == "atomic"


def test_every_schema_field_is_described_as_it_is() -> None:
    """Each field the manifest schema knows is in the document, and refused ones say so."""
    spec = SCHEMAS[openapi.CORE + "PodSpec"]["properties"]
    assert set(spec) == set(schema.POD_SPEC)
    container = SCHEMAS[openapi.CORE + "Container"]["properties"]
    assert set(container) == set(schema.CONTAINER)
    for name, sub in schema.POD_SPEC.items():
        if isinstance(sub, schema.Rejected):
            assert "refuses" in spec[name]["description"], name
