"""``GET /api/v1/namespaces/{namespace}/pods/{name}/log``: a container's log file, as ``kubectl logs`` reads it.

Container processes write their log files directly (``<log-dir>/<ns>_<pod>_<uid>/<container>/<n>.log``, one file per
instance). This handler serves one of them as ``text/plain``: the current instance, or the previous one with
``previous=true``; ``tailLines`` reads backwards from the end (never the whole file), ``limitBytes`` caps the
answer, and ``follow=true`` keeps streaming what the process appends until that instance stops running (or the pod
goes, or the client leaves): kubectl exits 0 when the response ends. ``timestamps`` is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from aiohttp import web

from minikubelet.api.errors import not_found, status
from minikubelet.pod.status import State

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext
    from minikubelet.pod.worker import PodWorker

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
FOLLOW_POLL_SECONDS = 0.1


class BadRequest(Exception):
    """A query parameter kubectl (or a user) got wrong: answered as a 400 Status with this message."""


def _bool(query: Mapping[str, str], key: str) -> bool:
    return query.get(key, "").lower() in ("true", "1")


def _int(raw: str | None, key: str, minimum: int) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f'{key}: invalid value "{raw}": must be an integer') from None
    if value < minimum:
        raise BadRequest(f"{key}: invalid value {value}: must be greater than or equal to {minimum}")
    return value


def tail_offset(f: BinaryIO, lines: int, size: int) -> int:
    """Offset where the last ``lines`` lines of the first ``size`` bytes of ``f`` begin (reads backwards in chunks).

    A final line without a newline counts as a line, as in the kubelet."""
    if lines <= 0:
        return size
    pos = size
    # The byte at size-1 ends the last line when it is a newline: don't count that one.
    wanted = lines + 1 if size > 0 and _byte_at(f, size - 1) == b"\n" else lines
    while pos > 0:
        start = max(0, pos - CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            wanted -= 1
            if wanted == 0:
                return start + idx + 1
        pos = start
    return 0


def _byte_at(f: BinaryIO, offset: int) -> bytes:
    f.seek(offset)
    return f.read(1)


def _first_container(worker: PodWorker) -> str:
    if worker.pod.spec.containers:
        return worker.pod.spec.containers[0].name
    return ""


def choose_file(worker: PodWorker, container: str, previous: bool) -> tuple[Path, int]:
    """The log file to serve and the instance index it belongs to; BadRequest with the apiserver's message."""
    pod = worker.pod.name
    rec = worker.state.records.get(container)
    if rec is None:
        names = [c.name for c in (*worker.pod.spec.init_containers, *worker.pod.spec.containers)]
        raise BadRequest(f"container {container} is not valid for pod {pod}" if container else
                         f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]")
    if previous:
        path = worker.log_path(container, previous=True)
        if path is None:
            raise BadRequest(f'previous terminated container "{container}" in pod "{pod}" not found')
        return path, rec.instances - 2
    path = worker.log_path(container)
    if path is None:
        reason = rec.reason or "ContainerCreating"
        raise BadRequest(f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
    return path, rec.instances - 1


def still_running(server: ApiContext, worker: PodWorker, container: str, instance: int) -> bool:
    """True while ``instance`` of the container is the running one of the pod's live worker."""
    if server.find_pod(worker.pod.namespace, worker.pod.name) is not worker:
        return False
    rec = worker.state.records.get(container)
    return rec is not None and rec.instances - 1 == instance and rec.state is State.RUNNING


class LogStream:
    """Copies one log file to a streaming response (optionally following it), honouring limitBytes."""

    def __init__(self, request: web.Request, resp: web.StreamResponse, limit: int | None) -> None:
        self.request = request
        self.resp = resp
        self.left = limit
        self.opened: BinaryIO | None = None  # a file opened while following (closed by the caller)

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def copy(self, f: BinaryIO, end: int | None = None) -> int:
        """Send from the current position up to ``end`` (or EOF); returns the bytes sent."""
        sent = 0
        while not self.done:
            want = CHUNK if self.left is None else min(CHUNK, self.left)
            if end is not None:
                want = min(want, end - f.tell())
            if want <= 0:
                break
            data = f.read(want)
            if not data:
                break
            await self.resp.write(data)
            sent += len(data)
            if self.left is not None:
                self.left -= len(data)
        return sent

    async def follow(self, f: BinaryIO | None, path: Path, alive: Callable[[], bool]) -> None:
        """Stream appended bytes until the instance stops running, then send what is left and return.

        ``f`` is None while the file does not exist yet (the instance is starting): it is opened once it does."""
        while not self.done and not self.client_gone():
            if f is None:
                f = _open(path)
                if f is not None:
                    self.opened = f
            if f is not None and await self.copy(f):
                continue
            if not alive():
                if f is not None:
                    await self.copy(f)  # whatever it wrote just before exiting
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        return None


async def handle(server: ApiContext, request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    worker = server.find_pod(namespace, name)
    if worker is None:
        return not_found("pods", name)
    q = request.query
    try:
        container = q.get("container") or _first_container(worker)
        previous, follow = _bool(q, "previous"), _bool(q, "follow")
        tail = _int(q.get("tailLines"), "tailLines", 0)
        limit = _int(q.get("limitBytes"), "limitBytes", 1)
        path, instance = choose_file(worker, container, previous)
    except BadRequest as e:
        return status(400, "BadRequest", str(e))
    log.debug("Log request pod=%s container=%s previous=%s follow=%s tail=%s", worker.pod.key, container, previous,
              follow, tail)
    f = _open(path)  # None: not created yet (starting), or already removed (the pod is going)
    resp = web.StreamResponse(status=200)
    resp.content_type = "text/plain"
    stream = LogStream(request, resp, limit)
    try:
        start = 0
        if f is not None and tail is not None:
            size = os.fstat(f.fileno()).st_size
            start = await asyncio.get_running_loop().run_in_executor(None, tail_offset, f, tail, size)
        if f is not None:
            f.seek(start)
        await resp.prepare(request)
        if follow and not previous:
            await stream.follow(f, path, lambda: still_running(server, worker, container, instance))
        elif f is not None:
            await stream.copy(f, os.fstat(f.fileno()).st_size)
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError) as e:
        log.debug("Log client went away pod=%s container=%s error=%r", worker.pod.key, container, e)
        if isinstance(e, asyncio.CancelledError):
            raise
    finally:
        for opened in {f, stream.opened} - {None}:
            assert opened is not None
            opened.close()
    return resp
