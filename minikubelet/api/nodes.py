"""Node routes: list/get (JSON or Table), watch, and PATCH for ``kubectl label node`` (labels persist across restarts).

PATCH takes merge, strategic merge and JSON patches (the last against the node object); only labels may change.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from minikubelet.api import jsonpatch, pollwatch
from minikubelet.api.errors import ApiError, bad_request, invalid, not_found_error, status
from minikubelet.api.patch import PatchError, merge_patch, strategic_merge_patch
from minikubelet.api.pods import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    is_true,
    read_object,
    table_response,
    wants_table,
)
from minikubelet.api.selectors import FieldMatcher, LabelMatcher, field_selector, label_selector
from minikubelet.api.tables import NODE_COLUMNS, node_row, table
from minikubelet.manifests.validation import validate_labels

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext

log = logging.getLogger(__name__)

NODE_FIELDS = ("metadata.name", "spec.unschedulable")


async def list_nodes(server: ApiContext, request: web.Request) -> web.StreamResponse:
    q = request.query
    labels = label_selector(q.get("labelSelector"))
    fields = field_selector(q.get("fieldSelector"), NODE_FIELDS, "nodes")
    if is_true(q.get("watch")):
        return await pollwatch.serve(request, server.hub, node_source(server, labels, fields), wants_table(request))
    node = server.node.to_api()
    nodes = [node] if labels(node["metadata"]["labels"]) and fields(node) else []
    if wants_table(request):
        return table_response(table(NODE_COLUMNS, [node_row(n, time.time()) for n in nodes], server.version()))
    return web.json_response({"kind": "NodeList", "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(server.version())}, "items": nodes})


def node_source(server: ApiContext, labels: LabelMatcher, fields: FieldMatcher) -> pollwatch.Source:
    """The node for ``pollwatch``: its resourceVersion moves on every label change."""
    node = server.node

    def items() -> list[pollwatch.Item]:
        return [pollwatch.Item(node.name, node.version, 0, node.to_api)]

    def matches(obj: dict[str, Any]) -> bool:
        return labels(obj["metadata"].get("labels") or {}) and fields(obj)

    return pollwatch.Source("Node", items, matches, NODE_COLUMNS, node_row, server.version)


def _node_or_404(server: ApiContext, name: str) -> dict[str, Any]:
    if name != server.node.name:
        raise not_found_error("nodes", name)
    return server.node.to_api()


async def get_node(server: ApiContext, request: web.Request) -> web.Response:
    node = _node_or_404(server, request.match_info["name"])
    if wants_table(request):
        return table_response(table(NODE_COLUMNS, [node_row(node, time.time())], server.version()))
    return web.json_response(node)


async def patch_node(server: ApiContext, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    node = _node_or_404(server, name)
    patch = await read_object(request, (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH), "patch node")
    if request.content_type == JSON_PATCH:
        new = _json_patched(node, patch, name)
    elif not isinstance(patch, dict):
        raise bad_request("the patch must be a JSON object")
    else:
        try:
            new = merge_patch(node, patch) if request.content_type == MERGE_PATCH else \
                strategic_merge_patch(node, patch)
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
        try:
            server.node.set_labels(labels, server.bump_version())
        except OSError as e:  # nothing changed: the labels stay as they were, on disk and here
            return labels_not_saved(server.node.path, e)
    return web.json_response(server.node.to_api())


def labels_not_saved(path: Path, e: OSError) -> web.Response:
    """507 when the disk is full (with Retry-After, so kubectl tries again for a while), 500 otherwise; either way a
    Status that says what happened and what to do."""
    log.error("Could not save the node labels path=%s error=%s", path, e.strerror or e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        response = status(507, "InsufficientStorage", f"cannot save the node's labels in {path}: the disk is full "
                          f"({e.strerror}); nothing was changed: free space in {path.parent} and retry")
        response.headers["Retry-After"] = "1"
        return response
    return status(500, "InternalError", f"cannot save the node's labels in {path}: {e.strerror or e}; nothing was "
                  f"changed: check that {path.parent} is writable and retry")


def _json_patched(node: dict[str, Any], patch: Any, name: str) -> Any:
    try:
        return jsonpatch.apply(node, jsonpatch.decode(patch))
    except jsonpatch.PatchDecodeError as e:
        raise bad_request(str(e)) from None
    except jsonpatch.PatchApplyError as e:
        log.info("JSON patch does not apply node=%s reason=%r", name, str(e))
        raise ApiError(422, "Invalid", jsonpatch.FAILED_MESSAGE, {}) from None


async def get_node_lease(server: ApiContext, request: web.Request) -> web.Response:
    """The node's heartbeat Lease (``kubectl describe node`` shows it): this daemon holds it and renews it as long
    as it answers, so its renew time is now."""
    name = request.match_info["name"]
    if name != server.node_name:
        raise not_found_error("leases.coordination.k8s.io", name)
    created = server.node.to_api()["metadata"]["creationTimestamp"]
    now = time.time()
    renew = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    return web.json_response({
        "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": name, "namespace": "kube-node-lease", "uid": f"lease-{name}",
                     "creationTimestamp": created, "resourceVersion": str(server.version())},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}})
