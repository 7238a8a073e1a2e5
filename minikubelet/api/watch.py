"""Pod watches (``kubectl get -w``, delete-wait; contract §9 and §11). Nodes and events: ``pollwatch``.

The daemon reports every pod change (``ApiServer.pod_changed``/``pod_deleted``); the hub snapshots the pod once and
fans it out to each watcher's bounded queue. A watcher that falls ``QUEUE_SIZE`` events behind is dropped (its stream
ends) so a slow client never holds up the daemon. A short history lets a watch that starts at an older
resourceVersion replay what it missed since its list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from minikubelet.api.selectors import FieldMatcher, LabelMatcher
from minikubelet.api.tables import POD_COLUMNS, TABLE_CONTENT_TYPE, pod_row, table

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
HISTORY = 2000  # changes at most, and at most HISTORY_BYTES of them (serialised size)
HISTORY_BYTES = 16 * 1024 * 1024
IDLE_CHECK_SECONDS = 15.0


@dataclass(slots=True)
class Change:
    version: int
    uid: str
    deleted: bool
    pod: dict[str, Any]
    size: int = 0  # bytes of the pod as JSON (what the history's byte bound counts)


@dataclass(eq=False, slots=True)
class Watcher:
    namespace: str | None
    labels: LabelMatcher
    fields: FieldMatcher
    as_table: bool
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    seen: set[str] = field(default_factory=set)
    dropped: bool = False

    def matches(self, pod: dict[str, Any]) -> bool:
        meta = pod.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(pod)

    def offer(self, change: Change) -> None:
        """Queue the event this change means for this watcher (ADDED/MODIFIED/DELETED or nothing)."""
        if self.dropped:
            return
        was = change.uid in self.seen
        now = not change.deleted and self.matches(change.pod)
        if now:
            kind = "MODIFIED" if was else "ADDED"
            self.seen.add(change.uid)
        elif was:
            kind = "DELETED"
            self.seen.discard(change.uid)
        else:
            return
        try:
            self.queue.put_nowait((kind, change.pod))
        except asyncio.QueueFull:
            log.warning("Dropping a watcher that fell behind queue=%d namespace=%s", QUEUE_SIZE, self.namespace)
            self.drop()

    def drop(self) -> None:
        """End this watcher's stream: pending events are discarded and the stream closes."""
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class WatchHub:
    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()
        self.history: deque[Change] = deque()
        self.history_bytes = 0
        self.trimmed_through = 0  # the newest version dropped from the history (a watch from before it is 410)
        self.max_changes = HISTORY
        self.max_bytes = HISTORY_BYTES
        self._stoppers: set[asyncio.Event] = set()
        self._wakers: set[asyncio.Event] = set()

    def stopper(self) -> asyncio.Event:
        """An event set when the server stops: polling watches (nodes, events; ``pollwatch``) end on it."""
        event = asyncio.Event()
        self._stoppers.add(event)
        return event

    def waker(self) -> asyncio.Event:
        """An event set whenever the daemon takes a resourceVersion (``poke``) and when the server stops: polling
        watches look at their source then instead of waiting for their next poll."""
        event = asyncio.Event()
        self._wakers.add(event)
        return event

    def poke(self) -> None:
        for event in self._wakers:
            event.set()

    def release(self, event: asyncio.Event) -> None:
        self._stoppers.discard(event)
        self._wakers.discard(event)

    def publish(self, version: int, uid: str, deleted: bool, pod: dict[str, Any]) -> None:
        change = Change(version, uid, deleted, pod, len(json.dumps(pod, separators=(",", ":"))))
        self.history.append(change)
        self.history_bytes += change.size
        while self.history and (len(self.history) > self.max_changes or self.history_bytes > self.max_bytes):
            old = self.history.popleft()
            self.history_bytes -= old.size
            self.trimmed_through = max(self.trimmed_through, old.version)
        for w in list(self.watchers):
            w.offer(change)

    def expired(self, since: int | None) -> bool:
        """A watch from ``since`` would miss changes the history no longer holds (the client must list again)."""
        return since is not None and since < self.trimmed_through

    def add(self, watcher: Watcher, since: int | None, current: list[dict[str, Any]], initial: bool) -> None:
        """Register; ``initial`` queues ADDED for current matches, else ``since`` replays newer history."""
        if initial or since is None:
            for pod in current:
                if watcher.matches(pod):
                    watcher.seen.add(pod["metadata"]["uid"])
                    if initial:
                        watcher.queue.put_nowait(("ADDED", pod))
        else:
            watcher.seen = {p["metadata"]["uid"] for p in current if watcher.matches(p)}
            newer = [c for c in self.history if c.version > since]
            watcher.seen |= {c.uid for c in newer if c.deleted and watcher.matches(c.pod)}
            for change in newer:
                watcher.offer(change)
        self.watchers.add(watcher)

    def close_all(self) -> None:
        for w in list(self.watchers):
            if not w.dropped:
                w.drop()
        for event in self._stoppers | self._wakers:
            event.set()


def bookmark(version: int, kind: str = "Pod") -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1", "metadata": {
        "resourceVersion": str(version), "annotations": {"k8s.io/initial-events-end": "true"}}}}


async def serve(request: web.Request, hub: WatchHub, watcher: Watcher, version: Callable[[], int],
                send_bookmark: bool, timeout: float | None) -> web.StreamResponse:
    """Stream one JSON event per line until the client leaves, the timeout passes or the watcher is dropped."""
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    if watcher.as_table:
        resp.headers["Content-Type"] = TABLE_CONTENT_TYPE
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    deadline = None if timeout is None else time.monotonic() + timeout
    first_table = True
    try:
        if send_bookmark:
            initial = []
            while not watcher.queue.empty():
                item = watcher.queue.get_nowait()
                if item is not None:
                    initial.append(item)
            for kind, pod in initial:
                await _write(resp, kind, pod, watcher.as_table, first_table)
                first_table = False
            await resp.write(json.dumps(bookmark(version())).encode() + b"\n")
        while True:
            wait = IDLE_CHECK_SECONDS if deadline is None else min(IDLE_CHECK_SECONDS, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                async with asyncio.timeout(wait):
                    item = await watcher.queue.get()
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
                continue
            if item is None:
                break
            await _write(resp, item[0], item[1], watcher.as_table, first_table)
            first_table = False
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.watchers.discard(watcher)
    return resp


async def _write(resp: web.StreamResponse, kind: str, pod: dict[str, Any], as_table: bool, columns: bool) -> None:
    obj = pod
    if as_table:
        rv = int(pod["metadata"].get("resourceVersion") or 0)
        obj = table(POD_COLUMNS if columns else [], [pod_row(pod, time.time())], rv)
    await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
