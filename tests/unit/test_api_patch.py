from __future__ import annotations

from typing import Any

import pytest

from minikubelet.api.patch import PatchError, merge_patch, strategic_merge_patch

POD: dict[str, Any] = {
    "metadata": {"name": "redis", "labels": {"tier": "backend", "keep": "me"}},
    "spec": {"containers": [
        {"name": "redis", "image": "redis:7", "ports": [{"containerPort": 6379}], "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "busybox"}]},
}


def test_merge_patch_labels() -> None:
    out = merge_patch(POD, {"metadata": {"labels": {"app": "db", "tier": None}}})
    assert out["metadata"]["labels"] == {"keep": "me", "app": "db"}
    assert POD["metadata"]["labels"] == {"tier": "backend", "keep": "me"}  # input untouched
    assert merge_patch(POD, {"spec": {"containers": [{"name": "x"}]}})["spec"]["containers"] == [{"name": "x"}]
    assert merge_patch({"a": 1}, {"a": {"b": None}}) == {"a": {}}


def test_strategic_merge_by_key_and_directives() -> None:
    patch = {
        "metadata": {"annotations": {"last": "x"}, "labels": {"app": "db", "tier": None}},
        "spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "redis"}],
                 "containers": [{"name": "redis", "image": "redis:8", "env": [{"name": "B", "value": "2"}],
                                 "$setElementOrder/env": [{"name": "A"}, {"name": "B"}]}]},
    }
    out = strategic_merge_patch(POD, patch)
    assert out["metadata"] == {"name": "redis", "labels": {"keep": "me", "app": "db"}, "annotations": {"last": "x"}}
    assert [c["name"] for c in out["spec"]["containers"]] == ["side", "redis"]
    redis = out["spec"]["containers"][1]
    assert redis["image"] == "redis:8" and redis["ports"] == [{"containerPort": 6379}]
    assert redis["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert POD["spec"]["containers"][0]["image"] == "redis:7"


def test_strategic_delete_replace_and_primitive_lists() -> None:
    out = strategic_merge_patch(POD, {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["redis"]
    out = strategic_merge_patch(POD, {"spec": {"$patch": "replace", "containers": [{"name": "only"}]}})
    assert out["spec"] == {"containers": [{"name": "only"}]}
    out = strategic_merge_patch({"args": ["a", "b"]}, {"$deleteFromPrimitiveList/args": ["a"]})
    assert out == {"args": ["b"]}
    out = strategic_merge_patch({"command": ["a"]}, {"command": ["b", "c"]})  # unkeyed lists replace
    assert out == {"command": ["b", "c"]}
    with pytest.raises(PatchError):
        strategic_merge_patch(POD, {"spec": {"containers": [{"image": "no-name"}]}})
