"""Pod routes: list/get (JSON or Table, selectors, watch), create and delete (PATCH lives in ``podpatch``).

Reads come from the pod workers; writes go to the manifest directory through ``ManifestStore`` and then wait
(bounded) until the FileSource has loaded the change and the pod workers reflect it (issue 4, point 1).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from minikubelet.api import watch
from minikubelet.api.errors import (
    ApiError,
    already_exists,
    bad_request,
    invalid,
    not_found_error,
    strict_decoding,
    typed_json,
    unknown_fields,
)
from minikubelet.api.selectors import FieldMatcher, LabelMatcher, field_selector, label_selector
from minikubelet.api.tables import POD_COLUMNS, TABLE_CONTENT_TYPE, pod_row, table
from minikubelet.api.warnings import with_unenforced
from minikubelet.errors import ManifestError
from minikubelet.manifests.manifest import MAX_NESTING, nesting_problem, pod_from_dict
from minikubelet.manifests.store import StoreError, clean_document
from minikubelet.manifests.validation import is_dns1123_label, is_dns1123_subdomain
from minikubelet.pod.spec import Pod
from minikubelet.pod.worker import PodWorker

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext

log = logging.getLogger(__name__)

POD_FIELDS = ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "status.phase", "status.podIP", "status.nominatedNodeName")
WAIT_SECONDS = 10.0
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


# ----- request helpers (shared with nodes.py and events.py) ------------------------------------------------------


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def table_response(body: dict[str, Any]) -> web.Response:
    return typed_json(body, TABLE_CONTENT_TYPE)


def check_namespace(namespace: str) -> str:
    if is_dns1123_label(namespace):
        raise ApiError(400, "BadRequest", f'invalid namespace "{namespace}": must be a lowercase RFC 1123 label')
    return namespace


def check_name(kind: str, name: str) -> str:
    if is_dns1123_subdomain(name):
        raise ApiError(400, "BadRequest", f'invalid {kind} name "{name}": must be a lowercase RFC 1123 subdomain')
    return name


def is_true(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a list request asks for: its namespace (None: all), selectors and whether it is a watch."""

    namespace: str | None
    labels: LabelMatcher
    fields: FieldMatcher
    watch: bool


def list_query(request: web.Request, field_names: tuple[str, ...], resource: str) -> ListQuery:
    """The namespace (checked), ``labelSelector``, ``fieldSelector`` (over ``field_names``) and ``watch`` of a list
    request; 400 for a bad namespace or selector."""
    ns = request.match_info.get("namespace")
    if ns is not None:
        check_namespace(ns)
    q = request.query
    labels = label_selector(q.get("labelSelector"))
    return ListQuery(ns, labels, field_selector(q.get("fieldSelector"), field_names, resource), is_true(q.get("watch")))


async def read_object(request: web.Request, kinds: tuple[str, ...], what: str) -> Any:
    """The request body as JSON (or YAML for application/yaml): 415 for another type, 413 over 1 MiB, 400 if bad."""
    ctype = request.content_type
    if ctype == "application/vnd.kubernetes.protobuf":  # kubectl debug --copy-to and debug node/NAME send these
        raise ApiError(415, "UnsupportedMediaType",
                       f"{what}: this API reads JSON and YAML bodies, not protobuf (what kubectl debug --copy-to and "
                       "kubectl debug node/NAME send): to debug a copy, kubectl get pod NAME -o yaml > copy.yaml, "
                       "edit its name and command, then kubectl create -f copy.yaml; to debug the node, you are on it "
                       "(nsenter and the host's tools work there); see 'Not supported' in minikubelet's README")
    if ctype not in kinds:
        accepted = ", ".join(kinds)
        raise ApiError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - accepted media types include: {accepted}')
    raw = await request.read()  # aiohttp refuses bodies over client_max_size (1 MiB) with 413
    try:
        if ctype.endswith("yaml"):  # application/yaml, application/apply-patch+yaml (JSON is YAML too)
            obj = yaml.safe_load(raw.decode("utf-8"))
        else:
            obj = json.loads(raw)
    except RecursionError:
        raise bad_request(f"{what}: the request body nests maps and lists more than {MAX_NESTING} levels deep; "
                          "a Pod needs far fewer") from None
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"{what}: the request body is not valid {ctype.split('/')[-1]}: {e}") from None
    deep = nesting_problem(obj)
    if deep is not None:
        raise bad_request(f"{what}: the request body is refused: {deep.replace('the document ', '', 1)}")
    return obj


