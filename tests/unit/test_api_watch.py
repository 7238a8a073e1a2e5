from __future__ import annotations

from typing import Any

from minikubelet.api import watch
from minikubelet.api.selectors import field_selector, label_selector


def pod(name: str, uid: str, rv: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": str(rv),
                         "labels": labels}}


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
    late = watch.Watcher(None, label_selector(""), field_selector("metadata.name=b", ("metadata.name",), "pods"),
                         False)
    hub.add(late, 2, [pod("a", "ua", 4, app="other")], initial=False)
    assert events(late) == [("MODIFIED", "b"), ("DELETED", "b")]


async def test_slow_watcher_is_dropped() -> None:
    hub = watch.WatchHub()
    w = watch.Watcher(None, label_selector(""), field_selector("", (), "pods"), False)
    hub.add(w, None, [], initial=False)
    for i in range(watch.QUEUE_SIZE + 5):
        hub.publish(i + 1, f"u{i}", False, pod(f"p{i}", f"u{i}", i + 1))
    assert w.dropped and events(w) == [("END", "")]
    assert watch.bookmark(9)["object"]["metadata"] == {"resourceVersion": "9",
                                                       "annotations": {"k8s.io/initial-events-end": "true"}}
