"""Bearer-token access control for the API (issue 4, point 8).

Every route needs ``Authorization: Bearer <token>`` except ``/healthz`` (open, as on the kubelet). The read-only
debug endpoints ``/pods``, ``/events``, ``/manifests/errors`` and ``/debug/probes`` are open while the daemon
listens on loopback only and need the token as soon as it listens beyond it.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from minikubelet.api.errors import status

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/healthz/ping"})
DEBUG_PATHS = frozenset({"/pods", "/pods/", "/events", "/manifests/errors", "/debug/probes", "/metrics/probes"})


def auth_middleware(token: str | None, loopback: bool) -> web.middleware:  # type: ignore[valid-type]
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if expected is None or path in OPEN_PATHS or (loopback and path in DEBUG_PATHS):
            return await handler(request)
        given = request.headers.get("Authorization", "").strip().encode()
        if not hmac.compare_digest(given, expected):
            log.info("Unauthorized request method=%s path=%s remote=%s", request.method, path, request.remote)
            return status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    return check
