"""Bearer-token access control for the API (issue 4, point 8).

Every route needs ``Authorization: Bearer <token>`` except ``/healthz`` (open, as on the kubelet), loopback
included: ``/pods``, ``/events`` and ``/manifests/errors`` hold every pod's spec and environment, and any local user
can reach loopback (the kubelet's read-only port is off by default for this reason; issue 9, point 4). People read
them with ``minikubelet get pods|events|manifest-errors`` or ``curl -H "Authorization: Bearer $(cat TOKEN)"``.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from minikubelet.api.errors import status

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/healthz/ping"})


def auth_middleware(token: str | None) -> web.middleware:  # type: ignore[valid-type]
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if expected is None or path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").strip().encode()
        if not hmac.compare_digest(given, expected):
            log.info("Unauthorized request method=%s path=%s remote=%s", request.method, path, request.remote)
            return status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    return check
