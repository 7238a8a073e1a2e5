"""The daemon's side of the nsexec zygote: start it, send requests, await replies (never blocks the loop)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from minikubelet.errors import ContainerStartError
from minikubelet.runtime.owned import OWNER_ENV

log = logging.getLogger(__name__)

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); from minikubelet.nsexec.zygote import main; main(sys.argv[2:])"
)


MAX_REPLY_FDS = 4


def _recv_with_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One reply and the fds passed with it (SCM_RIGHTS), received close-on-exec."""
    data, ancdata, flags, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(MAX_REPLY_FDS * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, type_, cmsg in ancdata:
        if level == socket.SOL_SOCKET and type_ == socket.SCM_RIGHTS:
            usable = len(cmsg) - len(cmsg) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", cmsg[:usable]))
    if flags & socket.MSG_CTRUNC:
        log.warning("Zygote reply carried more fds than expected; the extra ones were dropped by the kernel")
    return data, fds


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Zygote:
    """One zygote process per daemon. ``request()`` is safe to call concurrently; the zygote forks per request."""

    def __init__(self, owner: str = "") -> None:
        self.owner = owner  # the run dir every pause carries in its environ (runtime.owned), "" for none
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", BOOTSTRAP, PACKAGE_PARENT, str(theirs.fileno()), str(os.getpid()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                env=dict(os.environ, **{OWNER_ENV: self.owner}) if self.owner else None,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        asyncio.get_running_loop().add_reader(ours, self._on_readable)
        await self._call("ping", 10, (), {})
        log.info("Zygote started pid=%d", self._proc.pid)

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, fds = _recv_with_fds(self._sock)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                close_fds(fds)
                self._lost()
                return
            try:
                reply = json.loads(data)
                fut = self._pending.pop(int(reply["id"]))
            except (ValueError, KeyError, TypeError):
                log.warning("Zygote sent a reply nobody waits for reply=%r fds=%d", data[:200], len(fds))
                close_fds(fds)
                continue
            if fds:
                reply["fds"] = fds  # the receiver owns them (close_fds on every path that does not keep them)
            if fut.done():
                close_fds(fds)
            else:
                fut.set_result(reply)

    def _lost(self) -> None:
        log.error("Zygote connection lost pid=%s", self.pid)
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock)
            self._sock.close()
            self._sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ContainerStartError("the nsexec helper died", "InternalError"))
        self._pending.clear()

    async def request(self, op: str, *, timeout: float = 30, fds: tuple[int, ...] = (), **args: Any) -> dict[str, Any]:
        """Send one request; return the reply's fields or raise ContainerStartError(message, reason).

        fds the zygote passed back (SCM_RIGHTS) are in the reply as ``"fds"``: the caller owns and must close them."""
        async with self._lock:
            if self._sock is None or self._proc is None or self._proc.returncode is not None:
                if self._proc is not None:
                    log.warning("Restarting the zygote after it went away pid=%s", self._proc.pid)
                await self.start()
        return await self._call(op, timeout, fds, args)

    async def _call(self, op: str, timeout: float, fds: tuple[int, ...], args: dict[str, Any]) -> dict[str, Any]:
        """One request on the started zygote (``request`` without the start check: ``start`` pings through it,
        under the lock ``request`` holds, so it must not take the lock again)."""
        assert self._sock is not None
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        data = json.dumps(dict(args, op=op, id=rid)).encode()
        try:
            socket.send_fds(self._sock, [data], list(fds)) if fds else self._sock.send(data)
            async with asyncio.timeout(timeout):
                reply = await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                close_fds(fut.result().get("fds", []))  # the reply came, but its caller is gone
            raise
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            close_fds(reply.get("fds", []))
            raise ContainerStartError(str(reply.get("error")), str(reply.get("reason") or "StartError"))
        return reply

    async def stop(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock)
            self._sock.close()
            self._sock = None
        if self._proc is not None and self._proc.returncode is None:
            try:
                async with asyncio.timeout(5):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
