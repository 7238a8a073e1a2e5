"""The daemon's HTTP API on --listen (aiohttp): /healthz and the kubelet's read-only /pods.

The kubectl-compatible API server (discovery, tables, watch, create/label/delete, logs, exec) grows here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from minikubelet.events import EventRecorder
from minikubelet.podworker import PodWorker

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(
        self, host: str, port: int, pods: Callable[[], list[PodWorker]], version: Callable[[], int],
        events: EventRecorder, node_name: str, manifest_errors: Callable[[], dict[str, str]],
    ) -> None:
        self.host = host
        self.port = port
        self._pods = pods
        self._version = version
        self._events = events
        self._node = node_name
        self._manifest_errors = manifest_errors
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/healthz/ping", self.healthz),
            web.get("/pods", self.list_pods),
            web.get("/pods/", self.list_pods),
            web.get("/events", self.list_events),
            web.get("/manifests/errors", self.list_manifest_errors),
        ])

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        log.info("API listening address=%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def find_pod(self, namespace: str, name: str) -> PodWorker | None:
        """The live (newest) worker of namespace/name, or None."""
        found = [w for w in self._pods() if w.pod.namespace == namespace and w.pod.name == name]
        return found[-1] if found else None

    def pod_changed(self, worker: PodWorker) -> None:
        """Called by the daemon whenever a pod's resourceVersion moves (watchers get ADDED/MODIFIED)."""

    def pod_deleted(self, worker: PodWorker) -> None:
        """Called by the daemon when a pod is gone for good (watchers get DELETED)."""

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def pod_list(self) -> dict[str, Any]:
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._version())},
                "items": [w.to_api() for w in self._pods()]}

    async def list_pods(self, request: web.Request) -> web.Response:
        return web.json_response(self.pod_list())

    async def list_events(self, request: web.Request) -> web.Response:
        """Every recorded event as a v1 EventList (newest last)."""
        items = [e.to_api(self._node) for e in self._events.list()]
        return web.json_response({"kind": "EventList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self._version())}, "items": items})

    async def list_manifest_errors(self, request: web.Request) -> web.Response:
        """Manifest files refused right now: {path: message}."""
        return web.json_response(self._manifest_errors())
