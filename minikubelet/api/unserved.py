"""Honest answers for the API kinds a single node does not serve (deployments, services, configmaps, jobs, ...).

A cluster's users type ``kubectl get svc`` or ``kubectl create deployment`` next. Without an answer kubectl says
"the server doesn't have a resource type" or "could not find the requested resource", which tells them nothing.
So these kinds are listed in discovery (with no verbs: nothing is served), a list of them is empty with a warning
kubectl prints, and every other request is a ``Status`` that says this API is one node's, what it serves, what to
use instead, and where the README says more. Creating a namespace gets the same kind of answer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from aiohttp import web

from minikubelet.api.errors import status, typed_json

README = "see 'Not supported' in minikubelet's README"
SERVED = "pods, nodes, events and namespaces"

_WORKLOAD = "run a Pod instead: kubectl run NAME --image=IMAGE, or a Pod manifest (restartPolicy restarts it)"
_NETWORK = "reach a pod at its IP (kubectl get pod -o wide) or with kubectl port-forward pod/NAME PORT"
_CONFIG = "put the values in the pod's env, or in files mounted with a hostPath volume"


class Unserved(NamedTuple):
    group: str
    version: str
    resource: str
    kind: str
    short_names: tuple[str, ...]
    namespaced: bool
    instead: str

    @property
    def singular(self) -> str:
        return self.kind.lower()


KINDS: tuple[Unserved, ...] = (
    Unserved("", "v1", "services", "Service", ("svc",), True, _NETWORK),
    Unserved("", "v1", "endpoints", "Endpoints", ("ep",), True, _NETWORK),
    Unserved("", "v1", "configmaps", "ConfigMap", ("cm",), True, _CONFIG),
    Unserved("", "v1", "secrets", "Secret", (), True, _CONFIG),
    Unserved("", "v1", "serviceaccounts", "ServiceAccount", ("sa",), True,
             "pods here run without a service account (the node's token is the admin's)"),
    Unserved("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", ("pvc",), True,
             "mount node directories with a hostPath volume, or scratch space with emptyDir"),
    Unserved("", "v1", "persistentvolumes", "PersistentVolume", ("pv",), False,
             "mount node directories with a hostPath volume"),
    Unserved("", "v1", "replicationcontrollers", "ReplicationController", ("rc",), True, _WORKLOAD),
    Unserved("", "v1", "resourcequotas", "ResourceQuota", ("quota",), True,
             "set resources.limits on the pod's containers"),
    Unserved("", "v1", "limitranges", "LimitRange", ("limits",), True, "set resources.limits on the pod's containers"),
    Unserved("apps", "v1", "deployments", "Deployment", ("deploy",), True, _WORKLOAD),
    Unserved("apps", "v1", "replicasets", "ReplicaSet", ("rs",), True, _WORKLOAD),
    Unserved("apps", "v1", "statefulsets", "StatefulSet", ("sts",), True, _WORKLOAD),
    Unserved("apps", "v1", "daemonsets", "DaemonSet", ("ds",), True,
             "this is one node: a Pod manifest in the manifest directory is what a DaemonSet would run here"),
    Unserved("batch", "v1", "jobs", "Job", (), True,
             "run a Pod with restartPolicy: OnFailure (or Never): kubectl run NAME --image=IMAGE --restart=Never"),
    Unserved("batch", "v1", "cronjobs", "CronJob", ("cj",), True,
             "use the node's cron to write a Pod manifest into the manifest directory"),
    Unserved("networking.k8s.io", "v1", "ingresses", "Ingress", ("ing",), True, _NETWORK),
    Unserved("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", ("netpol",), True,
             "pods share one bridge with no policy; keep untrusted pods on another node"),
)

GROUPS: dict[str, str] = {"apps": "v1", "batch": "v1", "networking.k8s.io": "v1"}


def message(kind: Unserved, what: str) -> str:
    return (f"{what}: this API is a single node's (minikubelet): it serves {SERVED}, not {kind.resource}; "
            f"{kind.instead}; {README}")


def _prefix(kind: Unserved) -> str:
    return "/api/v1" if not kind.group else f"/apis/{kind.group}/{kind.version}"


def _resource_entry(kind: Unserved) -> dict[str, Any]:
    out: dict[str, Any] = {"name": kind.resource, "singularName": kind.singular, "namespaced": kind.namespaced,
                           "kind": kind.kind, "verbs": []}
    if kind.short_names:
        out["shortNames"] = list(kind.short_names)
    return out


def core_resources() -> list[dict[str, Any]]:
    """Entries for ``/api/v1``'s APIResourceList (no verbs: listed so kubectl sends a request and reads why)."""
    return [_resource_entry(k) for k in KINDS if not k.group]


