"""The three probe handlers (httpGet, tcpSocket, exec) with the kubelet's wire behaviour and Go-like messages.

Each handler returns an ``Outcome`` and never raises for a target's misbehaviour (kubelet-semantics.md §2.3):
``result`` Success/Failure, ``warning`` for a success that emits a ProbeWarning event (a redirect to another host),
``error`` when the probe could not run at all (the worker discards the result but still emits an event).
httpGet and tcpSocket dial the pod IP (or the probe's ``host``) from the daemon's network namespace; nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import json
import os
import re
import socket
import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawResponseMessage
from aiohttp.streams import StreamReader
from yarl import URL

from minikubelet.errors import MinikubeletError
from minikubelet.pod.env import expand
from minikubelet.pod.spec import Container, Probe
from minikubelet.probe import PodView, ProbeResult

__all__ = [
    "MAX_BODY",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "Outcome",
    "exec_probe",
    "http_get",
    "resolve_port",
    "tcp_socket",
]

USER_AGENT = "kube-probe/1.37"  # kube-probe/<major>.<minor> of the Kubernetes version we present (kubectl 1.37)
MAX_BODY = 10 * 1024  # bytes of a response body read at most
MAX_REDIRECTS = 10
_READ_CHUNK = 64 * 1024
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_ATOI = re.compile(r"[+-]?[0-9]+")

TimeoutFactory = Callable[[float], AbstractAsyncContextManager[object]]  # asyncio.timeout or RealClock.timeout


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one probe run produced. ``error``: the probe could not run; the result is discarded."""

    result: ProbeResult
    output: str
    warning: bool = False
    error: bool = False


class PortError(ValueError):
    """A probe port that is neither a known containerPort name nor a number in 1..65535 (Go's text)."""


def resolve_port(port: int | str | None, container: Container) -> int:
    """A number, or a named containerPort, else Go's strconv.Atoi of the string; must be 1..65535."""
    if isinstance(port, int):
        number = port
    else:
        text = port or ""
        named = [p.container_port for p in container.ports if p.name is not None and p.name == text]
        if named:
            number = named[0]
        elif _ATOI.fullmatch(text) is None:
            raise PortError(f'strconv.Atoi: parsing "{text}": invalid syntax')
        else:
            number = int(text)
            if not -(2**63) <= number < 2**63:
                raise PortError(f'strconv.Atoi: parsing "{text}": value out of range')
    if not 0 < number < 65536:
        raise PortError(f"invalid port number: {number}")
    return number


def _join_host_port(host: str, port: int) -> str:
    """Go's net.JoinHostPort: brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _errno_text(exc: OSError) -> str:
    """The Go (syscall) spelling of an OS error: lower-case strerror, no errno prefix."""
    if exc.errno is not None:
        try:
            return os.strerror(exc.errno).lower()
        except ValueError:
            pass
    return str(exc) or type(exc).__name__


def _dial_error(addr: str, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {addr.rsplit(':', 1)[0].strip('[]')}: no such host"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return f"dial tcp {addr}: i/o timeout"
    return f"dial tcp {addr}: connect: {_errno_text(exc)}"


def _target(probe: Probe, container: Container, pod_ip: str) -> tuple[str, int] | Outcome:
    """(host, port) to probe, or the error Outcome when the port does not resolve or there is no address yet."""
    try:
        port = resolve_port(probe.port, container)
    except PortError as exc:
        return Outcome(ProbeResult.UNKNOWN, str(exc), error=True)
    host = probe.host or pod_ip
    if not host:
        return Outcome(ProbeResult.UNKNOWN, "the pod has no IP yet", error=True)
    return host, port


async def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), port)
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)


async def _dial(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to host:port (a name is resolved first). Over the pod bridge the whole
    handshake usually completes inside the first connect(): a second connect() then reports it at once, which
    spares a selector registration and a loop round trip per probe; otherwise the loop waits for it as usual."""
    family, sockaddr = await _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err == errno.EINPROGRESS:
            err = sock.connect_ex(sockaddr)
            if err in (errno.EALREADY, errno.EINPROGRESS):
                await asyncio.get_running_loop().sock_connect(sock, sockaddr)
                err = 0
            elif err == errno.EISCONN:
                err = 0
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return sock


