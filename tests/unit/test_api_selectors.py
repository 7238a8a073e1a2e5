from __future__ import annotations

import pytest

from minikubelet.api.errors import ApiError
from minikubelet.api.selectors import field_selector, label_selector

LABELS = {"app": "db", "type": "backend", "n": "5"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=db", True),
        ("app==db", True),
        ("app=web", False),
        ("app!=web", True),
        ("app!=db", False),
        ("app in (db,web)", True),
        ("app in (web, x)", False),
        ("app notin (web)", True),
        ("app notin (db,web)", False),
        ("app", True),
        ("!app", False),
        ("missing", False),
        ("!missing", True),
        ("missing!=x", True),
        ("app in (db,web-services),type!=x", True),
        ("app=db,type=frontend", False),
        ("n>3", True),
        ("n<3", False),
        ("example.com/key in (a)", False),
        ("  app = db , type in ( backend )  ", True),
    ],
)
def test_label_selector(selector: str, matches: bool) -> None:
    assert label_selector(selector)(LABELS) is matches


@pytest.mark.parametrize("bad", ["app in (a", "app in ()", "a==b==c", "app=(x)", "!app=x", "n>x"])
def test_bad_label_selector(bad: str) -> None:
    with pytest.raises(ApiError) as e:
        label_selector(bad)
    assert e.value.code == 400


def test_field_selector_any_order_and_unknown_field() -> None:
    allowed = ("involvedObject.name", "involvedObject.namespace", "involvedObject.uid")
    event = {"involvedObject": {"name": "p", "namespace": "default", "uid": "u1"}}
    for sel in (
        "involvedObject.name=p,involvedObject.namespace=default,involvedObject.uid=u1",
        "involvedObject.uid=u1,involvedObject.name=p",
    ):
        assert field_selector(sel, allowed, "events")(event)
    assert not field_selector("involvedObject.name=q", allowed, "events")(event)
    assert field_selector("involvedObject.name!=q", allowed, "events")(event)
    with pytest.raises(ApiError) as e:
        field_selector("spec.bogus=x", allowed, "events")
    assert e.value.code == 400 and '"spec.bogus" is not a known field selector' in e.value.message
