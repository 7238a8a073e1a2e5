"""The daemon's HTTP API on --listen (aiohttp): the kubectl contract plus /healthz and the kubelet's read-only /pods.

Routes live in small modules (discovery, pods, nodes, events, watch; logs and exec are loaded lazily); this module
wires them, owns the middlewares (errors → Status, bearer token), the snapshot cache and the watch hub.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from minikubelet.api import access, discovery, logfilter, metrics, nodes, podpatch, summary, unserved
from minikubelet.api import events as api_events
from minikubelet.api import pods as api_pods
from minikubelet.api.auth import auth_middleware
from minikubelet.api.context import ApiContext
from minikubelet.api.errors import ApiError, not_found, status
from minikubelet.api.listener import ConnectionTracker, DualListener, raise_fd_limit
from minikubelet.api.metrics import Sampler
from minikubelet.api.pods import check_name, check_namespace
from minikubelet.api.watch import WatchHub
from minikubelet.events import EventRecorder
from minikubelet.manifests.store import ManifestStore
from minikubelet.node.node import Node
from minikubelet.pod.spec import Pod
from minikubelet.pod.worker import PodWorker
from minikubelet.probe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
SNAPSHOT_TTL = 1.0
POD = "/api/v1/namespaces/{namespace}/pods/{name}"
Route = Callable[[ApiContext, web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a Kubernetes Status; unexpected ones are logged with their traceback, never sent."""
    try:
        return await handler(request)
    except ApiError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 404:
            return status(404, "NotFound", "the server could not find the requested resource")
        if e.status == 405:
            return status(405, "MethodNotAllowed", f"the server does not allow {request.method} on {request.path}")
        if e.status == 413:
            return status(413, "RequestEntityTooLarge", f"the request body is larger than {MAX_BODY} bytes")
        return status(e.status, e.reason.replace(" ", ""), e.text or e.reason)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("API request failed method=%s path=%s", request.method, request.path)
        return status(500, "InternalError", f"Internal error occurred: {type(e).__name__}")


