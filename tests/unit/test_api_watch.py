from __future__ import annotations

import functools
from typing import Any

from minikubelet.api import pollwatch, watch
from minikubelet.api.selectors import field_selector, label_selector


def pod(name: str, uid: str, rv: int, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": str(rv), "labels": labels}
    }


def events(w: watch.Watcher) -> list[tuple[str, str]]:
    out = []
    while not w.queue.empty():
        item = w.queue.get_nowait()
        out.append(("END", "") if item is None else (item[0], item[1]["metadata"]["name"]))
    return out


async def test_types_filters_and_replay() -> None:
    hub = watch.WatchHub()
    a, b = pod("a", "ua", 1, app="db"), pod("b", "ub", 2, app="web")
    hub.publish(1, "ua", False, a)
    hub.publish(2, "ub", False, b)
    w = watch.Watcher("default", label_selector("app=db"), field_selector("", ("metadata.name",), "pods"), False)
    hub.add(w, None, [a, b], initial=True)
    assert events(w) == [("ADDED", "a")]
    hub.publish(3, "ua", False, pod("a", "ua", 3, app="db"))
    hub.publish(4, "ua", False, pod("a", "ua", 4, app="other"))  # leaves the selection: DELETED
    hub.publish(5, "ub", False, pod("b", "ub", 5, app="db"))  # enters it: ADDED
    hub.publish(6, "ub", True, pod("b", "ub", 6, app="db"))
    assert events(w) == [("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b"), ("DELETED", "b")]

    # a watch from resourceVersion 2 (its list) replays what happened since, only that
    late = watch.Watcher(None, label_selector(""), field_selector("metadata.name=b", ("metadata.name",), "pods"), False)
    hub.add(late, 2, [pod("a", "ua", 4, app="other")], initial=False)
    assert events(late) == [("MODIFIED", "b"), ("DELETED", "b")]


async def test_slow_watcher_is_dropped() -> None:
    hub = watch.WatchHub()
    w = watch.Watcher(None, label_selector(""), field_selector("", (), "pods"), False)
    hub.add(w, None, [], initial=False)
    for i in range(watch.QUEUE_SIZE + 5):
        hub.publish(i + 1, f"u{i}", False, pod(f"p{i}", f"u{i}", i + 1))
    assert w.dropped and events(w) == [("END", "")]
    assert watch.bookmark(9)["object"]["metadata"] == {
        "resourceVersion": "9",
        "annotations": {"k8s.io/initial-events-end": "true"},
    }


class FakeSource:
    """Objects with versions, as the node and the event store expose them to pollwatch."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[int, int, dict[str, Any]]] = {}
        self.version = 0
        self.built = 0

    def put(self, name: str, created: int = 0, **labels: str) -> None:
        self.version += 1
        obj = pod(name, name, self.version, **labels)
        self.objects[name] = (self.version, created or self.version, obj)

    def items(self) -> list[pollwatch.Item]:
        def build(obj: dict[str, Any]) -> dict[str, Any]:
            self.built += 1
            return obj

        return [pollwatch.Item(k, v, c, functools.partial(build, o)) for k, (v, c, o) in self.objects.items()]

    def source(self, selector: str = "") -> pollwatch.Source:
        labels = label_selector(selector)
        return pollwatch.Source(
            "Node",
            self.items,
            lambda o: labels(o["metadata"]["labels"]),
            [],
            lambda o, now: {"cells": [o["metadata"]["name"]]},
            lambda: self.version,
        )


def kinds(found: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    return [(k, o["metadata"]["name"], o["metadata"]["resourceVersion"]) for k, o in found]


def test_poll_watch_from_now_and_from_a_version() -> None:
    src = FakeSource()
    src.put("a", app="db")
    src.put("b", app="web")
    now = pollwatch.Tracker(src.source("app=db"))
    assert now.start(None, initial=False) == []
    assert now.poll() == [] and src.built == 2  # unchanged objects are not rendered again
    src.put("b", app="db")  # enters the selection
    src.put("a", app="other")  # leaves it
    src.put("c", app="db")
    assert kinds(now.poll()) == [("ADDED", "b", "3"), ("DELETED", "a", "4"), ("ADDED", "c", "5")]
    src.put("b", created=2, app="db")
    del src.objects["c"]  # evicted from the store
    assert kinds(now.poll()) == [("MODIFIED", "b", "6"), ("DELETED", "c", "6")]

    # from resourceVersion 5 (a list taken then): what changed since, in resourceVersion order
    src.put("d", app="db")
    src.put("a", created=1, app="db")
    late = pollwatch.Tracker(src.source("app=db"))
    assert late.start(5, initial=False) == []
    assert kinds(late.poll()) == [("MODIFIED", "b", "6"), ("ADDED", "d", "7"), ("MODIFIED", "a", "8")]
    assert late.poll() == []

    initial = pollwatch.Tracker(src.source("app=db"))
    assert sorted(n for _, n, _ in kinds(initial.start(None, initial=True))) == ["a", "b", "d"]


def test_history_is_bounded_by_bytes_and_a_watch_from_before_it_expires() -> None:
    from minikubelet.api.watch import WatchHub

    hub = WatchHub()
    hub.max_bytes = 10_000
    big = {"metadata": {"uid": "u", "name": "p", "namespace": "default"}, "spec": {"x": "y" * 3000}}
    for version in range(1, 11):
        hub.publish(version, "u", False, big)
    assert hub.history_bytes <= 10_000 and len(hub.history) == 3
    assert [c.version for c in hub.history] == [8, 9, 10]
    assert hub.expired(5) and not hub.expired(7) and not hub.expired(None)
