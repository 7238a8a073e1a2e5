"""PATCH and PUT of a pod: ``kubectl label``/``apply``/``patch``/``replace`` and ``apply --server-side``.

The four patch types of the API server, told apart by Content-Type:

* ``application/merge-patch+json`` (RFC 7386) and ``application/strategic-merge-patch+json`` apply to the pod's
  manifest document as written in its file (no defaults, no status), so only what the patch names changes there;
* ``application/json-patch+json`` (RFC 6902) applies to the live object, as on a real API server (paths and ``test``
  see defaults, status and ``resourceVersion``); what it changed, outside status and server-set metadata, is then
  replayed onto the manifest document. An operation that does not apply answers 422 ``Invalid`` with the API
  server's generic message (the reason goes to the daemon log), a body that is not a patch 400;
* ``application/apply-patch+yaml`` (server-side apply, body JSON or YAML) creates the pod when it is missing (201)
  and otherwise merges the applied configuration into the document (``patch.apply_patch``: the applied
  configuration owns the fields it names; no field managers, no conflicts).

The result is validated like a file, written through ``ManifestStore`` (comments of hand-written files are kept) and
answered once the pod workers show it. A label-only change never restarts the pod; a spec change recreates it (the
file changed, README "The manifest directory"); invalid values answer 422.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from minikubelet.api import jsonpatch
from minikubelet.api.errors import ApiError, bad_request, invalid, not_found_error
from minikubelet.api.patch import PatchError, apply_patch, changes, merge_patch, replay, strategic_merge_patch
from minikubelet.api.pods import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_TYPES,
    check_name,
    check_namespace,
    create_locked,
    drop_unknown,
    new_document,
    read_object,
    validated_pod,
    wait_for_worker,
)
from minikubelet.api.warnings import with_unenforced
from minikubelet.manifests.store import SERVER_ANNOTATIONS, SERVER_METADATA, StoreError, clean_document
from minikubelet.pod.worker import PodWorker

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext

log = logging.getLogger(__name__)

Edit = Callable[[dict[str, Any], dict[str, Any]], Any]


async def patch_pod(server: ApiContext, request: web.Request) -> web.Response:
    ns = check_namespace(request.match_info["namespace"])
    name = check_name("pod", request.match_info["name"])
    ctype = request.content_type
    body = await read_object(request, PATCH_TYPES, "patch pod")
    strict = request.query.get("fieldValidation", "Strict") == "Strict"
    if ctype == APPLY_PATCH:
        return await server_side_apply(server, request, ns, name, body, strict)
    edit: Edit
    if ctype == JSON_PATCH:
        try:
            operations = jsonpatch.decode(body)
        except jsonpatch.PatchDecodeError as e:
            raise bad_request(str(e)) from None
        edit = json_patch_edit(ns, name, operations)
    elif not isinstance(body, dict):
        raise bad_request("the patch must be a JSON object")
    elif ctype == MERGE_PATCH:
        edit = lambda doc, live: merge_patch(doc, body)  # noqa: E731
    else:
        edit = lambda doc, live: strategic_merge_patch(doc, body)  # noqa: E731
    async with server.write_lock:
        w, path, doc = current(server, ns, name)
        try:
            new = edit(doc, copy.deepcopy(server.snapshot(w)))
        except PatchError as e:
            raise bad_request(str(e)) from None
        w = await store_patched(server, w, path, ns, name, doc, new, strict)
    return with_unenforced(web.json_response(server.snapshot(w)), w.pod.manifest)


def json_patch_edit(ns: str, name: str, operations: list[dict[str, Any]]) -> Edit:
    """The JSON patch applied to the live object, its changes replayed onto the manifest document."""

    def edit(doc: dict[str, Any], live: dict[str, Any]) -> Any:
        try:
            after = jsonpatch.apply(live, operations)
        except jsonpatch.PatchDecodeError as e:
            raise ApiError(413, "RequestEntityTooLarge", f"Request entity too large: {e}") from None
        except jsonpatch.PatchApplyError as e:
            log.info("JSON patch does not apply pod=%s/%s reason=%r", ns, name, str(e))
            raise ApiError(422, "Invalid", jsonpatch.FAILED_MESSAGE, {}) from None
        if not isinstance(after, dict):
            log.info("JSON patch does not apply pod=%s/%s reason=%r", ns, name, "the result is not an object")
            raise ApiError(422, "Invalid", jsonpatch.FAILED_MESSAGE, {})
        edits = [e for e in changes(live, after) if not server_owned(e[0])]
        return replay(doc, edits, after)

    return edit


def server_owned(path: tuple[str | int, ...]) -> bool:
    """Status and server-set metadata: a patch may not change them (as the API server resets them)."""
    if path[:1] == ("status",) or path[:2] == ("spec", "nodeName"):
        return True
    if path[:1] == ("metadata",) and len(path) > 1 and path[1] in SERVER_METADATA:
        return True
    return path[:2] == ("metadata", "annotations") and len(path) > 2 and str(path[2]) in SERVER_ANNOTATIONS


def current(server: ApiContext, ns: str, name: str) -> tuple[PodWorker, Path, dict[str, Any]]:
    """(live worker, its file, its document there): 404 when missing, 409 when it is going away."""
    w = server.find_pod(ns, name)
    if w is None:
        raise not_found_error("pods", name)
    defined = server.defined(ns, name)
    if w.state.terminating is not None or defined is None:
        raise ApiError(409, "Conflict", f'pods "{name}" is being deleted and can no longer be changed',
                       {"name": name, "kind": "pods"})
    path = Path(defined.source)
    try:
        return w, path, server.store.document(path, ns, name)
    except StoreError as e:
        raise ApiError(409, "Conflict", str(e), {"name": name, "kind": "pods"}) from None


async def store_patched(server: ApiContext, w: PodWorker, path: Path, ns: str, name: str, doc: dict[str, Any],
                        new: Any, strict: bool) -> PodWorker:
    """Validate the patched document, rewrite the pod's file if it changed, and wait for the workers to show it."""
    if not isinstance(new, dict):
        raise bad_request("the patch removed the whole object")
    new = clean_document(new)
    meta: dict[str, Any] = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
    if meta.get("name") != name or (meta.get("namespace") or ns) != ns:
        raise invalid("Pod", name, [f'metadata.name: Invalid value: "{meta.get("name")}": field is immutable'])
    if not strict:
        new = drop_unknown(server, new, path)
    pod = validated_pod(server, new, path, name, strict)
    if new == doc:
        return w
    old_uid = w.pod.uid
    try:
        server.store.replace(path, ns, name, new)
    except (StoreError, OSError) as e:
        raise ApiError(409, "Conflict", str(e), {"name": name, "kind": "pods"}) from None
    w = await wait_for_worker(server, ns, name, pod, path)
    log.info("Pod patched through the API pod=%s/%s uid=%s recreated=%s", ns, name, pod.uid, pod.uid != old_uid)
    return w


