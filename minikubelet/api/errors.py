"""Kubernetes ``Status`` error responses: what kubectl prints as ``Error from server (<reason>): <message>``.

Handlers raise ``ApiError``; the middleware in ``app.py`` turns it (and any unexpected exception) into a Status.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

_CAUSE_REASONS = (
    ("Invalid value", "FieldValueInvalid"),
    ("Required value", "FieldValueRequired"),
    ("Forbidden", "FieldValueForbidden"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Duplicate value", "FieldValueDuplicate"),
    ("Too long", "FieldValueTooLong"),
)
_UNKNOWN_FIELD = re.compile(r'^(\S+): unknown field "')


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    body["details"] = details if details is not None else {}  # kubectl dereferences it (kubectl debug panicked)
    return body


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(status_body(code, reason, message, details), status=code)


def typed_json(body: Any, content_type: str, code: int = 200) -> web.Response:
    """A JSON body with a Content-Type that carries parameters (Table, aggregated discovery)."""
    return web.Response(body=json.dumps(body).encode(), status=code, headers={"Content-Type": content_type})


def not_found(kind: str, name: str) -> web.Response:
    return status(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})


class ApiError(Exception):
    """An error answer: raised anywhere in a handler, rendered as a Status by the error middleware."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def response(self) -> web.Response:
        return status(self.code, self.reason, self.message, self.details)


def not_found_error(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})


def already_exists(kind: str, name: str, message: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists", message or f'{kind} "{name}" already exists', {"name": name, "kind": kind})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def cause(problem: str) -> dict[str, str]:
    """``"path: Invalid value: ..."`` (validation.py's field.Error form) → a StatusCause."""
    field, sep, message = problem.partition(": ")
    if not sep:
        field, message = "", problem
    reason = next((r for prefix, r in _CAUSE_REASONS if message.startswith(prefix)), "FieldValueInvalid")
    return {"reason": reason, "message": message, "field": field}


def invalid(kind: str, name: str, problems: list[str]) -> ApiError:
    """422 Invalid, printed by kubectl as ``The Pod "x" is invalid: field: message``."""
    causes = [cause(p) for p in problems]
    listed = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {listed}',
                    {"name": name, "kind": kind, "causes": causes})


def unknown_fields(problems: list[str]) -> list[str]:
    """The field paths of the strict-decoding problems (``path: unknown field "x"``)."""
    return [m.group(1) for p in problems if (m := _UNKNOWN_FIELD.match(p))]


def strict_decoding(kind: str, fields: list[str]) -> ApiError:
    listed = ", ".join(f'unknown field "{f}"' for f in fields)
    return bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: strict decoding error: {listed}')
