"""``Warning: 299`` headers for API writes of a pod that sets fields this node accepts but does not enforce."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from minikubelet.manifests.unenforced import unenforced, warning_header


def with_unenforced(response: web.Response, manifest: dict[str, Any]) -> web.Response:
    """Add one Warning header per accepted-but-not-enforced field of ``manifest`` (kubectl prints each)."""
    for note in unenforced(manifest):
        response.headers.add("Warning", warning_header(note))
    return response
