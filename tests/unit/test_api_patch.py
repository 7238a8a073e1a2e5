from __future__ import annotations

from typing import Any

import pytest

from minikubelet.api import jsonpatch
from minikubelet.api.patch import PatchError, apply_patch, changes, merge_patch, replay, strategic_merge_patch

POD: dict[str, Any] = {
    "metadata": {"name": "redis", "labels": {"tier": "backend", "keep": "me"}},
    "spec": {
        "containers": [
            {
                "name": "redis",
                "image": "redis:7",
                "ports": [{"containerPort": 6379}],
                "env": [{"name": "A", "value": "1"}],
            },
            {"name": "side", "image": "busybox"},
        ]
    },
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
        "spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "redis"}],
            "containers": [
                {
                    "name": "redis",
                    "image": "redis:8",
                    "env": [{"name": "B", "value": "2"}],
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                }
            ],
        },
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


def test_json_patch_operations_and_pointers() -> None:
    doc: dict[str, Any] = {"metadata": {"labels": {"a/b": "1", "t~x": "2"}}, "list": [1, 2]}
    ops = [
        {"op": "add", "path": "/metadata/labels/new", "value": "v"},
        {"op": "replace", "path": "/metadata/labels/a~1b", "value": "slash"},
        {"op": "remove", "path": "/metadata/labels/t~0x"},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "add", "path": "/list/0", "value": 0},
        {"op": "copy", "from": "/list", "path": "/copy"},
        {"op": "move", "from": "/copy/3", "path": "/moved"},
        {"op": "test", "path": "/list", "value": [0, 1, 2, 3]},
        {"op": "test", "path": "/absent", "value": None},
    ]
    out = jsonpatch.apply(doc, jsonpatch.decode(ops))
    assert out == {
        "metadata": {"labels": {"a/b": "slash", "new": "v"}},
        "list": [0, 1, 2, 3],
        "copy": [0, 1, 2],
        "moved": 3,
    }
    assert doc["list"] == [1, 2] and "new" not in doc["metadata"]["labels"]  # input untouched
    assert jsonpatch.parse_pointer("/a~01/~1b/") == ["a~1", "/b", ""]
    assert jsonpatch.apply({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]


@pytest.mark.parametrize(
    "op",
    [
        {"op": "test", "path": "/a", "value": 2},
        {"op": "test", "path": "/a", "value": True},  # JSON true is not 1
        {"op": "test", "path": "/missing", "value": "x"},
        {"op": "remove", "path": "/missing"},
        {"op": "replace", "path": "/missing", "value": 1},
        {"op": "add", "path": "/no/such/parent", "value": 1},
        {"op": "add", "path": "/l/5", "value": 1},
        {"op": "add", "path": "/l/01", "value": 1},
        {"op": "remove", "path": "/l/-"},
        {"op": "move", "from": "/l", "path": "/l/0"},
        {"op": "add", "path": "a", "value": 1},
        {"op": "add", "value": 1},
        {"op": "add", "path": "/x"},
        {"op": "bogus", "path": "/a"},
    ],
    ids=lambda op: f"{op['op']} {op.get('path', '')}",
)
def test_json_patch_failures(op: dict[str, Any]) -> None:
    with pytest.raises(jsonpatch.PatchApplyError):
        jsonpatch.apply({"a": 1, "l": [1]}, [op])


def test_json_patch_decode() -> None:
    with pytest.raises(jsonpatch.PatchDecodeError, match="cannot unmarshal object"):
        jsonpatch.decode({"op": "add"})
    with pytest.raises(jsonpatch.PatchDecodeError, match="cannot unmarshal string"):
        jsonpatch.decode(["add"])
    with pytest.raises(jsonpatch.PatchDecodeError, match="maximum operations"):
        jsonpatch.apply({}, [{"op": "test", "path": "", "value": {}}] * (jsonpatch.MAX_OPERATIONS + 1))


def test_changes_replayed_onto_the_manifest() -> None:
    manifest = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    live = {
        "metadata": {"name": "p", "uid": "u", "resourceVersion": "7"},
        "spec": {
            "restartPolicy": "Always",
            "containers": [
                {"name": "c", "image": "i", "imagePullPolicy": "X", "ports": [{"containerPort": 1, "protocol": "TCP"}]}
            ],
        },
        "status": {"phase": "Running"},
    }
    after = jsonpatch.apply(
        live,
        [
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "j"},
            {"op": "replace", "path": "/spec/restartPolicy", "value": "Never"},
            {"op": "remove", "path": "/spec/containers/0/imagePullPolicy"},
            {"op": "add", "path": "/spec/containers/0/ports/-", "value": {"containerPort": 2}},
        ],
    )
    edits = changes(live, after)
    out = replay(manifest, edits, after)
    assert out == {
        "metadata": {"name": "p", "labels": {"a": "b"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "c", "image": "j", "ports": [{"containerPort": 1, "protocol": "TCP"}, {"containerPort": 2}]}
            ],
        },
    }
    assert manifest["spec"]["containers"][0] == {"name": "c", "image": "i"}
    assert changes(live, live) == []
    assert changes({"a": 1}, {"a": True}) == [(("a",), False, True)]


def test_server_side_apply_owns_what_it_names() -> None:
    live = {
        "metadata": {"name": "p", "labels": {"tier": "backend", "team": "a"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "s"},
            ]
        },
    }
    applied = {
        "metadata": {"name": "p", "labels": {"tier": "frontend", "$patch": "x"}},
        "spec": {"containers": [{"name": "c", "image": "j", "env": [{"name": "B", "value": "2"}]}]},
    }
    out = apply_patch(live, applied)
    assert out["metadata"]["labels"] == {"tier": "frontend", "team": "a"}
    assert out["spec"]["containers"] == [
        {"name": "c", "image": "j", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "side", "image": "s"},
    ]
    assert apply_patch(live, {"metadata": {"labels": {"team": None}}})["metadata"]["labels"] == {"tier": "backend"}
    with pytest.raises(PatchError):
        apply_patch(live, {"spec": {"containers": [{"image": "nameless"}]}})
