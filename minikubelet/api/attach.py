"""``pods/attach`` (``kubectl attach [-it]``, ``kubectl run -it`` / ``run --rm -i``) over websocket
``v5.channel.k8s.io``, the frames of exec (api/exec.py); ``pods/ephemeralcontainers``: not served yet.

A container with ``stdin`` or ``tty`` has a relay (nsexec/relay.py) that holds its stdin or pty and copies its output
to the log file; it listens on ``<run dir>/pods/<uid>/attach/<container>.<instance>.sock``. An attach connects there
(non-blocking, from the event loop) and translates: websocket stdin (0), resize (4) and close-stdin (FF 00) to relay
frames, relay output to stdout (1) / stderr (2). When the container exits the relay closes the socket and the client
gets a Success status; the relay outlives the daemon, so a restarted daemon attaches again. A container without
stdin or tty has no relay: that is said in a Status (use kubectl logs -f). Every Status carries ``details``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from minikubelet.api import exec as wsexec
from minikubelet.api.errors import ApiError, not_found_error

if TYPE_CHECKING:
    from minikubelet.api.context import ApiContext
    from minikubelet.pod.worker import PodWorker

log = logging.getLogger(__name__)


class relay:  # noqa: N801 - the relay's frames (= nsexec/relay.py, which the API layer may not import)
    """1 byte type, 4 bytes big-endian length, payload."""

    STDIN, STDOUT, STDERR, RESIZE, CLOSE = 0, 1, 2, 4, 255
    HEADER = struct.Struct(">BI")

    @staticmethod
    def frame(kind: int, data: bytes = b"") -> bytes:
        return relay.HEADER.pack(kind, len(data)) + data

README = "see 'Not supported' in minikubelet's README"


def _pod(server: ApiContext, request: web.Request) -> tuple[str, str]:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    if server.find_pod(ns, name) is None:
        raise not_found_error("pods", name)
    return ns, name


async def _to_client(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
    while True:
        try:
            kind, length = relay.HEADER.unpack(await reader.readexactly(relay.HEADER.size))
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if kind in (relay.STDOUT, relay.STDERR) and not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.send_bytes(wsexec.encode_frame(kind, payload))


async def _to_relay(ws: web.WebSocketResponse, writer: asyncio.StreamWriter, stdin: bool, tty: bool) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.BINARY or not msg.data:
            continue
        channel, payload = wsexec.decode_frame(msg.data)
        out = b""
        if channel == wsexec.STDIN and stdin and payload:
            out = relay.frame(relay.STDIN, payload)
        elif channel == wsexec.RESIZE and tty:
            size = wsexec.parse_resize(payload)
            if size is not None:
                out = relay.frame(relay.RESIZE, struct.pack(">HH", *size))
        elif channel == wsexec.CLOSE and payload[:1] == bytes((wsexec.STDIN,)) and stdin:
            out = relay.frame(relay.CLOSE)
        if out:
            writer.write(out)
            await writer.drain()


def _socket(worker: PodWorker, container: str) -> str | None:
    """The relay socket of the container's current instance, if it has one (stdin or tty)."""
    rec = worker.state.records.get(container)
    if rec is None or rec.instances == 0:
        return None
    return str(worker.runtime.attach_socket(worker.pod.uid, f"{container}.{rec.instances - 1}"))


async def handle(server: ApiContext, request: web.Request) -> web.StreamResponse:
    """``kubectl attach`` (and ``run -it``, which attaches): the websocket joined to the container's relay."""
    ns, name = _pod(server, request)
    worker = server.find_pod(ns, name)
    assert worker is not None
    flag = "" if ns == "default" else f" -n {ns}"
    containers = {c.name: c for c in worker.pod.spec.containers}
    container = request.query.get("container") or next(iter(containers), "")
    if container not in containers:
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}",
                       {"name": name, "kind": "pods"})
    spec = containers[container]
    if not (spec.stdin or spec.tty):
        raise ApiError(400, "BadRequest",
                       f'container {container} of pod "{name}" has neither stdin nor tty, so there is nothing to '
                       f"attach to on this node (minikubelet): use kubectl logs -f{flag} {name} for its output, or "
                       f"kubectl exec -it{flag} {name} -- sh for a shell", {"name": name, "kind": "pods"})
    ws = web.WebSocketResponse(protocols=(wsexec.PROTOCOL,))
    ready = ws.can_prepare(request)
    if not ready.ok or ready.protocol != wsexec.PROTOCOL:
        raise ApiError(400, "BadRequest", f"attach needs a websocket upgrade with protocol {wsexec.PROTOCOL} (this "
                       "server does not speak SPDY): upgrade request required", {"name": name, "kind": "pods"})
    path = _socket(worker, container)
    try:
        if path is None:
            raise FileNotFoundError(container)
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError as e:
        raise ApiError(400, "BadRequest", f"container {container} of pod \"{name}\" is not running (no terminal to "
                       f"attach to: {e.strerror or e}); see kubectl logs{flag} {name}",
                       {"name": name, "kind": "pods"}) from e
    await ws.prepare(request)
    log.info("Attach started pod=%s container=%s", worker.pod.key, container)
    out = asyncio.create_task(_to_client(reader, ws))
    inp = asyncio.create_task(_to_relay(ws, writer, wsexec._flag(request, "stdin"), spec.tty))
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out, inp):
            task.cancel()
        await asyncio.gather(out, inp, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    log.info("Attach finished pod=%s container=%s", worker.pod.key, container)
    if not ws.closed:
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(wsexec.status_frame(wsexec.success_status()))
            await ws.close()
    return ws


async def ephemeral_containers(server: ApiContext, request: web.Request) -> web.StreamResponse:
    """``kubectl debug POD``: the subresource exists but adds nothing; 405 with the pod's name in ``details`` (a 404
    without a name would make kubectl say "ephemeral containers are disabled for this cluster")."""
    ns, name = _pod(server, request)
    flag = "" if ns == "default" else f" -n {ns}"
    raise ApiError(405, "MethodNotAllowed",
                   f'ephemeral containers (kubectl debug) are not supported by this node (minikubelet) yet, so none '
                   f'can be added to pod "{name}": use kubectl exec -it{flag} {name} -- sh, or add a debugging '
                   f"container to the pod's manifest; {README}", {"name": name, "kind": "pods"})
