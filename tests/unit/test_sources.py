"""FileSource and the inotify event parser, against a real temp directory (no inotify timing assumptions here).

``load_pods`` is replaced by a small YAML stub (``fake_load_pods``) with the real contract: the uid hashes node, path
and everything but labels/annotations, so a label edit keeps the uid and a spec edit changes it. The real loader and
the inotify path are exercised in tests/integration/test_sources_watch.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
import yaml

from minikubelet.errors import ManifestError
from minikubelet.manifests import inotify, manifest, sources
from minikubelet.manifests.sources import FileSource, PodUpdate
from minikubelet.pod.spec import Container, Pod, PodSpec

NODE = "node1"
Q = asyncio.Queue[PodUpdate]
Make = Callable[..., Awaitable[FileSource]]
LIMIT = manifest.MAX_MANIFEST_BYTES


def fake_load_pods(source: str, data: bytes, node_name: str) -> list[Pod]:
    try:
        docs = [d for d in yaml.safe_load_all(data) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(source, [f"the file is not valid YAML ({exc}); fix the syntax"]) from None
    pods = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Pod":
            raise ManifestError(source, ["kind: must be Pod"])
        meta: dict[str, Any] = doc.get("metadata") or {}
        if not meta.get("name"):
            raise ManifestError(source, ["metadata.name: required; add a name"])
        content = {k: v for k, v in doc.items() if k != "metadata"}
        content["metadata"] = {k: v for k, v in meta.items() if k not in ("labels", "annotations")}
        uid = hashlib.md5(json.dumps([node_name, source, content], sort_keys=True).encode()).hexdigest()
        spec = PodSpec(containers=tuple(Container(c["name"], c["image"]) for c in doc["spec"]["containers"]))
        ns, labels, notes = meta.get("namespace", "default"), meta.get("labels") or {}, meta.get("annotations") or {}
        pods.append(Pod(ns, meta["name"], uid, spec, source, dict(labels), dict(notes), manifest=doc))
    return pods


def pod_yaml(name: str, image: str = "busybox", labels: dict[str, str] | None = None, ns: str = "default") -> str:
    meta = {"name": name, "namespace": ns, "labels": labels or {}}
    spec = {"containers": [{"name": "c", "image": image}]}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})


def write(directory: Path, name: str, text: str, mode: int = 0o644) -> Path:
    (tmp := directory / f".{name}.tmp").write_text(text)  # atomic: temp file + rename, as the docs advise
    tmp.chmod(mode)
    os.replace(tmp, directory / name)
    return directory / name


def drain(queue: Q) -> list[tuple[str, str, str]]:
    updates = [queue.get_nowait() for _ in range(queue.qsize())]
    return [(u.op.value, u.pod.key, u.pod.uid) for u in updates]


def ops(updates: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(op, key) for op, key, _ in updates]


@pytest.fixture(autouse=True)
def _stub_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "load_pods", fake_load_pods)
    if os.geteuid() != 0:  # lets the unit tests run unprivileged; the ownership check is covered as root
        monkeypatch.setattr(sources, "TRUSTED_UID", os.geteuid())


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    directory.chmod(0o755)
    return directory


@pytest.fixture
def queue() -> Q:
    return asyncio.Queue()


@pytest.fixture
async def make_source(mdir: Path, queue: Q) -> AsyncIterator[Make]:
    started: list[FileSource] = []

    async def make(directory: Path = mdir, interval: float = 3600.0) -> FileSource:
        source = FileSource(directory, NODE, queue, rescan_interval=interval)
        await source.start()
        started.append(source)
        return source

    yield make
    for source in started:
        await source.stop()


async def test_start_queues_existing_files_in_sorted_order(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "b.yaml", pod_yaml("b"))
    write(mdir, "a.yml", pod_yaml("a"))
    write(mdir, "c.json", json.dumps(yaml.safe_load(pod_yaml("c"))))
    source = await make_source()
    assert ops(drain(queue)) == [("ADD", "default/a"), ("ADD", "default/b"), ("ADD", "default/c")]
    assert source.errors() == {}
    assert sorted(p.key for p in source.pods().values()) == ["default/a", "default/b", "default/c"]
    web = source.pod_by_key("default/b")
    assert web is not None and web.source == str(mdir / "b.yaml") and web.uid in source.pods()
    assert source.pod_by_key("default/missing") is None


async def test_ignored_names_and_non_regular_files(mdir: Path, queue: Q, make_source: Make) -> None:
    for name in [".hidden.yaml", "x~", "x.yaml~", ".x.swp", "x.bak", "x.yaml.bak", "notes.txt", "x.yaml.swp"]:
        write(mdir, name, pod_yaml("ignored"))
    (mdir / "sub.yaml").mkdir(mode=0o755)
    write(mdir / "sub.yaml", "inner.yaml", pod_yaml("inner"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(mdir / "sock.yaml"))
    os.mkfifo(mdir / "fifo.yaml", 0o644)
    try:
        source = await make_source()
        assert drain(queue) == [] and source.pods() == {}
        # a FIFO or socket named like a manifest is never opened (it would block) but is said (issue 9, point 5)
        errors = {Path(k).name: v for k, v in source.errors().items()}
        assert set(errors) == {"sock.yaml", "fifo.yaml"}
        assert "it is a FIFO, not a regular file" in errors["fifo.yaml"]
        assert "it is a socket" in errors["sock.yaml"]
    finally:
        sock.close()


async def test_remove_and_rename_away(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "a.yaml", pod_yaml("a"))
    write(mdir, "b.yaml", pod_yaml("b"))
    source = await make_source()
    added = {key: uid for _, key, uid in drain(queue)}
    (mdir / "a.yaml").unlink()
    os.rename(mdir / "b.yaml", mdir / "b.yaml.bak")
    await source.rescan()
    assert drain(queue) == [("REMOVE", "default/a", added["default/a"]), ("REMOVE", "default/b", added["default/b"])]
    assert source.pods() == {} and source.errors() == {}


async def test_label_edit_is_update_spec_edit_is_remove_add(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "web.yaml", pod_yaml("web", labels={"app": "web"}))
    source = await make_source()
    [(_, _, uid)] = drain(queue)
    write(mdir, "web.yaml", pod_yaml("web", labels={"app": "web", "tier": "front"}))
    await source.rescan()
    assert drain(queue) == [("UPDATE", "default/web", uid)]
    assert source.pods()[uid].labels == {"app": "web", "tier": "front"}
    write(mdir, "web.yaml", pod_yaml("web", image="nginx", labels={"app": "web", "tier": "front"}))
    await source.rescan()
    [(op1, _, old), (op2, _, new)] = drain(queue)
    assert (op1, old, op2) == ("REMOVE", uid, "ADD") and new != uid
    assert list(source.pods()) == [new]


async def test_identical_rewrite_and_rescan_are_idempotent(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "web.yaml", pod_yaml("web"))
    source = await make_source()
    drain(queue)
    for _ in range(2):
        write(mdir, "web.yaml", pod_yaml("web"))
        await source.rescan()
        await source.rescan()
    assert drain(queue) == [] and source.errors() == {}


async def test_invalid_edit_keeps_pods_and_fix_applies(
    mdir: Path, queue: Q, make_source: Make, caplog: pytest.LogCaptureFixture
) -> None:
    write(mdir, "web.yaml", pod_yaml("web"))
    write(mdir, "other.yaml", pod_yaml("other"))
    source = await make_source()
    uids = {key: uid for _, key, uid in drain(queue)}
    with caplog.at_level(logging.WARNING, logger="minikubelet.manifests.sources"):
        write(mdir, "web.yaml", "kind: Pod\nmetadata: {}\n")
        await source.rescan()
        await source.rescan()  # the safety-net rescan must not drop the pod either
    assert drain(queue) == []
    path = str(mdir / "web.yaml")
    assert source.errors() == {path: f"{path}: metadata.name: required; add a name"}
    assert source.pod_by_key("default/web") is not None and set(source.pods()) == set(uids.values())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"file={path}" in warnings[0].getMessage()
    write(mdir, "web.yaml", pod_yaml("web"))  # back to the loaded content: only the error clears
    await source.rescan()
    assert drain(queue) == [] and source.errors() == {}
    write(mdir, "web.yaml", "{not: [yaml")
    await source.rescan()
    write(mdir, "web.yaml", pod_yaml("web", image="nginx"))  # a fix with a new spec applies it
    await source.rescan()
    assert ops(drain(queue)) == [("REMOVE", "default/web"), ("ADD", "default/web")]
    assert source.errors() == {}


async def test_invalid_new_file_and_parser_bug_do_not_stop_others(
    mdir: Path, queue: Q, make_source: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy(source: str, data: bytes, node_name: str) -> list[Pod]:
        if source.endswith("boom.yaml"):
            raise RecursionError("deep")
        return fake_load_pods(source, data, node_name)

    monkeypatch.setattr(sources, "load_pods", buggy)
    write(mdir, "a.yaml", "kind: Service\n")
    write(mdir, "boom.yaml", pod_yaml("boom"))
    write(mdir, "c.yaml", pod_yaml("c"))
    source = await make_source()
    assert ops(drain(queue)) == [("ADD", "default/c")]
    errors = source.errors()
    assert errors[str(mdir / "a.yaml")] == f"{mdir / 'a.yaml'}: kind: must be Pod"
    assert "RecursionError" in errors[str(mdir / "boom.yaml")]


async def test_duplicate_across_files_first_keeps_it_then_hands_over(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "z.yaml", pod_yaml("web", image="first"))
    source = await make_source()
    [(_, _, z_uid)] = drain(queue)
    write(mdir, "a.yaml", pod_yaml("web", image="second"))  # sorts first, but arrived later
    await source.rescan()
    assert drain(queue) == []
    a, z = str(mdir / "a.yaml"), str(mdir / "z.yaml")
    assert source.errors() == {a: f"pod default/web is already defined in {z}; refusing the copy in {a}"}
    (mdir / "z.yaml").unlink()
    await source.rescan()  # one pass: the copy is accepted as soon as the original is gone
    [(op1, _, removed), (op2, key, added)] = drain(queue)
    assert (op1, removed, op2, key) == ("REMOVE", z_uid, "ADD", "default/web")
    pod = source.pod_by_key("default/web")
    assert pod is not None and pod.source == a and pod.uid == added and source.errors() == {}


async def test_duplicate_in_initial_scan_goes_to_the_first_name(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "a.yaml", pod_yaml("web"))
    write(mdir, "b.yaml", pod_yaml("web"))
    source = await make_source()
    assert len(drain(queue)) == 1
    pod = source.pod_by_key("default/web")
    assert pod is not None and pod.source == str(mdir / "a.yaml")
    assert list(source.errors()) == [str(mdir / "b.yaml")]
    write(mdir, "a.yaml", pod_yaml("other"))  # the edit drops web from a.yaml: b.yaml inherits it, same pass
    await source.rescan()
    assert ops(drain(queue)) == [("REMOVE", "default/web"), ("ADD", "default/other"), ("ADD", "default/web")]
    assert source.errors() == {}


async def test_multi_pod_file_each_pod_independent(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "multi.yaml", pod_yaml("a") + "---\n" + pod_yaml("b"))
    source = await make_source()
    uids = {key: uid for _, key, uid in drain(queue)}
    assert set(uids) == {"default/a", "default/b"}
    write(mdir, "multi.yaml", pod_yaml("a", labels={"x": "y"}) + "---\n" + pod_yaml("c"))
    await source.rescan()
    assert ops(drain(queue)) == [("REMOVE", "default/b"), ("UPDATE", "default/a"), ("ADD", "default/c")]
    write(mdir, "multi.yaml", pod_yaml("a") + "---\n" + pod_yaml("a", image="x"))
    await source.rescan()
    assert drain(queue) == [] and "defined more than once" in source.errors()[str(mdir / "multi.yaml")]


async def test_group_writable_file_refused_with_fix(mdir: Path, queue: Q, make_source: Make) -> None:
    path = write(mdir, "web.yaml", pod_yaml("web"), mode=0o664)
    source = await make_source()
    assert drain(queue) == []
    assert source.errors() == {
        str(path): f"{path}: refused: the file is writable by group or others (mode 0664); "
        f"pods run as root, so run: chmod go-w {path}"
    }
    path.chmod(0o644)
    await source.rescan()
    assert ops(drain(queue)) == [("ADD", "default/web")] and source.errors() == {}
    path.chmod(0o666)  # refused after loading: the pod stays, the error shows
    await source.rescan()
    assert drain(queue) == [] and source.pod_by_key("default/web") is not None
    assert "(mode 0666)" in source.errors()[str(path)]
    path.chmod(0o644)
    await source.rescan()
    assert drain(queue) == [] and source.errors() == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
async def test_file_not_owned_by_root_refused(mdir: Path, queue: Q, make_source: Make) -> None:
    path = write(mdir, "web.yaml", pod_yaml("web"))
    os.chown(path, 1000, 1000)
    source = await make_source()
    assert drain(queue) == []
    assert source.errors() == {
        str(path): f"{path}: refused: the file is owned by uid 1000, not root; "
        f"pods run as root, so run: chown root {path}"
    }


async def test_unsafe_directory_refuses_everything(mdir: Path, queue: Q, make_source: Make) -> None:
    write(mdir, "web.yaml", pod_yaml("web"))
    mdir.chmod(0o777)
    source = await make_source()
    assert drain(queue) == []
    assert source.errors() == {
        str(mdir): f"{mdir}: refused all manifests in this directory: the directory is writable by group or others "
        f"(mode 0777); pods run as root, so run: chmod go-w {mdir}"
    }
    mdir.chmod(0o755)
    await source.rescan()
    assert ops(drain(queue)) == [("ADD", "default/web")] and source.errors() == {}


async def test_symlinks(tmp_path: Path, mdir: Path, queue: Q, make_source: Make) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    good = write(store, "good.yaml", pod_yaml("linked"))
    bad = write(store, "bad.yaml", pod_yaml("bad"), mode=0o646)
    (mdir / "good.yaml").symlink_to(good)
    (mdir / "bad.yaml").symlink_to(bad)
    (mdir / "loop.yaml").symlink_to(mdir / "loop2.yaml")
    (mdir / "loop2.yaml").symlink_to(mdir / "loop.yaml")
    (mdir / "dangling.yaml").symlink_to(store / "nope.yaml")
    (mdir / "dir.yaml").symlink_to(store)
    source = await make_source()
    assert ops(drain(queue)) == [("ADD", "default/linked")]
    errors = source.errors()
    assert set(errors) == {str(mdir / n) for n in ["bad.yaml", "loop.yaml", "loop2.yaml", "dangling.yaml", "dir.yaml"]}
    assert errors[str(mdir / "bad.yaml")] == (
        f"{mdir / 'bad.yaml'}: refused: the symlink target {bad} is writable by group or others (mode 0646); "
        f"pods run as root, so run: chmod go-w {bad}"
    )
    assert "symlink is a loop" in errors[str(mdir / "loop.yaml")]
    assert f"symlink target {store / 'nope.yaml'} does not exist" in errors[str(mdir / "dangling.yaml")]
    assert "is not a regular file" in errors[str(mdir / "dir.yaml")]
    (mdir / "dangling.yaml").unlink()
    await source.rescan()
    assert str(mdir / "dangling.yaml") not in source.errors()


async def test_huge_file_refused_without_reading(
    mdir: Path, queue: Q, make_source: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "load_pods", spy := Mock(side_effect=fake_load_pods))
    path = write(mdir, "huge.yaml", "")
    os.truncate(path, LIMIT + 1)  # sparse: costs no disk
    source = await make_source()
    assert spy.call_count == 0 and drain(queue) == []
    assert source.errors()[str(path)].startswith(f"{path}: refused: the file is {LIMIT + 1} bytes, over the")


async def test_large_file_parsed_in_a_thread(
    mdir: Path, queue: Q, make_source: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    threaded: list[str] = []
    real_to_thread = asyncio.to_thread

    async def spy(func: Callable[..., Any], /, *args: Any) -> Any:
        threaded.append(args[1])
        return await real_to_thread(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    write(mdir, "big.yaml", pod_yaml("big") + "#" * (100 * 1024) + "\n")
    write(mdir, "small.yaml", pod_yaml("small"))
    source = await make_source()
    assert ops(drain(queue)) == [("ADD", "default/big"), ("ADD", "default/small")]
    assert threaded == [str(mdir / "big.yaml")] and source.errors() == {}


async def test_missing_directory_is_created_root_owned(tmp_path: Path, make_source: Make) -> None:
    directory = tmp_path / "etc" / "manifests"
    source = await make_source(directory)
    st = directory.stat()
    assert (st.st_mode & 0o7777, st.st_uid) == (0o755, os.geteuid()) and source.errors() == {}


async def test_create_event_waits_for_close_write_unless_hard_link(mdir: Path, queue: Q) -> None:
    source = FileSource(mdir, NODE, queue)
    (mdir / "new.yaml").write_text(pod_yaml("new"))
    (mdir / "new.yaml").chmod(0o644)
    await source._pass({"new.yaml": inotify.IN_CREATE})
    assert drain(queue) == []
    os.link(mdir / "new.yaml", mdir / "link.yaml")
    await source._pass({"link.yaml": inotify.IN_CREATE})
    assert ops(drain(queue)) == [("ADD", "default/new")]


def test_parse_events_and_name_filter() -> None:
    def event(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (-(len(name) + 1) % 16 + 1) if name else b""
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded

    buf = event(1, inotify.IN_CLOSE_WRITE, b"web.yaml") + event(1, inotify.IN_Q_OVERFLOW, b"") + event(1, 4, b"x")
    expected = [(1, inotify.IN_CLOSE_WRITE, "web.yaml"), (1, inotify.IN_Q_OVERFLOW, ""), (1, inotify.IN_ATTRIB, "x")]
    assert inotify.parse_events(buf) == expected
    assert all(sources.is_manifest_name(n) for n in ["a.yaml", "a.yml", "a.json", "a.b.yaml"])
    assert not any(sources.is_manifest_name(n) for n in [".a.yaml", "a.yaml~", "a.yaml.bak", "a.swp", "a.txt", "yaml"])
