"""Event routes: ``kubectl get events`` (Table), its ``-w`` watch, and describe's ``fieldSelector=involvedObject.*``."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from minikubelet.api import pollwatch
from minikubelet.api.pods import list_query, table_response, wants_table
from minikubelet.api.selectors import FieldMatcher, LabelMatcher
from minikubelet.api.tables import EVENT_COLUMNS, event_row, table

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext

EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "type", "metadata.name", "metadata.namespace", "source.component")


async def list_events(server: ApiContext, request: web.Request) -> web.StreamResponse:
    query = list_query(request, EVENT_FIELDS, "events")
    ns, labels, fields = query.namespace, query.labels, query.fields
    if query.watch:
        source = event_source(server, ns, labels, fields)
        return await pollwatch.serve(request, server.hub, source, wants_table(request))
    version = server.version()
    items = [e.to_api(server.node_name) for e in server.events.list() if ns is None or e.namespace == ns]
    items = [e for e in items if labels({}) and fields(e)]
    if wants_table(request):
        now = time.time()
        return table_response(table(EVENT_COLUMNS, [event_row(e, now) for e in items], version))
    return web.json_response({"kind": "EventList", "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(version)}, "items": items})


def event_source(server: ApiContext, ns: str | None, labels: LabelMatcher, fields: FieldMatcher) -> pollwatch.Source:
    """The event store for ``pollwatch``: a new event or a repeat (count + 1) takes a new resourceVersion."""

    def items() -> list[pollwatch.Item]:
        return [pollwatch.Item(e.name, e.resource_version, e.resource_version if e.count == 1 else 0,
                               functools.partial(e.to_api, server.node_name))
                for e in server.events.list() if ns is None or e.namespace == ns]

    def matches(obj: dict[str, Any]) -> bool:
        return labels({}) and fields(obj)

    return pollwatch.Source("Event", items, matches, EVENT_COLUMNS, event_row, server.version)
