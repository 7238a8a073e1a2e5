"""--write-kubeconfig-mode/--write-kubeconfig-group parsing and the merge of ``kubeconfig --user`` (pure logic; the
real thing, with a real user and kubectl, is tests/integration/test_access.py)."""

from __future__ import annotations

import grp
import os
from typing import Any

import pytest

from minikubelet.node.kubeconfig import _merged, parse_group, parse_mode


@pytest.mark.parametrize(("text", "mode"), [("600", 0o600), ("0644", 0o644), ("640", 0o640), ("0", 0)])
def test_mode_is_octal(text: str, mode: int) -> None:
    assert parse_mode(text) == mode


@pytest.mark.parametrize("text", ["rw-r--r--", "1777", "999", "", "0o644x"])
def test_bad_mode_names_the_flag_and_the_fix(text: str) -> None:
    with pytest.raises(ValueError, match="--write-kubeconfig-mode .*octal permission bits such as 600"):
        parse_mode(text)


def test_group_by_name_or_number() -> None:
    name = grp.getgrgid(os.getgid()).gr_name
    assert parse_group(name) == os.getgid()
    assert parse_group("4242") == 4242
    with pytest.raises(ValueError, match="no such group"):
        parse_group("no-such-group-mk")


OURS: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "current-context": "minikubelet",
        "clusters": [{"name": "minikubelet", "cluster": {"server": "https://127.0.0.1:10250"}}],
        "users": [{"name": "minikubelet", "user": {"token": "new"}}],
        "contexts": [{"name": "minikubelet", "context": {"cluster": "minikubelet", "user": "minikubelet"}}]}


def test_merge_replaces_ours_and_keeps_theirs() -> None:
    theirs = {"apiVersion": "v1", "kind": "Config", "current-context": "work", "preferences": {"colors": True},
              "clusters": [{"name": "work", "cluster": {}}, {"name": "minikubelet", "cluster": {"server": "old"}}],
              "users": [{"name": "minikubelet", "user": {"token": "old"}}],
              "contexts": [{"name": "work", "context": {}}]}
    out: dict[str, Any] = _merged(theirs, OURS)
    assert out["current-context"] == "minikubelet" and out["preferences"] == {"colors": True}
    assert out["clusters"] == [{"name": "work", "cluster": {}}, *OURS["clusters"]]
    assert out["users"] == OURS["users"]
    assert [c["name"] for c in out["contexts"]] == ["work", "minikubelet"]


@pytest.mark.parametrize("theirs", [None, "text", []])
def test_merge_into_nothing_usable_is_ours(theirs: object) -> None:
    assert _merged(theirs, OURS) == OURS
