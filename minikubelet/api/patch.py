"""JSON merge patch (RFC 7386, ``kubectl label``), strategic merge patch (``kubectl apply``, contract §7), the
server-side apply approximation (``kubectl apply --server-side``) and the replay of a JSON patch's effect onto a
manifest document.

Pure functions on JSON values; none mutates its inputs.

**Server-side apply, approximated.** There is no ``managedFields`` bookkeeping: the applied configuration owns
exactly the fields it names. Maps merge recursively, the keyed lists of ``MERGE_KEYS`` merge item by item on their
key, other lists and scalars are replaced, and ``null`` removes a field. Fields the applied configuration leaves out
are kept (also the ones an earlier apply set), and there are no conflicts between field managers (``force`` is
irrelevant). To drop a field, remove it with ``kubectl apply`` (client-side), ``kubectl patch`` or in the file.
"""

from __future__ import annotations

import copy
from typing import Any

# list field name -> merge key (the Pod's strategic-merge keys that kubectl relies on)
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "conditions": "type",
    "readinessGates": "conditionType",
    "hostAliases": "ip",
}


class PatchError(ValueError):
    """The patch cannot be applied (wrong shape)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge: maps merge, null deletes, keyed lists merge by their merge key, ``$`` directives honoured."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value if isinstance(value, list) else []
        elif key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [v for v in result[name] if v not in value]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _merge_list(result.get(key), value, MERGE_KEYS[key])
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    for name, order in orders.items():
        if name in MERGE_KEYS and isinstance(result.get(name), list):
            result[name] = _reorder(result[name], order, MERGE_KEYS[name])
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def apply_patch(live: Any, applied: Any) -> Any:
    """Server-side apply (approximated, see the module doc): ``applied`` merged into ``live``, keyed lists by key."""
    return strategic_merge_patch(live, _without_directives(applied))


def _without_directives(value: Any) -> Any:
    """An applied configuration is plain data: ``$patch``-style keys are not directives there, they are dropped."""
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not str(k).startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return value


Path = tuple[str | int, ...]  # a JSON path: map keys and list indexes


def changes(before: Any, after: Any, path: Path = ()) -> list[tuple[Path, bool, Any]]:
    """What turned ``before`` into ``after``: (path, removed, new value), through maps and equal-length lists."""
    if _same(before, after):
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out = [((*path, k), True, None) for k in before if k not in after]
        for k, v in after.items():
            out += changes(before[k], v, (*path, k)) if k in before else [((*path, k), False, copy.deepcopy(v))]
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [c for i, (b, a) in enumerate(zip(before, after, strict=True)) for c in changes(b, a, (*path, i))]
    return [(path, False, copy.deepcopy(after))]


def replay(doc: dict[str, Any], edits: list[tuple[Path, bool, Any]], after: Any) -> dict[str, Any]:
    """``doc`` (a manifest: the live object without defaults and status) with ``edits`` made to it.

    A path the document lacks is created through maps; where it cannot be followed (a list the document does not
    have), the whole subtree is taken from ``after``. Removing what the document does not have is a no-op (it was a
    server default or status).
    """
    out: dict[str, Any] = copy.deepcopy(doc)
    for path, removed, value in edits:
        node: Any = out
        for depth, key in enumerate(path[:-1]):
            nxt = _child(node, key)
            if nxt is None:
                if removed:
                    break
                if not (isinstance(node, dict) and isinstance(key, str)):
                    _put(out, path[:depth], copy.deepcopy(_at(after, path[:depth])))
                    break
                if not isinstance(path[depth + 1], str):
                    node[key] = copy.deepcopy(_at(after, path[:depth + 1]))
                    break
                nxt = node[key] = {}
            node = nxt
        else:
            last = path[-1] if path else None
            if last is None:
                continue
            if removed:
                if isinstance(node, dict):
                    node.pop(last, None)
                elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                    node.pop(last)
            elif isinstance(node, dict) and isinstance(last, str):
                node[last] = value
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                node[last] = value
            else:
                _put(out, path[:-1], copy.deepcopy(_at(after, path[:-1])))
    return out


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, dict) and isinstance(key, str):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _at(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def _put(doc: dict[str, Any], path: Path, value: Any) -> None:
    """Set ``path`` in ``doc`` (creating maps); a list on the way that is too short takes the value whole."""
    node: Any = doc
    for key in path[:-1]:
        nxt = _child(node, key)
        if nxt is None:
            nxt = {}
            if isinstance(node, dict):
                node[key] = nxt
        node = nxt
    if not path:
        return
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _merge_list(target: Any, patch: list[Any], key: str) -> list[Any]:
    out = copy.deepcopy(target) if isinstance(target, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"strategic merge patch: every item of a keyed list needs the merge key {key!r}")
        index = next((i for i, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[index] = strategic_merge_patch(out[index], item)
    return out


def _reorder(items: list[Any], order: list[Any], key: str) -> list[Any]:
    wanted = [o.get(key) for o in order if isinstance(o, dict)]
    rank = {k: i for i, k in enumerate(wanted)}
    listed = sorted((i for i in items if isinstance(i, dict) and i.get(key) in rank), key=lambda i: rank[i.get(key)])
    rest = [i for i in items if not (isinstance(i, dict) and i.get(key) in rank)]
    return listed + rest