async def server_side_apply(server: ApiContext, request: web.Request, ns: str, name: str, body: Any,
                            strict: bool) -> web.Response:
    """``kubectl apply --server-side``: create the pod (201) or merge the applied configuration into it (200)."""
    if not request.query.get("fieldManager"):
        raise invalid("PatchOptions.meta.k8s.io", "", ["fieldManager: Required value: is required for apply patch"])
    if not isinstance(body, dict):
        raise bad_request("error decoding YAML: the applied configuration must be an object")
    if body.get("apiVersion") != "v1" or body.get("kind") != "Pod":
        raise bad_request(f'the applied configuration must have apiVersion "v1" and kind "Pod", not '
                          f'{body.get("apiVersion")!r} and {body.get("kind")!r}')
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("name") not in (None, name):
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
    body = {**body, "metadata": {**(meta if isinstance(meta, dict) else {}), "name": name}}
    _, applied = new_document(body, ns)
    async with server.write_lock:
        if server.find_pod(ns, name) is None and server.defined(ns, name) is None:
            w = await create_locked(server, ns, name, applied, strict)
            log.info("Pod created by server-side apply pod=%s/%s manager=%s", ns, name, request.query["fieldManager"])
            return with_unenforced(web.json_response(server.snapshot(w), status=201), w.pod.manifest)
        w, path, doc = current(server, ns, name)
        if "namespace" not in (doc.get("metadata") or {}):
            applied["metadata"].pop("namespace", None)  # the file leaves it to the default: keep it that way
        try:
            new = apply_patch(doc, applied)
        except PatchError as e:
            raise bad_request(str(e)) from None
        w = await store_patched(server, w, path, ns, name, doc, new, strict)
    return with_unenforced(web.json_response(server.snapshot(w)), w.pod.manifest)


async def replace_pod(server: ApiContext, request: web.Request) -> web.Response:
    """``kubectl replace -f``: PUT the whole object. Like the API server for pods, an update needs no
    resourceVersion; one that is given must be the current one (else 409). A missing pod is 404 (no create)."""
    ns = check_namespace(request.match_info["namespace"])
    name = check_name("pod", request.match_info["name"])
    body = await read_object(request, ("application/json", "application/yaml"), "replace pod")
    meta = body.get("metadata") if isinstance(body, dict) else None
    if isinstance(meta, dict) and meta.get("name") not in (None, name):
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
    wanted_version = str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""
    _, replacement = new_document(body, ns)
    strict = request.query.get("fieldValidation", "Strict") == "Strict"
    async with server.write_lock:
        w, path, doc = current(server, ns, name)
        live_version = server.snapshot(w)["metadata"]["resourceVersion"]
        if wanted_version and wanted_version != live_version:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           {"name": name, "kind": "pods"})
        if "namespace" not in (doc.get("metadata") or {}):
            replacement["metadata"].pop("namespace", None)  # the file leaves it to the default: keep it that way
        w = await store_patched(server, w, path, ns, name, doc, replacement, strict)
    return with_unenforced(web.json_response(server.snapshot(w)), w.pod.manifest)