# --------------------------------------------------------------------------------------------------------- httpGet
#
# The response is parsed by aiohttp's HTTP/1.1 client protocol, ``aiohttp.client_proto.ResponseHandler`` (the object
# ClientSession puts on every connection: aiohttp's C response parser and payload stream), driven directly: plain
# http feeds it the bytes of loop.sock_recv on a socket from _dial, https runs it on an asyncio TLS transport.
# ClientSession's per-request machinery (connection pool, DNS cache, happy eyeballs, cookies, proxies, tracing, auth,
# request/response wrappers) and a transport per connection did nothing a probe needs (one new connection per
# probe, keep-alive off, an IP literal) and cost about 90 us of CPU per probe: at 500 probes/s, 20 % of a core fell
# to 11-12 % without them. ResponseHandler, set_response_params, data_received/connection_lost and DataQueue.read
# are stable through aiohttp 3.x (pyproject pins aiohttp < 4); the unit tests run every wire behaviour for real.

_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # Go's httpguts.ValidHeaderFieldValue: CTLs but HTAB
_TLS: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """The probes' TLS client context: no certificate check, no client certificate (InsecureSkipVerify)."""
    global _TLS
    if _TLS is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _TLS = ctx
    return _TLS


def _canonical(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey for a valid name: ``x-custom-header`` -> ``X-Custom-Header``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _headers(probe: Probe) -> list[tuple[str, str]]:
    """The probe's headers as the kubelet builds them: the user's (repeats kept, names canonical), User-Agent and
    Accept added unless given, an explicitly empty Accept removed."""
    headers = [(_canonical(h.name), h.value) for h in probe.http_headers]
    names = {name for name, _ in headers}
    if "User-Agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    if "Accept" not in names:
        headers.append(("Accept", "*/*"))
    elif next(value for name, value in headers if name == "Accept") == "":
        headers = [(name, value) for name, value in headers if name != "Accept"]
    return headers


def probe_url(probe: Probe, host: str, port: int) -> str:
    """Go's formatURL: scheme://host:port + path (the path may carry a query string)."""
    path = probe.path
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{probe.scheme.lower() or 'http'}://{_join_host_port(host, port)}{path}"


@dataclass(frozen=True, slots=True)
class _Request:
    """One GET as it goes on the wire: Go's URL spelling (for messages), where to connect, the request bytes, or
    ``invalid`` (Go's error text) when a header cannot be sent."""

    shown: str
    url: URL
    host: str
    port: int
    tls: bool
    data: bytes
    invalid: str = ""


def _build(shown: str, url: URL, headers: tuple[tuple[str, str], ...]) -> _Request:
    """Go's Request.write: request line, Host (a user Host header wins, else the URL's host[:port] as written), then
    the headers, then ``Connection: close`` (keep-alives are off). No Accept-Encoding: compression is off."""
    tls = url.scheme == "https"
    host, port = url.raw_host or "", url.port or (443 if tls else 80)
    lines = [f"GET {url.raw_path_qs or '/'} HTTP/1.1"]
    host_header = next((value for name, value in headers if name == "Host"), url.raw_authority)
    lines.append(f"Host: {host_header}")
    for name, value in headers:
        if _HEADER_VALUE_BAD.search(value):
            return _Request(shown, url, host, port, tls, b"", f'net/http: invalid header field value for "{name}"')
        if name == "User-Agent":
            if value:
                lines.append(f"User-Agent: {value}")
        elif name != "Host":
            lines.append(f"{name}: {value}")
    lines += ["Connection: close", "", ""]
    return _Request(shown, url, host, port, tls, "\r\n".join(lines).encode("utf-8"))


@functools.lru_cache(maxsize=4096)
def _first_request(probe: Probe, host: str, port: int) -> _Request:
    """The probe's first request for (host, port), built once."""
    shown = probe_url(probe, host, port)  # Go's spelling, for messages
    return _build(shown, URL(shown), tuple(_headers(probe)))


def _tls_error_text(shown: str, exc: ssl.SSLError) -> str:
    if "WRONG_VERSION_NUMBER" in str(exc):
        return f'Get "{shown}": http: server gave HTTP response to HTTPS client'
    reason = exc.reason or str(exc)
    return f'Get "{shown}": remote error: tls: {str(reason).lower().replace("_", " ")}'


def _read_error_text(request: _Request, exc: BaseException) -> str:
    """Go's url.Error text for a request that connected but got no (whole) response."""
    shown, addr = request.shown, _join_host_port(request.host, request.port)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "unexpected EOF"  # the body ended before its Content-Length or last chunk: Go's io.ErrUnexpectedEOF
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f'Get "{shown}": EOF'
    if isinstance(exc, HttpProcessingError):
        detail = " ".join(exc.message.split())
        return f'Get "{shown}": net/http: HTTP/1.x transport connection broken: malformed HTTP response ({detail})'
    if isinstance(exc, ssl.SSLError):
        return _tls_error_text(shown, exc)
    if isinstance(exc, OSError):
        return f'Get "{shown}": read tcp {addr}: read: {_errno_text(exc)}'
    return f'Get "{shown}": {exc}'


class _PlainConnection:
    """Plain HTTP on a connected socket: bytes read with loop.sock_recv are fed to aiohttp's ResponseHandler, which
    parses them (status line, headers, Content-Length/chunked/until-EOF bodies) and reports errors as it does for
    ClientSession. No transport: that spares its setup and teardown (about 20 us of CPU per probe)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._proto = ResponseHandler(self._loop)
        # read_until_eof: a response with neither Content-Length nor chunking ends with the connection, as in Go
        self._proto.set_response_params(read_until_eof=True, auto_decompress=False)

    async def _pump(self) -> bool:
        """Feed the next bytes to the parser; False at EOF (the parser then ends the body or says what is missing)."""
        data = await self._loop.sock_recv(self._sock, _READ_CHUNK)
        if data:
            self._proto.data_received(data)
        else:
            self._proto.connection_lost(None)
        return bool(data)

    async def head(self, data: bytes) -> tuple[RawResponseMessage, StreamReader]:
        await self._loop.sock_sendall(self._sock, data)
        # until the parser has the status line and headers, or an error (EOF first: ServerDisconnectedError)
        while not len(self._proto) and self._proto.exception() is None and await self._pump():
            pass
        return await self._proto.read()

    async def body(self, payload: StreamReader, limit: int) -> bytes:
        buf = bytearray()
        eof = False
        while len(buf) < limit:
            chunk = payload.read_nowait(limit - len(buf))  # raises the payload's error (a body cut short)
            if chunk:
                buf += chunk
            elif payload.at_eof() or eof:
                break
            else:
                eof = not await self._pump()
        return bytes(buf)

    def close(self) -> None:
        self._sock.close()


class _TLSConnection:
    """HTTPS: the same ResponseHandler on an asyncio TLS transport (no certificate check)."""

    def __init__(self, transport: asyncio.Transport, proto: ResponseHandler) -> None:
        self._transport = transport
        self._proto = proto
        proto.set_response_params(read_until_eof=True, auto_decompress=False)

    async def head(self, data: bytes) -> tuple[RawResponseMessage, StreamReader]:
        self._transport.write(data)
        return await self._proto.read()

    async def body(self, payload: StreamReader, limit: int) -> bytes:
        buf = bytearray()
        while len(buf) < limit:
            chunk = await payload.read(limit - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self._transport.close()


async def _connect(request: _Request) -> _PlainConnection | _TLSConnection:
    """A connection for the request; raises _DialError (Go's text) when it cannot be made."""
    try:
        sock = await _dial(request.host, request.port)
    except OSError as exc:
        addr = _join_host_port(request.host, request.port)
        raise _DialError(f'Get "{request.shown}": {_dial_error(addr, exc)}') from exc
    if not request.tls:
        return _PlainConnection(sock)
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_connection(
            lambda: ResponseHandler(loop), sock=sock, ssl=_tls(), server_hostname=request.host
        )
    except BaseException as exc:
        sock.close()
        if isinstance(exc, ssl.SSLError):
            raise _DialError(_tls_error_text(request.shown, exc)) from exc
        if isinstance(exc, OSError):
            addr = _join_host_port(request.host, request.port)
            raise _DialError(f'Get "{request.shown}": {_dial_error(addr, exc)}') from exc
        raise
    return _TLSConnection(transport, proto)


class _DialError(Exception):
    """The connection (or its TLS handshake) failed: the text is Go's."""


async def http_get(
    probe: Probe, container: Container, pod_ip: str, timeout: TimeoutFactory = asyncio.timeout
) -> Outcome:
    """GET scheme://host:port/path; 200–399 is success (a final 3xx a warning); the whole exchange is bounded by
    timeoutSeconds (through ``timeout``: the prober passes its grid clock's); same-host redirects are followed (at
    most 10), other hosts are not."""
    resolved = _target(probe, container, pod_ip)
    if isinstance(resolved, Outcome):
        return resolved
    request = _first_request(probe, *resolved)
    first_host = request.url.host
    requests = 0
    awaiting = "headers"
    try:
        async with timeout(probe.timeout_seconds):
            while True:
                if request.invalid:
                    return Outcome(ProbeResult.FAILURE, f'Get "{request.shown}": {request.invalid}')
                awaiting = "headers"
                requests += 1
                conn = await _connect(request)
                try:
                    message, payload = await conn.head(request.data)
                    status = message.code
                    location = message.headers.get("Location") if status in _REDIRECT_CODES else None
                    if location:
                        target = request.url.join(URL(location))
                        if target.host == first_host and requests >= MAX_REDIRECTS:
                            return Outcome(
                                ProbeResult.FAILURE, f'Get "{request.shown}": stopped after {MAX_REDIRECTS} redirects'
                            )
                        if target.host == first_host:
                            headers = tuple(_headers(probe))
                            if URL(location).is_absolute():
                                headers = tuple(h for h in headers if h[0] != "Host")  # Go keeps a custom Host
                            request = _build(str(target), target, headers)  # only through relative redirects
                            continue
                    awaiting = "body"
                    body = (await conn.body(payload, MAX_BODY)).decode("utf-8", errors="replace")
                finally:
                    conn.close()
                break
    except TimeoutError:
        if awaiting == "body":
            text = f'Get "{request.shown}": net/http: request canceled (Client.Timeout or context cancellation while '
            return Outcome(ProbeResult.FAILURE, text + "reading body)", error=True)
        return Outcome(
            ProbeResult.FAILURE,
            f'Get "{request.shown}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        )
    except _DialError as exc:
        return Outcome(ProbeResult.FAILURE, str(exc))
    except (aiohttp.ClientError, HttpProcessingError, OSError) as exc:
        return Outcome(ProbeResult.FAILURE, _read_error_text(request, exc), error=awaiting == "body")
    if 200 <= status < 300:
        return Outcome(ProbeResult.SUCCESS, body)
    if 300 <= status < 400:
        return Outcome(ProbeResult.SUCCESS, f"Probe terminated redirects, Response body: {body}", warning=True)
    return Outcome(ProbeResult.FAILURE, f"HTTP probe failed with statuscode: {status}")


# ------------------------------------------------------------------------------------------------------- tcpSocket


async def tcp_socket(
    probe: Probe, container: Container, pod_ip: str, timeout: TimeoutFactory = asyncio.timeout
) -> Outcome:
    """Connect to host:port within timeoutSeconds and close at once; no data is sent."""
    resolved = _target(probe, container, pod_ip)
    if isinstance(resolved, Outcome):
        return resolved
    host, port = resolved
    addr = _join_host_port(host, port)
    try:
        async with timeout(probe.timeout_seconds):
            sock = await _dial(host, port)
    except TimeoutError:
        return Outcome(ProbeResult.FAILURE, f"dial tcp {addr}: i/o timeout")
    except OSError as exc:
        return Outcome(ProbeResult.FAILURE, _dial_error(addr, exc))
    sock.close()
    return Outcome(ProbeResult.SUCCESS, "")


# ------------------------------------------------------------------------------------------------------------ exec


def _go_quote(text: str) -> str:
    """Close enough to Go's %q (strconv.Quote) for a command line."""
    return json.dumps(text, ensure_ascii=False)


def exec_argv(probe: Probe, container: Container) -> list[str]:
    """The exec command with $(VAR) expanded from the container's literal env values only (valueFrom entries
    expand to ''), as the kubelet's ExpandContainerCommandOnlyStatic does."""
    env = {var.name: var.value for var in container.env}
    return [expand(arg, env) for arg in probe.command]


async def exec_probe(probe: Probe, container: Container, view: PodView) -> Outcome:
    """Run the command inside the container: exit 0 is success; non-zero a failure with the output; a timeout
    a failure ``command "..." timed out``; a command that cannot start an error (result discarded)."""
    argv = exec_argv(probe, container)
    try:
        code, data = await view.exec_in_container(container.name, list(argv), float(probe.timeout_seconds))
    except MinikubeletError as exc:
        return Outcome(ProbeResult.UNKNOWN, str(exc), error=True)
    if code is None:
        return Outcome(ProbeResult.FAILURE, f"command {_go_quote(' '.join(argv))} timed out")
    output = data[:MAX_BODY].decode("utf-8", errors="replace")
    return Outcome(ProbeResult.SUCCESS if code == 0 else ProbeResult.FAILURE, output)
