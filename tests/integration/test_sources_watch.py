"""FileSource on the real inotify path and with the real manifest loader.

Updates must arrive promptly without waiting for the periodic rescan: the rescan interval is an hour here (except in
the directory re-creation test), so only inotify can deliver them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from minikubelet.manifests import manifest, sources
from minikubelet.manifests.sources import FileSource, PodUpdate, UpdateOp
from tests.unit.test_sources import NODE, drain, ops, pod_yaml, write

pytestmark = pytest.mark.root

DEADLINE = 1.0  # generous: inotify delivery is typically well under 10 ms


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    directory.chmod(0o755)
    return directory


@pytest.fixture
def queue() -> asyncio.Queue[PodUpdate]:
    return asyncio.Queue()


@pytest.fixture
async def source(mdir: Path, queue: asyncio.Queue[PodUpdate]) -> AsyncIterator[FileSource]:
    src = FileSource(mdir, NODE, queue, rescan_interval=3600.0)
    await src.start()
    yield src
    await src.stop()


async def next_update(queue: asyncio.Queue[PodUpdate], since: float) -> tuple[UpdateOp, str, float]:
    async with asyncio.timeout(DEADLINE):
        update = await queue.get()
    return update.op, update.pod.key, time.monotonic() - since


async def test_atomic_rename_add_then_delete(mdir: Path, queue: asyncio.Queue[PodUpdate], source: FileSource) -> None:
    assert queue.empty()
    tmp = mdir / ".web.yaml.tmp"
    tmp.write_text(pod_yaml("web"))
    tmp.chmod(0o644)
    t0 = time.monotonic()
    os.rename(tmp, mdir / "web.yaml")
    op, key, elapsed = await next_update(queue, t0)
    assert (op, key) == (UpdateOp.ADD, "default/web") and elapsed < DEADLINE
    t0 = time.monotonic()
    (mdir / "web.yaml").unlink()
    op, key, _ = await next_update(queue, t0)
    assert (op, key) == (UpdateOp.REMOVE, "default/web") and source.pods() == {}


async def test_in_place_write_is_read_once_complete(
    mdir: Path, queue: asyncio.Queue[PodUpdate], source: FileSource, caplog: pytest.LogCaptureFixture
) -> None:
    path = mdir / "web.yaml"
    text = pod_yaml("web", labels={"app": "web"})
    old_umask = os.umask(0o022)
    with caplog.at_level(logging.WARNING, logger="minikubelet.manifests.sources"):
        t0 = time.monotonic()
        with open(path, "w") as f:  # umask 022 → 0644; IN_CREATE now, IN_CLOSE_WRITE at the end
            half = len(text) // 2
            f.write(text[:half])
            f.flush()
            await asyncio.sleep(0.05)  # give the source a chance to read the half-written file (it must not)
            f.write(text[half:])
        os.umask(old_umask)
        op, key, elapsed = await next_update(queue, t0)
        assert (op, key) == (UpdateOp.ADD, "default/web") and elapsed < DEADLINE
        t0 = time.monotonic()
        with open(path, "w") as f:  # in-place label edit: truncate + write + close
            f.write(pod_yaml("web", labels={"app": "web", "tier": "front"}))
        op, key, _ = await next_update(queue, t0)
        assert (op, key) == (UpdateOp.UPDATE, "default/web")
    await asyncio.sleep(0.1)
    assert queue.empty() and source.errors() == {}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_rename_away_chmod_fix_and_symlink(
    tmp_path: Path, mdir: Path, queue: asyncio.Queue[PodUpdate], source: FileSource
) -> None:
    write(mdir, "a.yaml", pod_yaml("a"))
    assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.ADD, "default/a")
    os.rename(mdir / "a.yaml", mdir / "a.yaml.bak")
    assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.REMOVE, "default/a")

    path = write(mdir, "b.yaml", pod_yaml("b"), mode=0o666)
    async with asyncio.timeout(DEADLINE):
        while str(path) not in source.errors():
            await source.wait_for_change()
    path.chmod(0o644)  # IN_ATTRIB
    assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.ADD, "default/b")

    target = write(tmp_path, "c.yaml", pod_yaml("c"))
    (mdir / "c.yaml").symlink_to(target)  # IN_CREATE only
    assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.ADD, "default/c")


async def test_directory_recreated_is_watched_again(mdir: Path, queue: asyncio.Queue[PodUpdate]) -> None:
    src = FileSource(mdir, NODE, queue, rescan_interval=0.2)
    await src.start()
    try:
        write(mdir, "a.yaml", pod_yaml("a"))
        assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.ADD, "default/a")
        shutil.rmtree(mdir)  # IN_DELETE (REMOVE now), then IN_DELETE_SELF/IN_IGNORED
        assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.REMOVE, "default/a")
        async with asyncio.timeout(DEADLINE):
            while str(mdir) not in src.errors():  # the rescan that follows IN_DELETE_SELF reports it
                await src.wait_for_change()
        assert src.errors()[str(mdir)].endswith(f"(No such file or directory); create it: mkdir -m 0755 {mdir}")
        mdir.mkdir(mode=0o755)
        await asyncio.sleep(0.5)  # a rescan tick re-creates the watch
        write(mdir, "b.yaml", pod_yaml("b"))
        assert (await next_update(queue, time.monotonic()))[:2] == (UpdateOp.ADD, "default/b")
        assert src._watcher is not None and not src._watcher.closed
    finally:
        await src.stop()


async def test_real_loader_label_edit_spec_edit_invalid_edit(
    mdir: Path, queue: asyncio.Queue[PodUpdate], source: FileSource
) -> None:
    assert getattr(sources, "load_pods") is manifest.load_pods  # noqa: B009  (not the unit tests' stub)
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n"
    text += "  - name: c\n    image: busybox\n    command: [sleep, '3600']\n"
    write(mdir, "web.yaml", text)
    await source.rescan()  # whichever pass runs first (inotify or this) queues the update; the other is a no-op
    [(_, _, uid)] = drain(queue)
    write(mdir, "web.yaml", text.replace("app: web", "app: web2"))
    await source.rescan()
    assert drain(queue) == [("UPDATE", "default/web", uid)]
    write(mdir, "web.yaml", text.replace("busybox", "nginx"))
    await source.rescan()
    assert ops(drain(queue)) == [("REMOVE", "default/web"), ("ADD", "default/web")]
    write(mdir, "web.yaml", text.replace("kind: Pod", "kind: Service"))
    await source.rescan()
    assert drain(queue) == [] and source.errors()[str(mdir / "web.yaml")].startswith(f"{mdir / 'web.yaml'}: ")


async def test_wait_for_change_and_stop(mdir: Path, source: FileSource) -> None:
    waiter = asyncio.create_task(source.wait_for_change())
    write(mdir, "web.yaml", pod_yaml("web"))
    async with asyncio.timeout(DEADLINE):
        await waiter
    assert source.pod_by_key("default/web") is not None
    await source.stop()
    assert source._tasks == set() and source._watcher is None
