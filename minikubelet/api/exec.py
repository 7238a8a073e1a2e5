"""``GET /api/v1/namespaces/{namespace}/pods/{name}/exec``: ``kubectl exec`` over websocket ``v5.channel.k8s.io``.

Every frame is binary; byte 0 is the channel: 0 stdin, 1 stdout, 2 stderr, 3 the final status (JSON, then close),
4 a terminal resize (``{"Width":W,"Height":H}``), and from the client ``FF 00`` closes stdin (v5). The command runs
inside the container (``PodWorker.exec_start``) with pipes, or with a pty as controlling terminal for ``tty=true``.
Everything is pumped through the event loop (non-blocking fds, add_reader/add_writer): no thread, no blocking call.
A status frame is always sent, since kubectl takes a missing one for success. If the client goes away first, the
command is SIGKILLed (pause reaps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import struct
import termios
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from minikubelet.api.errors import not_found, status
from minikubelet.errors import MinikubeletError
from minikubelet.runtime.proc import ProcessHandle

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext
    from minikubelet.pod.worker import PodWorker

log = logging.getLogger(__name__)

PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
READ_SIZE = 64 * 1024
FIRST_RESIZE_SECONDS = 0.5  # tty: how long the start waits for kubectl's first resize frame
DRAIN_SECONDS = 1.0  # after the exit: how long output may still arrive (background children may hold the pipes)

# ----- frames and status objects (pure; unit-tested) -----------------------------------------------------------


def encode_frame(channel: int, data: bytes = b"") -> bytes:
    if not 0 <= channel <= 255:
        raise ValueError(f"channel {channel} is out of range 0-255")
    return bytes((channel,)) + data


def decode_frame(frame: bytes) -> tuple[int, bytes]:
    """(channel, payload) of a binary frame; ValueError for an empty frame."""
    if not frame:
        raise ValueError("empty frame: a v5.channel.k8s.io frame starts with its channel byte")
    return frame[0], frame[1:]


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize payload ``{"Width":W,"Height":H}``, or None if it is not one."""
    try:
        size = json.loads(payload)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    if not (0 <= width <= 0xFFFF and 0 <= height <= 0xFFFF):
        return None
    return width, height


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(argv: list[str], code: int) -> dict[str, Any]:
    """The kubelet's status for a non-zero exit: kubectl prints ``command terminated with exit code N``, exits N."""
    if code == 0:
        return success_status()
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command [{' '.join(argv)}], "
                       f"exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_error(message: str) -> dict[str, Any]:
    """A failure before or around the command (kubectl prints ``error: <message>`` and exits 1)."""
    return {"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
            "message": f"Internal error occurred: {message}"}


def status_frame(body: dict[str, Any]) -> bytes:
    return encode_frame(ERROR, json.dumps(body, separators=(",", ":")).encode())


def set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


# ----- non-blocking fd helpers -----------------------------------------------------------------------------------