def validated_pod(server: ApiContext, doc: dict[str, Any], path: Path, name: str, strict: bool) -> Pod:
    """Validate a manifest document as the FileSource will: 400 for unknown fields, 422 for invalid values."""
    try:
        return pod_from_dict(copy.deepcopy(doc), str(path), server.node_name, strict=True)
    except ManifestError as e:
        unknown = unknown_fields(e.problems)
        if unknown and strict:  # the API server fails decoding before it validates
            raise strict_decoding("Pod", unknown) from None
        others = [p for p in e.problems if p.split(": ", 1)[0] not in unknown]
        raise invalid("Pod", name, others or e.problems) from None


def drop_unknown(server: ApiContext, doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """For fieldValidation Ignore/Warn: the document without unknown fields (the file must load strictly)."""
    try:
        pod = pod_from_dict(copy.deepcopy(doc), str(path), server.node_name, strict=False)
    except ManifestError as e:
        raise invalid("Pod", str((doc.get("metadata") or {}).get("name", "")), e.problems) from None
    return clean_document(pod.manifest)


async def wait_for_worker(server: ApiContext, namespace: str, name: str, pod: Pod, path: Path) -> PodWorker:
    """Until the FileSource loaded ``pod`` and its worker shows it (same uid, labels, annotations)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        w = server.find_pod(namespace, name)
        if w is not None and w.pod.uid == pod.uid and w.pod.labels == pod.labels and \
                w.pod.annotations == pod.annotations:
            return w
        error = server.manifest_errors().get(str(path))
        if error is not None and time.monotonic() > deadline - WAIT_SECONDS + 0.5:
            raise ApiError(500, "InternalError", f"the manifest was written but not loaded: {error}")
        if time.monotonic() > deadline:
            raise ApiError(504, "Timeout", f"the manifest {path} was written but the pod did not appear within "
                           f"{WAIT_SECONDS:.0f} s; check the daemon log")
        await asyncio.sleep(0.01)


# ----- reads -----------------------------------------------------------------------------------------------------


async def list_pods(server: ApiContext, request: web.Request) -> web.StreamResponse:
    query = list_query(request, POD_FIELDS, "pods")
    ns, labels, fields = query.namespace, query.labels, query.fields
    if query.watch:
        return await watch_pods(server, request, ns, labels, fields)
    version = server.version()
    pods = [server.snapshot(w) for w in server.workers() if ns is None or w.pod.namespace == ns]
    pods = [p for p in pods if labels(p["metadata"].get("labels") or {}) and fields(p)]
    if wants_table(request):
        now = time.time()
        return table_response(table(POD_COLUMNS, [pod_row(p, now) for p in pods], version))
    return web.json_response({"kind": "PodList", "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(version)}, "items": pods})


async def watch_pods(server: ApiContext, request: web.Request, ns: str | None, labels: LabelMatcher,
                     fields: FieldMatcher) -> web.StreamResponse:
    q = request.query
    rv = q.get("resourceVersion", "")
    send_initial = is_true(q.get("sendInitialEvents"))
    since = int(rv) if rv.isdigit() and rv != "0" else None
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds", "").isdigit() else None
    watcher = watch.Watcher(ns, labels, fields, wants_table(request))
    current = [server.snapshot(w) for w in server.workers()]
    server.hub.add(watcher, None if send_initial else since, current, initial=send_initial or since is None)
    log.debug("Watch started namespace=%s resourceVersion=%s initial=%s", ns, rv, send_initial)
    return await watch.serve(request, server.hub, watcher, server.version, send_initial, timeout)


async def get_pod(server: ApiContext, request: web.Request) -> web.Response:
    ns = check_namespace(request.match_info["namespace"])
    name = check_name("pod", request.match_info["name"])
    w = server.find_pod(ns, name)
    if w is None:
        raise not_found_error("pods", name)
    pod = server.snapshot(w)
    if wants_table(request):
        return table_response(table(POD_COLUMNS, [pod_row(pod, time.time())], int(pod["metadata"]["resourceVersion"])))
    return web.json_response(pod)


# ----- writes ----------------------------------------------------------------------------------------------------


def new_document(body: Any, ns: str) -> tuple[str, dict[str, Any]]:
    """(name, manifest document) of an object to create in ``ns``: 400/422 when it cannot be one."""
    if not isinstance(body, dict):
        raise bad_request('Pod in version "v1" cannot be handled as a Pod: the body must be a JSON object')
    if body.get("kind") not in (None, "Pod") or body.get("apiVersion") not in (None, "v1"):
        raise bad_request(f"the object provided is unrecognized (must be of type Pod): it is a "
                          f"{body.get('apiVersion') or '(no apiVersion)'} {body.get('kind') or '(no kind)'}")
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        raise invalid("Pod", "", ["metadata.name: Required value: name or generateName is required"])
    if meta.get("namespace") not in (None, "", ns):
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise invalid("Pod", "", ["metadata.name: Required value: name or generateName is required"])
    doc = clean_document(body)
    doc["metadata"]["namespace"] = ns
    return name, doc


async def create_locked(server: ApiContext, ns: str, name: str, doc: dict[str, Any], strict: bool) -> PodWorker:
    """Write a new pod's file and wait for its worker; the caller holds ``server.write_lock``."""
    if problems := is_dns1123_subdomain(name):
        raise invalid("Pod", name, [f'metadata.name: Invalid value: "{name}": {p}' for p in problems])
    path = server.store.path_for(ns, name)
    if not strict:
        doc = drop_unknown(server, doc, path)
    pod = validated_pod(server, doc, path, name, strict)
    existing = server.find_pod(ns, name)
    if existing is not None or server.defined(ns, name) is not None or path.exists():
        prefix = "object is being deleted: " if existing is not None and existing.state.terminating else ""
        raise already_exists("pods", name, f'{prefix}pods "{name}" already exists')
    try:
        server.store.create(ns, name, doc)
    except FileExistsError:
        raise already_exists("pods", name) from None
    w = await wait_for_worker(server, ns, name, pod, path)
    log.info("Pod created through the API pod=%s/%s uid=%s file=%s", ns, name, pod.uid, path)
    return w


async def create_pod(server: ApiContext, request: web.Request) -> web.Response:
    ns = check_namespace(request.match_info["namespace"])
    body = await read_object(request, ("application/json", "application/yaml"), "create pod")
    name, doc = new_document(body, ns)
    strict = request.query.get("fieldValidation", "Strict") == "Strict"
    async with server.write_lock:
        w = await create_locked(server, ns, name, doc, strict)
    return with_unenforced(web.json_response(server.snapshot(w), status=201), w.pod.manifest)


async def delete_pod(server: ApiContext, request: web.Request) -> web.Response:
    ns = check_namespace(request.match_info["namespace"])
    name = check_name("pod", request.match_info["name"])
    options: Any = {}
    if request.can_read_body:
        options = await read_object(request, ("application/json",), "delete pod") or {}
    if not isinstance(options, dict):
        raise bad_request("DeleteOptions must be a JSON object")
    grace = options.get("gracePeriodSeconds", request.query.get("gracePeriodSeconds"))
    try:
        grace_seconds = None if grace is None else max(0, int(grace))
    except (TypeError, ValueError):
        raise bad_request(f"gracePeriodSeconds: invalid value {grace!r}") from None
    async with server.write_lock:
        w = server.find_pod(ns, name)
        if w is None:
            raise not_found_error("pods", name)
        pre = options.get("preconditions")
        uid = pre.get("uid") if isinstance(pre, dict) else None
        if uid and uid != w.pod.uid:
            raise ApiError(409, "Conflict", f'Precondition failed: UID in precondition: {uid}, UID in object meta: '
                           f'{w.pod.uid}', {"name": name, "kind": "pods"})
        if w.state.terminating is None:
            if (defined := server.defined(ns, name)) is not None:
                try:
                    server.store.remove(Path(defined.source), ns, name)
                except (StoreError, OSError) as e:
                    raise ApiError(409, "Conflict", f'pods "{name}" could not be deleted: {e}') from None
            w.terminate(grace_seconds, "Stopping container (pod deleted through the API)")
        elif grace_seconds is not None:
            w.terminate(grace_seconds)
    log.info("Pod deleted through the API pod=%s/%s uid=%s grace=%s", ns, name, w.pod.uid, grace_seconds)
    return web.json_response(server.snapshot(w))
