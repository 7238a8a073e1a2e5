"""JSON Patch (RFC 6902: add, remove, replace, move, copy, test) with JSON Pointers (RFC 6901: ``~0``, ``~1``, ``-``).

Pure functions on JSON values; the input document is never mutated. ``decode`` raises ``PatchDecodeError`` for a
body that is not a list of operations (the API answers 400); ``apply`` raises ``PatchApplyError`` when an operation
does not apply (a failed ``test``, a missing path; the API answers 422 as kube-apiserver does).
"""

from __future__ import annotations

import copy
from typing import Any

MAX_OPERATIONS = 10000  # kube-apiserver's maxJSONPatchOperations
# What kube-apiserver answers (422 Invalid, empty details) when a JSON patch does not apply: apimachinery's
# NewGenericServerResponse message for 422; the reason itself is not sent.
FAILED_MESSAGE = "the server rejected our request due to an error in our request"
OPS = ("add", "remove", "replace", "move", "copy", "test")


class PatchDecodeError(ValueError):
    """The body is not a JSON Patch document."""


class PatchApplyError(ValueError):
    """An operation of the patch does not apply to the document."""


def decode(body: Any) -> list[dict[str, Any]]:
    """The operations of a decoded JSON body; each must be an object with a string ``op``."""
    if not isinstance(body, list):
        raise PatchDecodeError(f"json: cannot unmarshal {_json_type(body)} into Go value of type jsonpatch.Patch")
    for op in body:
        if not isinstance(op, dict):
            raise PatchDecodeError(f"json: cannot unmarshal {_json_type(op)} into Go value of type jsonpatch.Operation")
    return body


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


def parse_pointer(pointer: Any) -> list[str]:
    """``/a/b~1c/~0d`` → ``["a", "b/c", "~d"]``; ``""`` is the whole document."""
    if not isinstance(pointer, str):
        raise PatchApplyError("path is missing or not a string")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchApplyError(f'JSON pointer must be empty or start with a "/": {pointer!r}')
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _index(token: str, length: int, pointer: str, *, append: bool) -> int:
    if token == "-" and append:
        return length
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchApplyError(f"invalid array index {token!r} in {pointer}")
    index = int(token)
    if index > length or (index == length and not append):
        raise PatchApplyError(f"array index {index} out of bounds in {pointer}")
    return index


def _parent(doc: Any, parts: list[str], pointer: str) -> Any:
    """The container that holds the last token of ``parts``."""
    node = doc
    for token in parts[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchApplyError(f"doc is missing path: {pointer}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), pointer, append=False)]
        else:
            raise PatchApplyError(f"doc is missing path: {pointer}")
    return node


def _locate(doc: Any, pointer: str) -> tuple[Any, str] | None:
    """(parent container, last token) of ``pointer`` in ``doc``; None for the whole document (``""``)."""
    parts = parse_pointer(pointer)
    if not parts:
        return None
    return _parent(doc, parts, pointer), parts[-1]


def get(doc: Any, pointer: str) -> Any:
    located = _locate(doc, pointer)
    if located is None:
        return doc
    parent, token = located
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchApplyError(f"doc is missing key: {pointer}")
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(token, len(parent), pointer, append=False)]
    raise PatchApplyError(f"doc is missing path: {pointer}")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    located = _locate(doc, pointer)
    if located is None:
        return value
    parent, token = located
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(token, len(parent), pointer, append=True), value)
    else:
        raise PatchApplyError(f"add operation does not apply: doc is missing path: {pointer}")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    """(document, removed value)."""
    located = _locate(doc, pointer)
    if located is None:
        return None, doc
    parent, token = located
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchApplyError(f"remove operation does not apply: doc is missing key: {pointer}")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(token, len(parent), pointer, append=False))
    raise PatchApplyError(f"remove operation does not apply: doc is missing path: {pointer}")


def _replace(doc: Any, pointer: str, value: Any) -> Any:
    located = _locate(doc, pointer)
    if located is None:
        return value
    parent, token = located
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchApplyError(f"replace operation does not apply: doc is missing key: {pointer}")
        parent[token] = value
    elif isinstance(parent, list):
        parent[_index(token, len(parent), pointer, append=False)] = value
    else:
        raise PatchApplyError(f"replace operation does not apply: doc is missing path: {pointer}")
    return doc


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``, but ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _value(op: dict[str, Any], name: str) -> Any:
    if "value" not in op:
        raise PatchApplyError(f"{name} operation does not apply: missing value")
    return copy.deepcopy(op["value"])


def apply(doc: Any, operations: list[dict[str, Any]]) -> Any:
    """The document after every operation, in order (all or nothing: ``doc`` itself is untouched)."""
    if len(operations) > MAX_OPERATIONS:
        raise PatchDecodeError(f"The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, "
                               f"got {len(operations)}")
    out = copy.deepcopy(doc)
    for op in operations:
        kind = op.get("op")
        path = op.get("path")
        if kind == "add":
            out = _add(out, path if isinstance(path, str) else _missing("add"), _value(op, "add"))
        elif kind == "remove":
            out, _ = _remove(out, path if isinstance(path, str) else _missing("remove"))
        elif kind == "replace":
            out = _replace(out, path if isinstance(path, str) else _missing("replace"), _value(op, "replace"))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchApplyError(f"{kind} operation does not apply: missing from path")
            target = path if isinstance(path, str) else _missing(kind)
            if kind == "move":
                if target.startswith(source + "/"):
                    raise PatchApplyError(f"move operation does not apply: {source} is a prefix of {target}")
                out, value = _remove(out, source)
            else:
                value = copy.deepcopy(get(out, source))
            out = _add(out, target, value)
        elif kind == "test":
            target = path if isinstance(path, str) else _missing("test")
            try:
                current = get(out, target)
            except PatchApplyError:
                current = None
                if op.get("value") is not None:
                    raise PatchApplyError(f"testing value {target} failed: test failed") from None
            if not _equal(current, op.get("value")):
                raise PatchApplyError(f"testing value {target} failed: test failed")
        else:
            raise PatchApplyError(f"Unexpected kind: {kind}")
    return out


def _missing(kind: str) -> str:
    raise PatchApplyError(f"{kind} operation does not apply: missing path")