async def _ready(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def read_nowait(fd: int) -> bytes | None:
    """Up to READ_SIZE bytes; b"" at EOF (EIO on a pty master whose slave is closed is EOF too); None if none yet."""
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise


async def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _ready(fd, write=True)


# ----- the session ---------------------------------------------------------------------------------------------


class ExecSession:
    """One exec: the fds on our side, the pumps between them and the websocket, and the process."""

    def __init__(self, ws: web.WebSocketResponse, worker: PodWorker, container: str, argv: list[str],
                 stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
        self.ws = ws
        self.worker = worker
        self.container = container
        self.argv = argv
        self.tty = tty
        self.want = (stdin, stdout, stderr)
        self.stdin_fd: int | None = None  # ours: write end of the stdin pipe, or the pty master
        self.outputs: list[tuple[int, int]] = []  # (our read fd, channel)
        self.ours: list[int] = []  # every fd we must close at the end
        self.master: int | None = None
        self.resized = asyncio.Event()

    def _open(self) -> tuple[int, ...]:
        """Create the pipes or the pty; returns the child's fds (to close right after the start)."""
        if self.tty:
            master, slave = os.openpty()
            os.set_blocking(master, False)
            self.master = self.stdin_fd = master
            self.ours.append(master)
            if self.want[1] or self.want[2]:
                self.outputs.append((master, STDOUT))
            return (slave,)
        theirs: list[int] = []
        for index, wanted in enumerate(self.want):
            if not wanted:
                theirs.append(os.open(os.devnull, (os.O_RDONLY if index == 0 else os.O_WRONLY) | os.O_CLOEXEC))
                continue
            r, w = os.pipe2(os.O_CLOEXEC)
            mine, child = (w, r) if index == 0 else (r, w)
            os.set_blocking(mine, False)
            self.ours.append(mine)
            theirs.append(child)
            if index == 0:
                self.stdin_fd = mine
            else:
                self.outputs.append((mine, index))
        return tuple(theirs)

    def _close(self, fd: int | None) -> None:
        if fd is not None and fd in self.ours:
            self.ours.remove(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    async def run(self) -> dict[str, Any]:
        """Start the command, pump until it exits (or the client leaves); returns the status to send."""
        theirs = self._open()
        reader = asyncio.create_task(self._read_client())  # before the start: the first resize, early stdin
        try:
            if self.tty:  # kubectl sends the terminal size first thing: let the command start with it
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FIRST_RESIZE_SECONDS):
                        await self.resized.wait()
            try:
                pid, start, record = await self.worker.exec_start(self.container, self.argv, theirs, tty=self.tty)
            finally:
                for fd in theirs:
                    os.close(fd)
        except BaseException as e:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if not isinstance(e, MinikubeletError):
                raise
            log.info("Exec could not start pod=%s container=%s command=%s error=%s", self.worker.pod.key,
                     self.container, self.argv[0], e)
            return internal_error(str(e))
        log.info("Exec started pod=%s container=%s command=%s tty=%s pid=%d", self.worker.pod.key, self.container,
                 self.argv[0], self.tty, pid)
        await self._supervise(ProcessHandle(pid, start), reader)
        code = await self.worker.exec_exit_code(record)
        log.info("Exec finished pod=%s container=%s command=%s exitCode=%s", self.worker.pod.key, self.container,
                 self.argv[0], code)
        if code is None:
            return internal_error(f"the exit status of {self.argv[0]} in container {self.container} is unknown")
        return exit_status(self.argv, code)

    async def _supervise(self, handle: ProcessHandle, reader: asyncio.Task[None]) -> None:
        """Pump output until the process exits, then drain; SIGKILL it if the client leaves (or we are cancelled)."""
        pumps = [asyncio.create_task(self._pump_out(fd, ch)) for fd, ch in self.outputs]
        exited = asyncio.create_task(handle.wait())
        try:
            await asyncio.wait({reader, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                log.info("Exec client went away; killing the command pod=%s container=%s command=%s pid=%d",
                         self.worker.pod.key, self.container, self.argv[0], handle.pid)
                handle.send(signal.SIGKILL)
                await handle.wait(10)
            elif pumps:
                await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
        finally:
            if not handle.exited:
                handle.send(signal.SIGKILL)
            for task in (*pumps, reader, exited):
                task.cancel()
            await asyncio.gather(*pumps, reader, exited, return_exceptions=True)
            handle.close()
        await self._drain()

    async def _pump_out(self, fd: int, channel: int) -> None:
        while True:
            data = read_nowait(fd)
            if data is None:
                await _ready(fd, write=False)
                continue
            if not data:
                return
            await self._send(channel, data)

    async def _drain(self) -> None:
        """Whatever output is still buffered (not waiting for more)."""
        for fd, channel in self.outputs:
            with contextlib.suppress(OSError):
                while data := read_nowait(fd):
                    await self._send(channel, data)

    async def _send(self, channel: int, data: bytes) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_bytes(encode_frame(channel, data))

    async def _read_client(self) -> None:
        """Handle client frames until the websocket closes (then the client is gone)."""
        async for msg in self.ws:
            if msg.type is not WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = decode_frame(msg.data)
            if channel == STDIN and self.stdin_fd is not None and payload:
                try:
                    await write_all(self.stdin_fd, payload)
                except OSError as e:  # EPIPE: the command closed its stdin; drop the rest
                    log.debug("Exec stdin write failed container=%s error=%s", self.container, e)
                    if not self.tty:
                        self._close(self.stdin_fd)
                        self.stdin_fd = None
            elif channel == RESIZE and self.master is not None:
                size = parse_resize(payload)
                if size is not None:
                    with contextlib.suppress(OSError):
                        set_winsize(self.master, *size)
                    self.resized.set()
            elif channel == CLOSE and payload[:1] == bytes((STDIN,)) and not self.tty:
                self._close(self.stdin_fd)
                self.stdin_fd = None

    def close(self) -> None:
        for fd in list(self.ours):
            self._close(fd)


def _flag(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("true", "1")


def _check(server: ApiContext, request: web.Request) -> tuple[PodWorker, str, list[str]] | web.Response:
    """The pod, container and command of the request, or the Status answering it (before any upgrade)."""
    name = request.match_info["name"]
    worker = server.find_pod(request.match_info["namespace"], name)
    if worker is None:
        return not_found("pods", name)
    argv = request.query.getall("command", [])
    if not argv or not argv[0]:
        return status(400, "BadRequest", "you must specify at least 1 command")
    if not any(_flag(request, k) for k in ("stdin", "stdout", "stderr")):
        return status(400, "BadRequest", "you must specify at least one of stdin, stdout, stderr")
    container = request.query.get("container") or (
        worker.pod.spec.containers[0].name if worker.pod.spec.containers else "")
    if container not in {c.name for c in worker.pod.spec.containers}:
        return status(400, "BadRequest", f"container {container} is not valid for pod {name}")
    ws = web.WebSocketResponse(protocols=(PROTOCOL,))
    ready = ws.can_prepare(request)
    if not ready.ok:
        return status(400, "BadRequest", f"exec needs a websocket upgrade with protocol {PROTOCOL} (this server does "
                                         "not speak SPDY): upgrade request required")
    if ready.protocol != PROTOCOL:
        return status(400, "BadRequest", f"unsupported exec protocol: the only one supported is {PROTOCOL}")
    return worker, container, argv


async def handle(server: ApiContext, request: web.Request) -> web.StreamResponse:
    checked = _check(server, request)
    if isinstance(checked, web.Response):
        return checked
    worker, container, argv = checked
    ws = web.WebSocketResponse(protocols=(PROTOCOL,))
    await ws.prepare(request)
    session = ExecSession(ws, worker, container, argv, _flag(request, "stdin"), _flag(request, "stdout"),
                          _flag(request, "stderr"), _flag(request, "tty"))
    result = internal_error("the exec session failed")
    try:
        result = await session.run()
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - the client still gets a status frame, the daemon a log line
        log.exception("Exec failed pod=%s container=%s command=%s", worker.pod.key, container, argv[0])
        result = internal_error(f"exec failed: {e}")
    finally:
        session.close()
    if not ws.closed:
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(status_frame(result))
            await ws.close()
    return ws