def aggregated_core() -> list[dict[str, Any]]:
    return [_aggregated(k) for k in KINDS if not k.group]


def _aggregated(kind: Unserved) -> dict[str, Any]:
    out: dict[str, Any] = {"resource": kind.resource,
                           "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
                           "scope": "Namespaced" if kind.namespaced else "Cluster",
                           "singularResource": kind.singular, "verbs": []}
    if kind.short_names:
        out["shortNames"] = list(kind.short_names)
    return out


def groups() -> list[dict[str, Any]]:
    """APIGroup entries of the legacy ``/apis``."""
    out = []
    for name, version in GROUPS.items():
        gv = {"groupVersion": f"{name}/{version}", "version": version}
        out.append({"name": name, "versions": [gv], "preferredVersion": gv})
    return out


def aggregated_groups() -> list[dict[str, Any]]:
    """APIGroupDiscovery entries of the aggregated ``/apis``."""
    return [{"metadata": {"name": name, "creationTimestamp": None},
             "versions": [{"version": version, "freshness": "Current",
                           "resources": [_aggregated(k) for k in KINDS if k.group == name]}]}
            for name, version in GROUPS.items()]


def _group_resource_list(name: str, version: str) -> web.RouteDef:
    body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{name}/{version}",
            "resources": [_resource_entry(k) for k in KINDS if k.group == name]}

    async def handle(_request: web.Request) -> web.Response:
        return web.json_response(body)

    return web.get(f"/apis/{name}/{version}", handle)


def _warning(text: str) -> str:
    """A Warning header as the API server writes it (RFC 7234 299); kubectl prints ``Warning: <text>``."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _empty_list(kind: Unserved, request: web.Request) -> web.Response:
    meta = {"resourceVersion": "0"}
    if "as=Table" in request.headers.get("Accept", ""):
        body: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                                "columnDefinitions": [{"name": "Name", "type": "string", "format": "name",
                                                       "description": "Name", "priority": 0}], "rows": []}
        response = typed_json(body, "application/json;as=Table;v=v1;g=meta.k8s.io")
    else:
        api_version = kind.version if not kind.group else f"{kind.group}/{kind.version}"
        body = {"kind": f"{kind.kind}List", "apiVersion": api_version, "metadata": meta, "items": []}
        response = web.json_response(body)
    response.headers["Warning"] = _warning(message(kind, f"there are no {kind.resource} here"))
    return response


def _handler(kind: Unserved, item: bool) -> web.RouteDef:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and not item:
            return _empty_list(kind, request)
        if request.method == "GET":
            name = request.match_info["name"]
            return status(404, "NotFound", message(kind, f'{kind.resource} "{name}" not found'),
                          details={"name": name, "kind": kind.resource, **({"group": kind.group} if kind.group
                                                                            else {})})
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(request.method,
                                                                                            request.method.lower())
        return status(405, "MethodNotAllowed", message(kind, f"cannot {verb} {kind.resource}"),
                      details={"kind": kind.resource, **({"group": kind.group} if kind.group else {})})

    base = _prefix(kind) + ("/namespaces/{namespace}" if kind.namespaced else "") + "/" + kind.resource
    return web.route("*", base + ("/{name}" if item else ""), handle)


async def create_namespace(request: web.Request) -> web.Response:
    return status(405, "MethodNotAllowed",
                  "namespaces cannot be created or deleted on this node (minikubelet): a namespace exists as soon "
                  "as a pod names it in metadata.namespace (kubectl create -f pod.yaml -n NAME, or kubectl run NAME "
                  f"--image=IMAGE -n NAME); {README}", details={"kind": "namespaces"})


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for kind in KINDS:
        out += [_handler(kind, False), _handler(kind, True)]
        if kind.namespaced:  # the all-namespaces list (kubectl get svc -A)
            out.append(web.get(f"{_prefix(kind)}/{kind.resource}", _handler(kind, False).handler))
    for name, version in GROUPS.items():
        out.append(_group_resource_list(name, version))
    out += [web.post("/api/v1/namespaces", create_namespace), web.delete("/api/v1/namespaces/{namespace}",
                                                                          create_namespace)]
    return out
