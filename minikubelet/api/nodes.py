"""Node routes: list/get (JSON or Table) and PATCH for ``kubectl label node`` (labels persist across restarts)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from minikubelet.api.errors import bad_request, invalid, not_found_error
from minikubelet.api.patch import PatchError, merge_patch, strategic_merge_patch
from minikubelet.api.pods import MERGE_PATCH, PATCH_TYPES, is_true, read_object, table_response, wants_table
from minikubelet.api.selectors import field_selector, label_selector
from minikubelet.api.tables import NODE_COLUMNS, node_row, table
from minikubelet.validation import validate_labels

if TYPE_CHECKING:
    from minikubelet.api.app import ApiServer

log = logging.getLogger(__name__)

NODE_FIELDS = ("metadata.name", "spec.unschedulable")


async def list_nodes(server: ApiServer, request: web.Request) -> web.StreamResponse:
    q = request.query
    labels = label_selector(q.get("labelSelector"))
    fields = field_selector(q.get("fieldSelector"), NODE_FIELDS, "nodes")
    if is_true(q.get("watch")):
        return await server.idle_watch(request)
    node = server.node.to_api()
    nodes = [node] if labels(node["metadata"]["labels"]) and fields(node) else []
    if wants_table(request):
        return table_response(table(NODE_COLUMNS, [node_row(n, time.time()) for n in nodes], server.version()))
    return web.json_response({"kind": "NodeList", "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(server.version())}, "items": nodes})


def _node_or_404(server: ApiServer, name: str) -> dict[str, Any]:
    if name != server.node.name:
        raise not_found_error("nodes", name)
    return server.node.to_api()


async def get_node(server: ApiServer, request: web.Request) -> web.Response:
    node = _node_or_404(server, request.match_info["name"])
    if wants_table(request):
        return table_response(table(NODE_COLUMNS, [node_row(node, time.time())], server.version()))
    return web.json_response(node)


async def patch_node(server: ApiServer, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    node = _node_or_404(server, name)
    patch = await read_object(request, PATCH_TYPES, "patch node")
    if not isinstance(patch, dict):
        raise bad_request("the patch must be a JSON object")
    try:
        new = merge_patch(node, patch) if request.content_type == MERGE_PATCH else strategic_merge_patch(node, patch)
    except PatchError as e:
        raise bad_request(str(e)) from None
    meta = new.get("metadata") if isinstance(new, dict) else None
    labels = (meta or {}).get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise invalid("Node", name, ["metadata.labels: Invalid value: must be a map of strings"])
    if (meta or {}).get("name") != name:
        raise invalid("Node", name, ["metadata.name: Invalid value: field is immutable"])
    if problems := validate_labels(labels, "metadata.labels"):
        raise invalid("Node", name, problems)
    if labels != server.node.labels:
        server.node.set_labels(labels, server.bump_version())
    return web.json_response(server.node.to_api())
