from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from minikubelet.api.app import ApiServer
from minikubelet.events import EventRecorder
from minikubelet.manifests.store import ManifestStore
from minikubelet.node.node import Node

TOKEN = "t" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    counter = itertools.count(1)
    server = ApiServer("127.0.0.1", 0, lambda: [], lambda: 7, EventRecorder(lambda: next(counter)), "node1",
                       lambda: {}, node=Node("node1", tmp_path, "192.0.2.2"), store=ManifestStore(tmp_path / "m"),
                       defined=lambda _key: None, next_version=lambda: next(counter), token=TOKEN)
    async with TestClient(TestServer(server.app)) as c:
        yield c


async def test_discovery_and_openapi(client: TestClient) -> None:  # type: ignore[type-arg]
    r = await client.get("/api", headers={**AUTH, "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;"
                                                             "as=APIGroupDiscoveryList,application/json"})
    assert r.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    resources = (await r.json())["items"][0]["versions"][0]["resources"]
    served = [x["resource"] for x in resources if x["verbs"]]
    assert served == ["pods", "nodes", "events", "namespaces"]
    assert {"services", "configmaps", "secrets"} <= {x["resource"] for x in resources if not x["verbs"]}
    assert {s["subresource"] for s in resources[0]["subresources"]} == {"exec", "log", "portforward", "status"}
    legacy = await (await client.get("/api/v1", headers=AUTH)).json()
    assert {x["name"] for x in legacy["resources"]} >= {"pods", "pods/log", "pods/exec", "nodes", "events"}
    assert (await (await client.get("/apis", headers=AUTH)).json())["kind"] == "APIGroupList"
    v3 = await (await client.get("/openapi/v3", headers=AUTH)).json()
    assert v3 == {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1"}}}
    doc = await (await client.get("/openapi/v3/api/v1?hash=abc", headers=AUTH)).json()
    op = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [("fieldValidation", "query")]
    missing = await client.get("/openapi/v2", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["reason"] == "NotFound"
    assert (await (await client.get("/version", headers=AUTH)).json())["minor"] == "37"


async def test_auth_and_empty_table(client: TestClient) -> None:  # type: ignore[type-arg]
    r = await client.get("/api/v1/namespaces/default/pods")
    assert r.status == 401 and (await r.json())["reason"] == "Unauthorized"
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/pods")).status == 401  # loopback too: /pods holds every pod's spec (issue 9)
    assert (await client.get("/pods", headers=AUTH)).status == 200
    r = await client.get("/api/v1/namespaces/default/pods?limit=500", headers={**AUTH, "Accept": TABLE})
    assert r.headers["Content-Type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    body = await r.json()
    assert body["kind"] == "Table" and body["rows"] == [] and body["metadata"]["resourceVersion"] == "7"
    assert [c["name"] for c in body["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    nodes = await (await client.get("/api/v1/nodes", headers={**AUTH, "Accept": TABLE})).json()
    assert nodes["rows"][0]["cells"][:2] == ["node1", "Ready"]
    assert nodes["rows"][0]["object"]["metadata"]["labels"]["kubernetes.io/hostname"] == "node1"
    events = await (await client.get("/api/v1/namespaces/default/events", headers=AUTH)).json()
    assert events["kind"] == "EventList"


async def test_every_route_but_healthz_needs_the_token(client: TestClient) -> None:  # type: ignore[type-arg]
    """Enumerates the app's router, so a route added later is covered without editing this test (issue 9)."""
    checked = 0
    for route in client.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if not path:
            continue
        path = path.replace("{namespace}", "default").replace("{name}", "x").replace("{tail:.*}", "x")
        path = "".join(part if not part.startswith("{") else "x" for part in path.replace("}", "}\0").split("\0"))
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await client.request(route.method if route.method != "*" else "GET", path, headers=headers)
            if path.startswith("/healthz"):
                assert r.status == 200, path
            else:
                assert r.status == 401, f"{route.method} {path} answered {r.status} without a valid token"
                if route.method != "HEAD":
                    assert (await r.json())["reason"] == "Unauthorized"
            checked += 1
    assert checked > 60
