"""Watches of nodes and events (``kubectl get nodes -w``, ``kubectl get events -w``; contract §11).

The node and the event store belong to other modules and call nothing in the API when they change, but every change
takes a new resourceVersion from the daemon's one counter, which pokes the watch hub. So a watcher looks at its
source when poked (at most every ``COALESCE_SECONDS``) and at least every ``POLL_SECONDS``:
an object whose resourceVersion moved is streamed as ADDED or MODIFIED (DELETED when it leaves the selection, or,
for events, the bounded store), in resourceVersion order. The cost is one pass over at most MAX_EVENTS small
records per poll and watcher, and only objects that changed are rendered.

Semantics follow the pod watch: with ``resourceVersion=N`` only changes after N are sent (a change made between the
list and the watch is replayed); without one the watch starts from now; ``sendInitialEvents=true`` sends ADDED for
every current match and a bookmark first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from minikubelet.api.tables import TABLE_CONTENT_TYPE, table
from minikubelet.api.watch import WatchHub, bookmark

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # a safety net: changes arrive by pokes
COALESCE_SECONDS = 0.02  # a burst of changes is sent in one look


@dataclass(frozen=True, slots=True)
class Item:
    """One watched object as its source holds it: rendered (``build``) only when its ``version`` moved."""

    key: str
    version: int
    created: int  # the resourceVersion it was created at, 0 if older than any watch could ask about
    build: Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    items: Callable[[], list[Item]]
    matches: Callable[[dict[str, Any]], bool]
    columns: list[dict[str, Any]]
    row: Callable[[dict[str, Any], float], dict[str, Any]]
    version: Callable[[], int]


class Tracker:
    """What one watcher has seen: the version of every object, and the last object sent for those it shows."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.versions: dict[str, int] = {}
        self.shown: dict[str, dict[str, Any]] = {}

    def start(self, since: int | None, initial: bool) -> list[tuple[str, dict[str, Any]]]:
        """Take the starting state; returns the ADDED events of ``sendInitialEvents``."""
        events: list[tuple[str, dict[str, Any]]] = []
        for item in self.source.items():
            if since is not None and item.version > since and not initial:
                if item.created <= since:  # it existed at the list: its change is a MODIFIED (if it matches now)
                    obj = item.build()
                    if self.source.matches(obj):
                        self.shown[item.key] = obj
                continue
            self.versions[item.key] = item.version
            obj = item.build()
            if self.source.matches(obj):
                self.shown[item.key] = obj
                if initial:
                    events.append(("ADDED", obj))
        return events

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """The events since the last poll, in resourceVersion order."""
        found: list[tuple[int, str, dict[str, Any]]] = []
        present: set[str] = set()
        for item in self.source.items():
            present.add(item.key)
            if self.versions.get(item.key) == item.version:
                continue
            self.versions[item.key] = item.version
            obj = item.build()
            was = item.key in self.shown
            if self.source.matches(obj):
                self.shown[item.key] = obj
                found.append((item.version, "MODIFIED" if was else "ADDED", obj))
            elif was:
                del self.shown[item.key]
                found.append((item.version, "DELETED", obj))
        for key in [k for k in self.versions if k not in present]:
            del self.versions[key]
            gone = self.shown.pop(key, None)
            if gone is not None:
                version = self.source.version()
                gone = {**gone, "metadata": {**gone["metadata"], "resourceVersion": str(version)}}
                found.append((version, "DELETED", gone))
        found.sort(key=lambda e: e[0])
        return [(kind, obj) for _, kind, obj in found]


async def serve(request: web.Request, hub: WatchHub, source: Source, as_table: bool) -> web.StreamResponse:
    """Stream one JSON event per line until the client leaves, ``timeoutSeconds`` pass or the server stops."""
    q = request.query
    rv = q.get("resourceVersion", "")
    since = int(rv) if rv.isdigit() and rv != "0" else None
    initial = q.get("sendInitialEvents", "").lower() in ("true", "1")
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds", "").isdigit() else None
    tracker = Tracker(source)
    first = tracker.start(since, initial)
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    if as_table:
        resp.headers["Content-Type"] = TABLE_CONTENT_TYPE
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    stop = hub.stopper()
    wake = hub.waker()
    log.debug("Watch started kind=%s resourceVersion=%s initial=%s", source.kind, rv, initial)
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = True
    try:
        if initial:
            for kind, obj in first:
                await _write(resp, source, kind, obj, as_table, columns)
                columns = False
            mark = bookmark(source.version(), source.kind)
            await resp.write(json.dumps(mark).encode() + b"\n")
        while not stop.is_set():
            for kind, obj in tracker.poll():
                await _write(resp, source, kind, obj, as_table, columns)
                columns = False
            if request.transport is None or request.transport.is_closing():
                break
            wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                async with asyncio.timeout(wait):
                    await wake.wait()
                await asyncio.sleep(COALESCE_SECONDS)
            except TimeoutError:
                pass
            wake.clear()
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.release(stop)
        hub.release(wake)
    return resp


async def _write(resp: web.StreamResponse, source: Source, kind: str, obj: dict[str, Any], as_table: bool,
                 columns: bool) -> None:
    if as_table:
        rv = int(obj["metadata"].get("resourceVersion") or 0)
        obj = table(source.columns if columns else [], [source.row(obj, time.time())], rv)
    await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
