"""``…/pods/{name}/portforward``: ``kubectl port-forward``, SPDY/3.1 tunneled through a websocket.

kubectl (≥1.30, client-go tools/portforward/tunneling_dialer.go) sends ``GET …/portforward`` with
``Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io``; the server answers with that protocol, and from then on
the binary messages, split anywhere, carry one SPDY/3.1 connection in which kubectl is the client (the apiserver's
util/proxy/streamtunnel.go relays those bytes to the kubelet unchanged). Per local connection kubectl opens an
``error`` stream, then a ``data`` stream, both with headers ``port`` and ``requestID`` (tools/portforward/
portforward.go). Once both arrived, the kubelet connects to localhost:PORT inside the pod's network namespace and
copies bytes both ways (kubelet cri/streaming/portforward/httpstream.go; containerd's PortForward). A failure is
written as text on the error stream; then both streams are closed (FIN), which ends that connection in kubectl.

The connection is made by the nsexec zygote (runtime ``connect_in_pod``): the daemon never joins a namespace.
Everything here runs on the event loop with non-blocking sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from minikubelet.api import spdy
from minikubelet.api.errors import not_found, status
from minikubelet.errors import MinikubeletError

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext
    from minikubelet.pod.worker import PodWorker

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PROTOCOL
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's default streamCreationTimeout
CONNECT_TIMEOUT = 10.0
READ_SIZE = 32 * 1024
MAX_PENDING = 1 << 20  # client bytes buffered per connection before the session stops reading the websocket
ERROR, DATA = "error", "data"


@dataclass(slots=True, eq=False)
class StreamPair:
    """One forwarded connection: its error and data streams, and the bytes from kubectl not yet written."""

    request_id: str
    port: int
    error_id: int | None = None
    data_id: int | None = None
    inbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)  # None: kubectl closed its side
    pending: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    reset: asyncio.Event = field(default_factory=asyncio.Event)  # kubectl reset the data stream
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    @property
    def complete(self) -> bool:
        return self.error_id is not None and self.data_id is not None


def stream_error(headers: spdy.Headers) -> str | None:
    """Why the kubelet refuses a new stream (httpStreamReceived), or None if its headers are valid."""
    port = (headers.get("port") or [""])[0]
    if not port:
        return '"port" header is required'
    if not port.isdigit() or int(port) > 0xFFFF:
        return f'unable to parse "{port}" as a port'
    if int(port) < 1:
        return f'port "{port}" must be > 0'
    kind = (headers.get("streamtype") or [""])[0]
    if not kind:
        return '"streamType" header is required'
    if kind not in (ERROR, DATA):
        return f'invalid stream type "{kind}"'
    return None


def request_id(headers: spdy.Headers, stream_id: int) -> str:
    """The ``requestID`` header; old clients without it pair streams by id (error N, data N+2), as the kubelet."""
    given = (headers.get("requestid") or [""])[0]
    if given:
        return given
    return str(stream_id if headers["streamtype"][0] == ERROR else stream_id - 2)


class PortForwardSession:
    """One kubectl port-forward: the SPDY connection over the websocket and every forwarded connection in it."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], worker: PodWorker) -> None:
        self._send_raw = send
        self.worker = worker
        self.reader = spdy.FrameReader()
        self.inflate = spdy.HeaderDecompressor()
        self.deflate = spdy.HeaderCompressor()
        self.pairs: dict[str, StreamPair] = {}  # by request id, until both streams arrived
        self.streams: dict[int, tuple[StreamPair, str]] = {}  # open streams: stream id → (pair, type)
        self.last_stream_id = 0
        self.gone_away = False
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # ----- sending (one lock: the header compressor's stream must follow the frame order) -----------------------

    async def send(self, frame: bytes) -> None:
        async with self._send_lock:
            await self._send_raw(frame)

    async def reply(self, stream_id: int) -> None:
        async with self._send_lock:
            await self._send_raw(spdy.syn_reply(stream_id, self.deflate.compress({})))

    async def close_stream(self, stream_id: int | None) -> None:
        """Half-close our side (an empty DATA frame with FIN, as spdystream's Stream.Close)."""
        if stream_id is not None and stream_id in self.streams:
            await self.send(spdy.data_frame(stream_id, b"", fin=True))

    # ----- receiving -----------------------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Bytes from the tunnel; raises SpdyError when they are not SPDY/3."""
        self.reader.feed(data)
        for frame in self.reader.frames():
            if isinstance(frame, spdy.DataFrame):
                await self._on_data(frame)
            else:
                await self._on_control(frame)

    async def _on_data(self, frame: spdy.DataFrame) -> None:
        entry = self.streams.get(frame.stream_id)
        if entry is None:
            return  # a stream already closed or reset: spdystream drops these too
        pair, kind = entry
        if kind != DATA:
            return  # kubectl only closes the error stream (its reads come from us)
        if frame.data:
            pair.pending += len(frame.data)
            pair.inbox.put_nowait(frame.data)
        if frame.fin:
            pair.inbox.put_nowait(None)
        if pair.pending > MAX_PENDING:
            pair.drained.clear()
            await pair.drained.wait()  # backpressure: the pod reads slower than kubectl sends

    async def _on_control(self, frame: spdy.ControlFrame) -> None:
        if frame.type == spdy.FrameType.SYN_STREAM:
            syn = spdy.parse_syn_stream(frame)
            headers = self.inflate.decompress(syn.header_block)  # always: the zlib stream must stay in step
            await self._on_syn_stream(syn.stream_id, headers, frame.fin)
        elif frame.type == spdy.FrameType.RST_STREAM:
            stream_id, _ = spdy.parse_rst_stream(frame)
            entry = self.streams.pop(stream_id, None)
            if entry is not None and entry[1] == DATA:
                entry[0].reset.set()
        elif frame.type == spdy.FrameType.PING:
            ping_id = spdy.parse_ping(frame)
            if ping_id & 1:  # the client's (odd): echo it; ours would be even and we send none
                await self.send(spdy.ping(ping_id))
        elif frame.type == spdy.FrameType.GOAWAY:
            self.gone_away = True
        elif frame.type == spdy.FrameType.HEADERS:
            self.inflate.decompress(frame.payload[4:])  # unused, but it advances the zlib stream
        # SETTINGS, WINDOW_UPDATE and anything newer: spdystream has no flow control, nothing to do

    async def _on_syn_stream(self, stream_id: int, headers: spdy.Headers, fin: bool) -> None:
        if self.gone_away:
            return
        if stream_id % 2 == 0 or stream_id <= self.last_stream_id:
            await self.send(spdy.rst_stream(stream_id, spdy.RstStatus.PROTOCOL_ERROR))
            return
        self.last_stream_id = stream_id
        problem = stream_error(headers)
        if problem is not None:
            log.warning("Port forward stream rejected pod=%s stream=%d error=%s", self.worker.pod.key, stream_id,
                        problem)
            await self.send(spdy.rst_stream(stream_id, spdy.RstStatus.CANCEL))
            return
        kind, rid = headers["streamtype"][0], request_id(headers, stream_id)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = StreamPair(rid, int(headers["port"][0]))
            pair.timer = asyncio.get_running_loop().call_later(STREAM_CREATION_TIMEOUT, self._timed_out, pair)
        await self.reply(stream_id)
        if (pair.error_id if kind == ERROR else pair.data_id) is not None:
            await self._print_error(pair, f"error processing stream for request {rid}: {kind} stream already "
                                          "assigned")
            return
        self.streams[stream_id] = (pair, kind)
        if kind == ERROR:
            pair.error_id = stream_id
        else:
            pair.data_id = stream_id
            if fin:
                pair.inbox.put_nowait(None)
        if pair.complete:
            self.pairs.pop(rid, None)
            if pair.timer is not None:
                pair.timer.cancel()
            self._spawn(pair)

    def _timed_out(self, pair: StreamPair) -> None:
        if self.pairs.get(pair.request_id) is not pair:
            return
        del self.pairs[pair.request_id]
        message = f"(conn={id(self):#x}, request={pair.request_id}) timed out waiting for streams"
        log.warning("Port forward %s pod=%s", message, self.worker.pod.key)
        task = asyncio.get_running_loop().create_task(self._end(pair, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _print_error(self, pair: StreamPair, message: str) -> None:
        if pair.error_id is not None and pair.error_id in self.streams:
            await self.send(spdy.data_frame(pair.error_id, message.encode()))

    # ----- one forwarded connection ------------------------------------------------------------------------

    def _spawn(self, pair: StreamPair) -> None:
        pair.task = asyncio.get_running_loop().create_task(self._forward(pair))
        self._tasks.add(pair.task)
        pair.task.add_done_callback(self._tasks.discard)

    async def _forward(self, pair: StreamPair) -> None:
        pod, sandbox = self.worker.pod, self.worker.state.sandbox
        try:
            if sandbox is None:
                raise MinikubeletError(f"the sandbox of pod {pod.name} is not running")
            conn = await self.worker.runtime.connect_in_pod(pod.uid, sandbox, pair.port, CONNECT_TIMEOUT)
        except MinikubeletError as e:
            message = f"error forwarding port {pair.port} to pod {pod.uid}, uid : {e}"
            log.info("Port forward failed pod=%s port=%d request=%s error=%s", pod.key, pair.port, pair.request_id, e)
            await self._end(pair, message)
            return
        log.debug("Port forward connected pod=%s port=%d request=%s", pod.key, pair.port, pair.request_id)
        try:
            await self._relay(pair, conn)
        finally:
            conn.close()
            await self._end(pair)

    async def _relay(self, pair: StreamPair, conn: socket.socket) -> None:
        """Copy both ways until the pod closes (or fails), kubectl resets the data stream, or writing fails."""
        up = asyncio.create_task(self._pod_to_client(pair, conn))
        down = asyncio.create_task(self._client_to_pod(pair, conn))
        reset = asyncio.create_task(pair.reset.wait())
        waiting = {up, down, reset}
        try:
            while up in waiting and reset in waiting:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if down in done and down.exception() is not None:
                    break  # the pod stopped reading (EPIPE, reset): containerd ends the connection then too
        finally:
            for task in (up, down, reset):
                task.cancel()
            results = await asyncio.gather(up, down, reset, return_exceptions=True)
        for result in results:
            if isinstance(result, OSError):
                log.debug("Port forward connection ended pod=%s port=%d request=%s error=%s", self.worker.pod.key,
                          pair.port, pair.request_id, result)

    async def _pod_to_client(self, pair: StreamPair, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        assert pair.data_id is not None
        while data := await loop.sock_recv(conn, READ_SIZE):
            if pair.reset.is_set():
                return
            await self.send(spdy.data_frame(pair.data_id, data))

    async def _client_to_pod(self, pair: StreamPair, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while (chunk := await pair.inbox.get()) is not None:
            pair.pending -= len(chunk)
            if pair.pending <= MAX_PENDING:
                pair.drained.set()
            await loop.sock_sendall(conn, chunk)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)  # kubectl's side ended: pass the half-close on, keep reading the reply

    async def _end(self, pair: StreamPair, message: str = "") -> None:
        """The kubelet's ending: the error (if any) on the error stream, then close the error and data streams."""
        pair.drained.set()
        with contextlib.suppress(ConnectionError):
            if message:
                await self._print_error(pair, message)
            await self.close_stream(pair.error_id)
            await self.close_stream(pair.data_id)
        for stream_id in (pair.error_id, pair.data_id):
            if stream_id is not None:
                self.streams.pop(stream_id, None)

    async def close(self) -> None:
        """The tunnel is gone: stop every forwarded connection (their sockets close) and every timer."""
        for pair in self.pairs.values():
            if pair.timer is not None:
                pair.timer.cancel()
        self.pairs.clear()
        for stream_pair, _ in list(self.streams.values()):
            stream_pair.drained.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ----- the HTTP handler ----------------------------------------------------------------------------------------


async def handle(server: ApiContext, request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    worker = server.find_pod(request.match_info["namespace"], name)
    if worker is None:
        return not_found("pods", name)
    ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), autoping=True)
    ready = ws.can_prepare(request)
    if not ready.ok:
        return status(400, "BadRequest", f"port-forward needs a websocket upgrade with protocol {TUNNEL_PROTOCOL} "
                                         "(this server does not speak plain SPDY): upgrade request required")
    if ready.protocol != TUNNEL_PROTOCOL:
        return status(400, "BadRequest", "unable to upgrade: no tunneling spdy protocols provided")
    await ws.prepare(request)

    async def send(frame: bytes) -> None:
        if ws.closed:
            raise ConnectionResetError("the port-forward websocket is closed")
        await ws.send_bytes(frame)

    session = PortForwardSession(send, worker)
    log.info("Port forward session started pod=%s remote=%s", worker.pod.key, request.remote)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY:
                continue
            try:
                await session.feed(msg.data)
            except ConnectionError:
                break
            except spdy.SpdyError as e:
                log.warning("Port forward protocol error; closing the session pod=%s error=%s", worker.pod.key, e)
                with contextlib.suppress(ConnectionError):
                    await session.send(spdy.goaway(session.last_stream_id, 1))
                break
    finally:
        await session.close()
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.close()
        log.info("Port forward session ended pod=%s", worker.pod.key)
    return ws
