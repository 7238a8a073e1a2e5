"""Discovery (``/api``, ``/apis``, ``/api/v1``), ``/version`` and OpenAPI v3 (contract §3, §4; api/openapi.py)."""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from minikubelet import __version__
from minikubelet.api import metrics, openapi, unserved
from minikubelet.api.errors import typed_json

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

_RESOURCES: list[dict[str, Any]] = [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": VERBS,
     "shortNames": ["po"], "categories": ["all"]},
    {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
     "verbs": ["create", "get"]},
    {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get", "patch", "update"]},
    {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node", "verbs": VERBS,
     "shortNames": ["no"]},
    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "verbs": VERBS,
     "shortNames": ["ev"]},
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["ns"]},
]


def _aggregated_resource(r: dict[str, Any], subresources: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r["name"], "responseKind": {"group": "", "version": "v1", "kind": r["kind"]},
        "scope": "Namespaced" if r["namespaced"] else "Cluster", "singularResource": r["singularName"],
        "verbs": r["verbs"]}
    for key in ("shortNames", "categories"):
        if key in r:
            out[key] = r[key]
    if subresources:
        out["subresources"] = subresources
    return out


def _aggregated_api() -> dict[str, Any]:
    resources = []
    for r in _RESOURCES:
        if "/" in r["name"]:
            continue
        subs = [{"subresource": s["name"].split("/", 1)[1],
                 "responseKind": {"group": "", "version": "v1", "kind": s["kind"]}, "verbs": s["verbs"]}
                for s in _RESOURCES if s["name"].startswith(r["name"] + "/")]
        resources.append(_aggregated_resource(r, subs))
    resources += unserved.aggregated_core()
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [{"metadata": {"creationTimestamp": None},
                       "versions": [{"version": "v1", "freshness": "Current", "resources": resources}]}]}


def _wants_aggregated(request: web.Request) -> bool:
    return "g=apidiscovery.k8s.io" in request.headers.get("Accept", "")


async def api(request: web.Request) -> web.Response:
    if _wants_aggregated(request):
        return typed_json(_aggregated_api(), AGGREGATED)
    host = request.host or ""
    return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})


async def apis(request: web.Request) -> web.Response:
    """The named groups: metrics.k8s.io (``kubectl top``), served by the daemon itself, and the workload groups it
    does not serve (api/unserved.py), listed so that kubectl asks and reads why."""
    if _wants_aggregated(request):
        body = {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                "items": [metrics.aggregated_group(), *unserved.aggregated_groups()]}
        return typed_json(body, AGGREGATED)
    return web.json_response({"kind": "APIGroupList", "apiVersion": "v1",
                              "groups": [metrics.group(), *unserved.groups()]})


async def api_v1(request: web.Request) -> web.Response:
    return web.json_response({"kind": "APIResourceList", "groupVersion": "v1",
                              "resources": _RESOURCES + unserved.core_resources()})


async def version(request: web.Request) -> web.Response:
    return web.json_response({
        "major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37",
        "gitVersion": f"v1.37.1-minikubelet.{__version__}", "gitCommit": "", "gitTreeState": "clean",
        "buildDate": "", "goVersion": "", "compiler": "minikubelet", "platform": "linux/amd64"})


async def openapi_v3(request: web.Request) -> web.Response:
    return web.json_response({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1"}}})


async def openapi_v3_api_v1(request: web.Request) -> web.Response:
    """Pod and Node schemas (api/openapi.py): kubectl explain, and apply's strategic merge metadata."""
    return web.Response(body=_openapi_body(), content_type="application/json")


@functools.cache
def _openapi_body() -> bytes:
    return json.dumps(openapi.document()).encode()


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api", api), web.get("/api/", api), web.get("/apis", apis), web.get("/apis/", apis),
        web.get("/api/v1", api_v1), web.get("/api/v1/", api_v1), web.get("/version", version),
        web.get("/version/", version), web.get("/openapi/v3", openapi_v3),
        web.get("/openapi/v3/api/v1", openapi_v3_api_v1),
    ]
