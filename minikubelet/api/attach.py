"""``pods/attach`` and ``pods/ephemeralcontainers``: not served yet (no stdin relay, no ephemeral containers), and
said so in a Status that names the pod, what to use instead and where the README says more, so ``kubectl attach``,
``kubectl run -it`` and ``kubectl debug`` print one clear sentence (never "could not find the requested resource",
never a panic: every Status carries ``details``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from minikubelet.api.errors import ApiError, not_found_error

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext

README = "see 'Not supported' in minikubelet's README"


def _pod(server: ApiContext, request: web.Request) -> tuple[str, str]:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    if server.find_pod(ns, name) is None:
        raise not_found_error("pods", name)
    return ns, name


async def handle(server: ApiContext, request: web.Request) -> web.StreamResponse:
    """``kubectl attach`` (and ``run -it``, which attaches): refused before any upgrade, naming the alternatives."""
    ns, name = _pod(server, request)
    flag = "" if ns == "default" else f" -n {ns}"
    raise ApiError(400, "BadRequest",
                   f'attaching to pod "{name}" is not supported by this node (minikubelet) yet: containers get no '
                   f"stdin or terminal; use kubectl logs -f{flag} {name} for its output, or kubectl exec -it{flag} "
                   f"{name} -- sh for a shell; {README}", {"name": name, "kind": "pods"})


async def ephemeral_containers(server: ApiContext, request: web.Request) -> web.StreamResponse:
    """``kubectl debug POD``: the subresource exists but adds nothing; 405 with the pod's name in ``details`` (a 404
    without a name would make kubectl say "ephemeral containers are disabled for this cluster")."""
    ns, name = _pod(server, request)
    flag = "" if ns == "default" else f" -n {ns}"
    raise ApiError(405, "MethodNotAllowed",
                   f'ephemeral containers (kubectl debug) are not supported by this node (minikubelet) yet, so none '
                   f'can be added to pod "{name}": use kubectl exec -it{flag} {name} -- sh, or add a debugging '
                   f"container to the pod's manifest; {README}", {"name": name, "kind": "pods"})
