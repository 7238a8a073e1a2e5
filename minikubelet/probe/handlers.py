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
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy, istr
from yarl import URL

from minikubelet.containerenv import expand
from minikubelet.errors import MinikubeletError
from minikubelet.podspec import Container, Probe
from minikubelet.probe import PodView, ProbeResult

__all__ = [
    "MAX_BODY",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "Outcome",
    "exec_probe",
    "http_get",
    "new_http_session",
    "resolve_port",
    "tcp_socket",
]

USER_AGENT = "kube-probe/1.37"  # kube-probe/<major>.<minor> of the Kubernetes version we present (kubectl 1.37)
MAX_BODY = 10 * 1024  # bytes of a response body read at most
MAX_REDIRECTS = 10
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_ATOI = re.compile(r"[+-]?[0-9]+")


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


# --------------------------------------------------------------------------------------------------------- httpGet


# aiohttp adds these unless told not to: ours are set (or deliberately left out) by _headers; never ask for compression
_SKIP_AUTO_HEADERS = frozenset(istr(h) for h in ("Accept", "Accept-Encoding", "User-Agent"))
# the whole exchange is bounded by asyncio.timeout(timeoutSeconds) in http_get: no aiohttp timers on top
_NO_TIMEOUTS = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


def new_http_session() -> aiohttp.ClientSession:
    """The session every httpGet probe shares, with as little per-request work as aiohttp allows: no proxy from the
    environment, no keep-alive, no TLS verification, no decompression, no cookies (Go's probe client has no jar),
    no connection limit, no aiohttp timeouts (http_get bounds the exchange), no tracing, our auto headers skipped."""
    connector = aiohttp.TCPConnector(force_close=True, limit=0, ssl=False)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=_NO_TIMEOUTS,
        skip_auto_headers=_SKIP_AUTO_HEADERS,
    )


def _headers(probe: Probe) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for h in probe.http_headers:
        headers.add(h.name, h.value)
    if "User-Agent" not in headers:
        headers["User-Agent"] = USER_AGENT
    if "Accept" not in headers:
        headers["Accept"] = "*/*"
    elif headers.get("Accept", "") == "":
        del headers["Accept"]  # an explicitly empty Accept removes it
    headers["Connection"] = "close"  # no keep-alive (the connector force-closes too)
    return headers


def probe_url(probe: Probe, host: str, port: int) -> str:
    """Go's formatURL: scheme://host:port + path (the path may carry a query string)."""
    path = probe.path
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{probe.scheme.lower() or 'http'}://{_join_host_port(host, port)}{path}"


@dataclass(frozen=True, slots=True)
class _Request:
    """What http_get sends for one (probe, host, port), computed once: Go's URL spelling, the URL, the headers."""

    shown: str
    url: URL
    headers: CIMultiDictProxy[str]


@functools.lru_cache(maxsize=4096)
def _request(probe: Probe, host: str, port: int) -> _Request:
    shown = probe_url(probe, host, port)  # Go's spelling, for messages (yarl drops a default port)
    return _Request(shown, URL(shown), CIMultiDictProxy(_headers(probe)))


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    content = resp.content
    buf = bytearray()
    while len(buf) < limit:
        chunk = await content.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
        if content.at_eof():
            break
    return bytes(buf)


def _client_error_text(shown: str, url: URL, exc: BaseException) -> str:
    """Go's url.Error text for a failed request: ``Get "<url>": <cause>``."""
    host = url.host or ""
    addr = _join_host_port(host, url.port or (443 if url.scheme == "https" else 80))
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        if "WRONG_VERSION_NUMBER" in str(cause):
            return f'Get "{shown}": http: server gave HTTP response to HTTPS client'
        reason = getattr(cause, "reason", None) or str(cause)
        return f'Get "{shown}": remote error: tls: {str(reason).lower().replace("_", " ")}'
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f'Get "{shown}": {_dial_error(addr, exc.os_error)}'
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f'Get "{shown}": EOF'
    if isinstance(exc, aiohttp.ClientOSError):
        return f'Get "{shown}": read tcp {addr}: read: {_errno_text(exc)}'
    if isinstance(exc, aiohttp.ClientResponseError):
        detail = " ".join(exc.message.split())
        return f'Get "{shown}": net/http: HTTP/1.x transport connection broken: malformed HTTP response ({detail})'
    return f'Get "{shown}": {exc}'


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


