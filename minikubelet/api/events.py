"""Event routes: ``kubectl get events`` (Table) and describe's ``fieldSelector=involvedObject.*`` list."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from minikubelet.api.pods import check_namespace, is_true, table_response, wants_table
from minikubelet.api.selectors import field_selector, label_selector
from minikubelet.api.tables import EVENT_COLUMNS, event_row, table

if TYPE_CHECKING:
    from minikubelet.api.app import ApiServer

EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "type", "metadata.name", "metadata.namespace", "source.component")


async def list_events(server: ApiServer, request: web.Request) -> web.StreamResponse:
    ns = request.match_info.get("namespace")
    if ns is not None:
        check_namespace(ns)
    q = request.query
    labels = label_selector(q.get("labelSelector"))
    fields = field_selector(q.get("fieldSelector"), EVENT_FIELDS, "events")
    if is_true(q.get("watch")):
        return await server.idle_watch(request)
    version = server.version()
    items = [e.to_api(server.node_name) for e in server.events.list() if ns is None or e.namespace == ns]
    items = [e for e in items if labels({}) and fields(e)]
    if wants_table(request):
        now = time.time()
        return table_response(table(EVENT_COLUMNS, [event_row(e, now) for e in items], version))
    return web.json_response({"kind": "EventList", "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(version)}, "items": items})
