"""One port, two protocols: HTTPS for kubectl and plain HTTP for /healthz and local tools.

kubectl sends credentials only over TLS (kubernetes/kubectl#744), so the bearer token needs HTTPS even on loopback,
while probes and scripts keep using ``http://127.0.0.1:PORT/healthz``. Each accepted connection is peeked at: a TLS
ClientHello (first byte 0x16) gets the TLS context, anything else is served as plain HTTP by the same aiohttp app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

log = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16
FIRST_BYTE_TIMEOUT = 10.0


class DualListener:
    def __init__(self, factory: Callable[[], asyncio.Protocol], host: str, port: int,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.factory = factory
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

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
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
                conn, _ = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: back off instead of spinning
                log.warning("API accept failed error=%s", e)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._serve(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(FIRST_BYTE_TIMEOUT):
                first = await _peek(loop, conn)
            if not first:
                conn.close()
                return
            tls = self.ssl_context if first[0] == TLS_HANDSHAKE else None
            await loop.connect_accepted_socket(self.factory, conn, ssl=tls,
                                               ssl_handshake_timeout=FIRST_BYTE_TIMEOUT if tls else None)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, TimeoutError, ssl.SSLError) as e:
            log.debug("API connection dropped before the first request error=%s", e)
            conn.close()


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