async def http_get(probe: Probe, container: Container, pod_ip: str, session: aiohttp.ClientSession) -> Outcome:
    """GET scheme://host:port/path; 200–399 is success (a final 3xx a warning); the whole exchange is bounded by
    timeoutSeconds; same-host redirects are followed (at most 10), other hosts are not."""
    resolved = _target(probe, container, pod_ip)
    if isinstance(resolved, Outcome):
        return resolved
    request = _request(probe, *resolved)
    shown, url = request.shown, request.url
    headers: CIMultiDictProxy[str] | CIMultiDict[str] = request.headers
    first_host = url.host
    # a session from new_http_session() skips these already: no per-request set to build
    skip = None if session.skip_auto_headers >= _SKIP_AUTO_HEADERS else _SKIP_AUTO_HEADERS
    requests = 0
    awaiting = "headers"
    try:
        async with asyncio.timeout(probe.timeout_seconds):
            while True:
                awaiting = "headers"
                requests += 1
                async with session.get(
                    url, headers=headers, skip_auto_headers=skip, allow_redirects=False, ssl=False
                ) as resp:
                    location = resp.headers.get("Location") if resp.status in _REDIRECT_CODES else None
                    if location:
                        target = url.join(URL(location))
                        if target.host == first_host and requests >= MAX_REDIRECTS:
                            return Outcome(
                                ProbeResult.FAILURE, f'Get "{shown}": stopped after {MAX_REDIRECTS} redirects'
                            )
                        if target.host == first_host:
                            if URL(location).is_absolute() and "Host" in headers:
                                headers = CIMultiDict(headers)
                                del headers["Host"]  # Go keeps a custom Host only through relative redirects
                            url, shown = target, str(target)
                            continue
                    awaiting = "body"
                    body = (await _read_at_most(resp, MAX_BODY)).decode("utf-8", errors="replace")
                    status = resp.status
                    break
    except TimeoutError:
        if awaiting == "body":
            text = f'Get "{shown}": net/http: request canceled (Client.Timeout or context cancellation while '
            return Outcome(ProbeResult.FAILURE, text + "reading body)", error=True)
        return Outcome(
            ProbeResult.FAILURE,
            f'Get "{shown}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        )
    except (aiohttp.ClientError, OSError) as exc:
        text = _client_error_text(shown, url, exc)
        return Outcome(ProbeResult.FAILURE, text, error=awaiting == "body")
    if 200 <= status < 300:
        return Outcome(ProbeResult.SUCCESS, body)
    if 300 <= status < 400:
        return Outcome(ProbeResult.SUCCESS, f"Probe terminated redirects, Response body: {body}", warning=True)
    return Outcome(ProbeResult.FAILURE, f"HTTP probe failed with statuscode: {status}")


# ------------------------------------------------------------------------------------------------------- tcpSocket


async def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), port)
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)


async def tcp_socket(probe: Probe, container: Container, pod_ip: str) -> Outcome:
    """Connect to host:port within timeoutSeconds and close at once; no data is sent."""
    resolved = _target(probe, container, pod_ip)
    if isinstance(resolved, Outcome):
        return resolved
    host, port = resolved
    addr = _join_host_port(host, port)
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(probe.timeout_seconds):
            family, sockaddr = await _resolve(host, port)
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except TimeoutError:
        return Outcome(ProbeResult.FAILURE, f"dial tcp {addr}: i/o timeout")
    except OSError as exc:
        return Outcome(ProbeResult.FAILURE, _dial_error(addr, exc))
    finally:
        if sock is not None:
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
