"""JSON merge patch (RFC 7386, ``kubectl label``) and strategic merge patch (``kubectl apply``, contract §7).

Pure functions on JSON values; neither mutates its inputs.
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