class ApiServer:
    def __init__(
        self, host: str, port: int, pods: Callable[[], list[PodWorker]], version: Callable[[], int],
        events: EventRecorder, node_name: str, manifest_errors: Callable[[], dict[str, str]], *,
        node: Node, store: ManifestStore, defined: Callable[[str], Pod | None],
        next_version: Callable[[], int], token: str | None = None,
        ssl_context: ssl.SSLContext | None = None, probe_stats: Callable[[], dict[str, Any]] | None = None,
        probe_metrics: Callable[[], str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._pods = pods
        self._version = version
        self.events = events
        self.node_name = node_name
        self.manifest_errors = manifest_errors
        self.node = node
        self.store = store
        self._defined = defined
        self._next_version = next_version
        self._ssl = ssl_context
        self._probe_stats = probe_stats
        self._probe_metrics = probe_metrics
        self.hub = WatchHub()
        self.metrics = Sampler()  # kubectl top: the last usage reading of every container
        self.write_lock = asyncio.Lock()
        self._known: set[str] = set()
        self._cache: dict[str, tuple[int, int, float, dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self._listener: DualListener | None = None
        self.connections = ConnectionTracker.for_fd_limit(raise_fd_limit())
        self.app = web.Application(
            middlewares=[self.connections.middleware(), error_middleware, auth_middleware(token)],
            client_max_size=MAX_BODY)
        self.app.add_routes([
            web.get("/healthz", self.healthz), web.get("/healthz/ping", self.healthz),
            web.get("/pods", self.list_pods), web.get("/pods/", self.list_pods),
            web.get("/events", self.list_events), web.get("/manifests/errors", self.list_manifest_errors),
            web.get("/debug/probes", self.probe_stats), web.get("/metrics/probes", self.probe_metrics),
            *discovery.routes(),
            web.get("/api/v1/pods", self.route(api_pods.list_pods)),
            web.get("/api/v1/namespaces/{namespace}/pods", self.route(api_pods.list_pods)),
            web.post("/api/v1/namespaces/{namespace}/pods", self.route(api_pods.create_pod)),
            web.get(POD, self.route(api_pods.get_pod)),
            web.delete(POD, self.route(api_pods.delete_pod)),
            web.patch(POD, self.route(podpatch.patch_pod)),
            web.put(POD, self.route(podpatch.replace_pod)),
            web.get(POD + "/log", self.route(self._delegate("logs"))),
            web.get(POD + "/exec", self.route(self._delegate("exec"))),
            web.post(POD + "/exec", self.route(self._delegate("exec"))),
            web.get(POD + "/portforward", self.route(self._delegate("portforward"))),
            web.post(POD + "/portforward", self.route(self._delegate("portforward"))),
            web.get(POD + "/attach", self.route(self._delegate("attach"))),
            web.post(POD + "/attach", self.route(self._delegate("attach"))),
            web.get(POD + "/ephemeralcontainers", self.route(self._ephemeral)),
            web.patch(POD + "/ephemeralcontainers", self.route(self._ephemeral)),
            web.put(POD + "/ephemeralcontainers", self.route(self._ephemeral)),
            web.get("/api/v1/nodes", self.route(nodes.list_nodes)),
            web.get("/api/v1/nodes/{name}", self.route(nodes.get_node)),
            web.get("/api/v1/nodes/{name}/proxy/metrics/probes", self.node_probe_metrics),
            web.patch("/api/v1/nodes/{name}", self.route(nodes.patch_node)),
            web.get("/api/v1/events", self.route(api_events.list_events)),
            web.get("/api/v1/namespaces/{namespace}/events", self.route(api_events.list_events)),
            web.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self.route(access.access_review)),
            web.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", self.route(access.self_review)),
            web.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", self.route(access.rules_review)),
            web.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
                    self.route(nodes.get_node_lease)),
            web.get("/stats/summary", self.route(summary.get_summary)),
            web.get("/api/v1/nodes/{name}/proxy/stats/summary", self.route(summary.get_summary)),
            web.get("/apis/metrics.k8s.io/v1beta1", metrics.resource_list),
            web.get("/apis/metrics.k8s.io/v1beta1/nodes", self.route(metrics.list_node_metrics)),
            web.get("/apis/metrics.k8s.io/v1beta1/nodes/{name}", self.route(metrics.list_node_metrics)),
            web.get("/apis/metrics.k8s.io/v1beta1/pods", self.route(metrics.list_pod_metrics)),
            web.get("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", self.route(metrics.list_pod_metrics)),
            web.get("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}",
                    self.route(metrics.list_pod_metrics)),
            web.get("/api/v1/namespaces", self.route(list_namespaces)),
            web.get("/api/v1/namespaces/{namespace}", self.route(get_namespace)),
            *unserved.routes(),
        ])

    def route(self, handler: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def call(request: web.Request) -> web.StreamResponse:
            log.debug("API request method=%s path=%s command=%s", request.method, request.path_qs,
                      request.headers.get("Kubectl-Command", ""))
            return await handler(self, request)

        return call

    @staticmethod
    async def _ephemeral(server: ApiContext, request: web.Request) -> web.StreamResponse:
        from minikubelet.api import attach

        check_namespace(request.match_info["namespace"])
        check_name("pod", request.match_info["name"])
        return await attach.ephemeral_containers(server, request)

    @staticmethod
    def _delegate(module: str) -> Route:
        """logs/exec live in their own modules (another owner); import them on first use."""

        async def call(server: ApiContext, request: web.Request) -> web.StreamResponse:
            check_namespace(request.match_info["namespace"])
            check_name("pod", request.match_info["name"])
            try:
                mod = importlib.import_module(f"minikubelet.api.{module}")
            except ImportError:
                raise ApiError(501, "NotImplemented", f"pods/{module} is not available in this build") from None
            response: web.StreamResponse = await mod.handle(server, request)
            return response

        return call

    # ----- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        logfilter.install()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        assert self._runner.server is not None
        self._listener = DualListener(self._runner.server, self.host, self.port, self._ssl, self.connections)
        await self._listener.start()
        log.info("API listening address=%s:%d https=%s http=yes", self.host, self.port, self._ssl is not None)

    async def stop(self) -> None:
        self.hub.close_all()
        if self._listener is not None:
            await self._listener.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    # ----- state the route modules read ------------------------------------------------------------------------

    def workers(self) -> list[PodWorker]:
        return self._pods()

    def version(self) -> int:
        return self._version()

    def bump_version(self) -> int:
        return self._next_version()

    def defined(self, namespace: str, name: str) -> Pod | None:
        """The pod as the manifest directory defines it now (None once its file or document is gone)."""
        return self._defined(f"{namespace}/{name}")

    def find_pod(self, namespace: str, name: str) -> PodWorker | None:
        """The live (newest) worker of namespace/name, or None."""
        found = [w for w in self._pods() if w.pod.namespace == namespace and w.pod.name == name]
        return found[-1] if found else None

    def snapshot(self, worker: PodWorker) -> dict[str, Any]:
        """``worker.to_api()``, cached per (uid, version, node labels) for up to SNAPSHOT_TTL seconds."""
        now = time.monotonic()
        cached = self._cache.get(worker.pod.uid)
        if cached is not None and cached[0] == worker.version and cached[1] == self.node.generation \
                and now - cached[2] < SNAPSHOT_TTL:
            return cached[3]
        pod = worker.to_api()
        if not worker.state.admitted and any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                                       for c in pod["status"].get("conditions") or []):
            pod["spec"].pop("nodeName", None)  # not scheduled yet: NODE shows <none>, as on a cluster
        self._cache[worker.pod.uid] = (worker.version, self.node.generation, now, pod)
        return pod

    # ----- hooks the daemon calls ----------------------------------------------------------------------------------

    def pod_changed(self, worker: PodWorker) -> None:
        """Called by the daemon whenever a pod's resourceVersion moves (watchers get ADDED/MODIFIED)."""
        self._known.add(worker.pod.uid)
        self.hub.publish(worker.version, worker.pod.uid, False, self.snapshot(worker))

    def pods_changed(self) -> None:
        """The set of pods changed (a worker was added): announce workers the watchers have not seen yet, and
        record FailedScheduling for a new pod whose nodeSelector does not match (as the scheduler would)."""
        for w in self._pods():
            if w.pod.uid not in self._known:
                ok, _, message = (True, "", "") if w.state.admitted else self.node.admit(w.pod)
                if not ok:
                    self.events.record(w.pod.namespace, w.pod.name, w.pod.uid, "Warning", "FailedScheduling",
                                       message)
                self.pod_changed(w)

    def pod_deleted(self, worker: PodWorker) -> None:
        """Called by the daemon when a pod is gone for good (watchers get DELETED)."""
        self._known.discard(worker.pod.uid)
        self._cache.pop(worker.pod.uid, None)
        pod = worker.to_api()
        version = self._version()
        pod["metadata"]["resourceVersion"] = str(version)
        self.hub.publish(version, worker.pod.uid, True, pod)

    async def idle_watch(self, request: web.Request) -> web.StreamResponse:
        """A watch on a resource without change events here (nodes, events): stays open, sends nothing."""
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        timeout = request.query.get("timeoutSeconds", "")
        deadline = time.monotonic() + (float(timeout) if timeout.isdigit() else 3600.0)
        while time.monotonic() < deadline and request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(1.0)
        return resp

    # ----- the kubelet's read-only endpoints ---------------------------------------------------------------------

    async def probe_stats(self, request: web.Request) -> web.Response:
        """Prober figures (probes run, start lateness against schedule) for scripts/bench probes."""
        if self._probe_stats is None:
            return status(404, "NotFound", "the prober is not running")
        return web.json_response(self._probe_stats())

    async def probe_metrics(self, request: web.Request) -> web.Response:
        """The kubelet's prober metrics in Prometheus text format (probe/metrics.py)."""
        if self._probe_metrics is None:
            return status(404, "NotFound", "the prober is not running")
        return web.Response(body=self._probe_metrics().encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def node_probe_metrics(self, request: web.Request) -> web.Response:
        """The same through the node proxy path, as on a cluster: ``kubectl get --raw
        /api/v1/nodes/NODE/proxy/metrics/probes``."""
        name = request.match_info["name"]
        if name != self.node_name:
            return not_found("nodes", name)
        return await self.probe_metrics(request)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def pod_list(self) -> dict[str, Any]:
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._version())},
                "items": [w.to_api() for w in self._pods()]}

    async def list_pods(self, request: web.Request) -> web.Response:
        return web.json_response(self.pod_list())

    async def list_events(self, request: web.Request) -> web.Response:
        """Every recorded event as a v1 EventList (newest last)."""
        items = [e.to_api(self.node_name) for e in self.events.list()]
        return web.json_response({"kind": "EventList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self._version())}, "items": items})

    async def list_manifest_errors(self, request: web.Request) -> web.Response:
        """Manifest files refused right now: {path: message}."""
        return web.json_response(self.manifest_errors())


def _namespace(server: ApiContext, name: str) -> dict[str, Any]:
    """Namespaces exist implicitly (any pod may name one); they are as old as the node."""
    created = server.node.to_api()["metadata"]["creationTimestamp"]
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {
        "name": name, "uid": f"namespace-{name}", "creationTimestamp": created,
        "labels": {"kubernetes.io/metadata.name": name}}, "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}}


async def list_namespaces(server: ApiContext, request: web.Request) -> web.Response:
    names = sorted({"default", *(w.pod.namespace for w in server.workers())})
    return web.json_response({"kind": "NamespaceList", "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(server.version())},
                              "items": [_namespace(server, n) for n in names]})


async def get_namespace(server: ApiContext, request: web.Request) -> web.Response:
    return web.json_response(_namespace(server, check_namespace(request.match_info["namespace"])))
