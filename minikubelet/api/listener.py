"""One port, two protocols: HTTPS for kubectl and plain HTTP for /healthz and local tools.

kubectl sends credentials only over TLS (kubernetes/kubectl#744), so the bearer token needs HTTPS even on loopback,
while probes and scripts keep using ``http://127.0.0.1:PORT/healthz``. Each accepted connection is peeked at: a TLS
ClientHello (first byte 0x16) gets the TLS context, anything else is served as plain HTTP by the same aiohttp app.

Connections cannot starve the daemon (issue 9, point 3): a connection whose first request header is not complete
within ``HEADER_TIMEOUT`` (or that sits idle, between requests, for ``IDLE_TIMEOUT``) is dropped; at most
``per_address`` connections per client address and ``total`` in all are held (a fraction of the descriptor
limit, so probes, manifests and records always find descriptors); one over is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16
FIRST_BYTE_TIMEOUT = 10.0
HEADER_TIMEOUT = 10.0  # from accept to a complete first request header
IDLE_TIMEOUT = 60.0  # between requests on a kept-alive connection (a half-sent next request included)
MAX_TOTAL = 1024
MAX_PER_ADDRESS = 128
SWEEP_INTERVAL = 1.0


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one (pods, probes and records need many); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("Could not raise the open-file limit soft=%d hard=%d error=%s", soft, hard, e)
    return soft


@dataclass(slots=True, eq=False)  # identity-hashed: held in a set
class Conn:
    address: str
    since: float  # accept, or the end of the last request
    transport: asyncio.BaseTransport | None = None
    in_flight: int = 0
    served: int = 0


@dataclass
class ConnectionTracker:
    """Counts held API connections and drops those that hold a descriptor without a request in progress."""

    total: int = MAX_TOTAL
    per_address: int = MAX_PER_ADDRESS
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    conns: set[Conn] = field(default_factory=set)
    by_transport: dict[int, Conn] = field(default_factory=dict)
    by_address: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    _last_refusal_log: float = 0.0

    @classmethod
    def for_fd_limit(cls, soft: int) -> ConnectionTracker:
        total = max(16, min(MAX_TOTAL, soft // 4))  # three quarters of the descriptors stay for everything else
        return cls(total=total, per_address=max(8, min(MAX_PER_ADDRESS, total // 2)))

    def admit(self, address: str) -> Conn | None:
        held = self.by_address.get(address, 0)
        if len(self.conns) >= self.total or held >= self.per_address:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_refusal_log >= 10:
                log.warning("API connections refused: too many held address=%s held=%d total=%d limit=%d "
                            "per_address=%d refused_so_far=%d", address, held, len(self.conns), self.total,
                            self.per_address, self.refused)
                self._last_refusal_log = now
            return None
        conn = Conn(address, time.monotonic())
        self.conns.add(conn)
        self.by_address[address] = held + 1
        return conn

    def attach(self, conn: Conn, transport: asyncio.BaseTransport) -> None:
        conn.transport = transport
        self.by_transport[id(transport)] = conn

    def release(self, conn: Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            if conn.transport is not None:
                self.by_transport.pop(id(conn.transport), None)
            left = self.by_address.get(conn.address, 1) - 1
            if left > 0:
                self.by_address[conn.address] = left
            else:
                self.by_address.pop(conn.address, None)

    def sweep(self, now: float) -> int:
        """Forget closed connections and drop stalled ones; how many were dropped."""
        dropped = 0
        for conn in list(self.conns):
            t = conn.transport
            if t is None:
                continue  # still before its first byte: _serve's own timeout covers it
            if t.is_closing():
                self.release(conn)
                continue
            limit = self.idle_timeout if conn.served else self.header_timeout
            if conn.in_flight == 0 and now - conn.since > limit:
                log.debug("API connection dropped: no complete request address=%s after_s=%.0f", conn.address,
                          now - conn.since)
                t.abort() if isinstance(t, asyncio.Transport) else t.close()
                self.release(conn)
                dropped += 1
        return dropped

    def middleware(self) -> Middleware:
        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self.by_transport.get(id(request.transport)) if request.transport is not None else None
            if conn is None:
                return await handler(request)
            conn.in_flight += 1
            try:
                return await handler(request)
            finally:
                conn.in_flight -= 1
                conn.served += 1
                conn.since = time.monotonic()

        return track


class DualListener:
    def __init__(self, factory: Callable[[], asyncio.Protocol], host: str, port: int,
                 ssl_context: ssl.SSLContext | None, tracker: ConnectionTracker | None = None) -> None:
        self.factory = factory
        self.tracker = tracker or ConnectionTracker()
        self._sweeper: asyncio.Task[None] | None = None
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family, backlog=512)
        sock.setblocking(False)
        self._sock = sock
        self._task = asyncio.create_task(self._accept_loop(), name="api accept")
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="api connection sweeper")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.tracker.sweep(time.monotonic())

    async def stop(self) -> None:
        for t in (self._task, self._sweeper):
            if t is not None:
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: back off instead of spinning
                log.warning("API accept failed error=%s", e)
                await asyncio.sleep(0.1)
                continue
            held = self.tracker.admit(str(peer[0]) if isinstance(peer, tuple) else str(peer))
            if held is None:
                conn.close()
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._serve(conn, held))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket, held: Conn) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(FIRST_BYTE_TIMEOUT):
                first = await _peek(loop, conn)
            if not first:
                conn.close()
                self.tracker.release(held)
                return
            tls = self.ssl_context if first[0] == TLS_HANDSHAKE else None
            transport, _ = await loop.connect_accepted_socket(
                self.factory, conn, ssl=tls, ssl_handshake_timeout=FIRST_BYTE_TIMEOUT if tls else None)
            self.tracker.attach(held, transport)
        except asyncio.CancelledError:
            conn.close()
            self.tracker.release(held)
            raise
        except (OSError, TimeoutError, ssl.SSLError) as e:
            log.debug("API connection dropped before the first request error=%s", e)
            conn.close()
            self.tracker.release(held)


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(conn.fileno(), _resolve, ready)
            try:
                await ready
            finally:
                with contextlib.suppress(Exception):
                    loop.remove_reader(conn.fileno())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
