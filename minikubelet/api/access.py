"""``kubectl auth can-i`` and ``kubectl auth whoami``: the holder of the daemon's bearer token may do everything.

The daemon has one credential (``<data-dir>/kubeconfig``) and no RBAC: a request that got past authentication is the
node's administrator, so every SelfSubjectAccessReview is allowed and SelfSubjectReview names that one user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from minikubelet.api.errors import bad_request
from minikubelet.api.pods import read_object

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext

__all__ = ["USER", "access_review", "rules_review", "self_review"]

USER = "minikubelet-admin"
GROUPS = ["system:masters", "system:authenticated"]


async def _body(request: web.Request, kind: str, api_version: str) -> dict[str, Any]:
    """The review as JSON or YAML; kubectl sends these as protobuf, which is read and not decoded (the answer
    does not depend on what is asked) and answered in JSON, which kubectl also accepts."""
    if request.content_type not in ("application/json", "application/yaml"):
        await request.read()
        return {}
    body = await read_object(request, ("application/json", "application/yaml"), f"create {kind}")
    if not isinstance(body, dict) or body.get("kind", kind) != kind:
        raise bad_request(f"the body must be a {api_version} {kind}")
    return body


async def access_review(server: ApiContext, request: web.Request) -> web.Response:
    body = await _body(request, "SelfSubjectAccessReview", "authorization.k8s.io/v1")
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    return web.json_response({
        "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {}, "spec": spec,
        "status": {"allowed": True, "reason": "minikubelet: the holder of the node's token may do everything"}},
        status=201)


async def self_review(server: ApiContext, request: web.Request) -> web.Response:
    await _body(request, "SelfSubjectReview", "authentication.k8s.io/v1")
    return web.json_response({
        "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
        "status": {"userInfo": {"username": USER, "groups": GROUPS}}}, status=201)


async def rules_review(server: ApiContext, request: web.Request) -> web.Response:
    """``kubectl auth can-i --list``: everything, everywhere."""
    body = await _body(request, "SelfSubjectRulesReview", "authorization.k8s.io/v1")
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    return web.json_response({
        "kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {}, "spec": spec,
        "status": {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                   "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}},
        status=201)
