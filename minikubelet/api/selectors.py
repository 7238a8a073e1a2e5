"""Label selectors (equality, ``!=``, ``in``/``notin``, ``key``/``!key``) and field selectors, as the API server parses
them from ``?labelSelector=`` and ``?fieldSelector=``. Pure functions; a bad selector raises ``ApiError`` (400)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from minikubelet.api.errors import ApiError, bad_request

LabelMatcher = Callable[[Mapping[str, str]], bool]
FieldMatcher = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*(!?)\s*({_KEY})\s+(in|notin)\s+\(([^()]*)\)\s*$")
_CMP = re.compile(rf"^\s*({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    if depth != 0:
        raise bad_request(f'unable to parse requirement: unbalanced parentheses in "{selector}"')
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> LabelMatcher:
    if m := _SET.match(text):
        if m.group(1):
            raise bad_request(f'unable to parse requirement: "{text.strip()}": "!" is only valid before a key')
        key, op = m.group(2), m.group(4)
        values = {v.strip() for v in m.group(5).split(",") if v.strip()}
        if not values:
            raise bad_request(f'unable to parse requirement: "{text.strip()}": for \'{op}\' set operator, '
                              "the set of values must be non-empty")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP.match(text):
        key, op, value = m.group(1), m.group(3), m.group(4)
        if op in ("=", "=="):
            return lambda labels: labels.get(key) == value
        if op == "!=":
            return lambda labels: labels.get(key) != value
        if not value.lstrip("-").isdigit():
            raise bad_request(f'unable to parse requirement: "{text.strip()}": for \'{op}\', value must be an integer')
        number = int(value)
        return lambda labels: _int(labels.get(key)) is not None and (
            (_int(labels.get(key)) or 0) > number if op == ">" else (_int(labels.get(key)) or 0) < number)
    if m := _EXISTS.match(text):
        key = m.group(2)
        if m.group(1):
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f'unable to parse requirement: invalid label selector "{text.strip()}"')


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def label_selector(selector: str | None) -> LabelMatcher:
    """A predicate over a label map; an empty selector matches everything."""
    if not selector or not selector.strip():
        return lambda _labels: True
    reqs = [_requirement(part) for part in _split(selector)]
    return lambda labels: all(r(labels) for r in reqs)


def lookup(obj: Mapping[str, Any], path: str) -> str:
    """The string at a dotted path of a JSON object ('' when missing)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def field_selector(selector: str | None, allowed: tuple[str, ...], kind: str) -> FieldMatcher:
    """A predicate over a JSON object for ``path=value,path!=value`` terms; unknown paths are a 400."""
    if not selector or not selector.strip():
        return lambda _obj: True
    terms: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if m is None:
            raise bad_request(f'invalid field selector: "{part}": expected path=value')
        path, op, value = m.group(1), m.group(2), m.group(3)
        if path not in allowed:
            known = ", ".join(f'"{a}"' for a in allowed)
            raise ApiError(400, "BadRequest", f'"{path}" is not a known field selector: only {known}')
        terms.append((path, op != "!=", value))
    return lambda obj: all((lookup(obj, p) == v) == eq for p, eq, v in terms)
