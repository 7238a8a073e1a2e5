"""Kubernetes ``Status`` error responses: what kubectl prints as ``Error from server (<reason>): <message>``."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=code)


def not_found(kind: str, name: str) -> web.Response:
    return status(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})
