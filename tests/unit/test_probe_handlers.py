"""Probe handlers against real local servers on loopback (http, https, tcp) and a fake pod view (exec)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from minikubelet.errors import MinikubeletError
from minikubelet.pod.spec import Container, ContainerPort, EnvVar, HTTPHeader, Probe, ProbeKind
from minikubelet.probe import ContainerView, ProbeResult, handlers
from minikubelet.probe.handlers import MAX_BODY, USER_AGENT, Outcome, exec_probe, http_get, resolve_port, tcp_socket
from tests.conftest import free_port

IP = "127.0.0.1"
OTHER_IP = "127.0.0.2"  # another "host" (still loopback)


@dataclass
class Server:
    port: int
    other_port: int
    tls_port: int
    other_hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    tmp: Path = tmp_path_factory.mktemp("tls")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=probe-test"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
async def server(tls_context: ssl.SSLContext) -> AsyncIterator[Server]:
    release = asyncio.Event()
    srv = Server(port=0, other_port=0, tls_port=0)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(release.wait(), 5)
        except TimeoutError:
            pass
        return web.Response(text="late")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="end of chain")
        raise web.HTTPFound(f"/chain/{n - 1}")

    async def other(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{OTHER_IP}:{srv.other_port}/ok", text="moved away")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="a" * (3 * MAX_BODY))

    async def headers(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(list(request.headers.items())))

    async def other_ok(request: web.Request) -> web.Response:
        srv.other_hits.append(request.path)
        return web.Response(text="other")

    app = web.Application()
    app.add_routes(
        [
            web.get("/ok", ok),
            web.get("/fail", fail),
            web.get("/slow", slow),
            web.get("/redirect", redirect),
            web.get("/chain/{n}", chain),
            web.get("/other", other),
            web.get("/big", big),
            web.get("/headers", headers),
        ]
    )
    other_app = web.Application()
    other_app.add_routes([web.get("/ok", other_ok)])
    runner, other_runner = web.AppRunner(app), web.AppRunner(other_app)
    await runner.setup()
    await other_runner.setup()
    srv.port, srv.other_port, srv.tls_port = free_port(IP), free_port(OTHER_IP), free_port(IP)
    await web.TCPSite(runner, IP, srv.port).start()
    await web.TCPSite(runner, IP, srv.tls_port, ssl_context=tls_context).start()
    await web.TCPSite(other_runner, OTHER_IP, srv.other_port).start()
    try:
        yield srv
    finally:
        release.set()
        await runner.cleanup()
        await other_runner.cleanup()


def http_probe(port: int | str, path: str = "/ok", **kw: object) -> Probe:
    return Probe(handler="httpGet", port=port, path=path, **kw)  # type: ignore[arg-type]


C = Container(name="app", image="host", ports=(ContainerPort(container_port=8080, name="http"),))


# ------------------------------------------------------------------------------------------------------ ports


@pytest.mark.parametrize(
    ("port", "expected"),
    [(80, 80), ("http", 8080), ("8081", 8081), ("+90", 90)],
    ids=["int", "named", "numeric-string", "signed"],
)
def test_resolve_port(port: int | str, expected: int) -> None:
    assert resolve_port(port, C) == expected


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("nope", 'strconv.Atoi: parsing "nope": invalid syntax'),
        (" 80", 'strconv.Atoi: parsing " 80": invalid syntax'),
        (70000, "invalid port number: 70000"),
        ("0", "invalid port number: 0"),
        (-1, "invalid port number: -1"),
    ],
    ids=["unknown-name", "space", "too-big", "zero", "negative"],
)
def test_resolve_port_errors(port: int | str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("+", r"\+") + "$"):
        resolve_port(port, C)


# --------------------------------------------------------------------------------------------------------- http


async def test_http_200(server: Server) -> None:
    assert await http_get(http_probe(server.port), C, IP) == Outcome(ProbeResult.SUCCESS, "ok")


async def test_http_500(server: Server) -> None:
    out = await http_get(http_probe(server.port, "/fail"), C, IP)
    assert out == Outcome(ProbeResult.FAILURE, "HTTP probe failed with statuscode: 500")


async def test_http_named_port(server: Server) -> None:
    c = Container(name="app", image="host", ports=(ContainerPort(container_port=server.port, name="web"),))
    assert (await http_get(http_probe("web"), c, IP)).result is ProbeResult.SUCCESS


async def test_http_unknown_port_name_is_an_error() -> None:
    out = await http_get(http_probe("nope"), C, IP)
    assert out == Outcome(ProbeResult.UNKNOWN, 'strconv.Atoi: parsing "nope": invalid syntax', error=True)


async def test_http_timeout(server: Server) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = await http_get(http_probe(server.port, "/slow", timeout_seconds=1), C, IP)
    assert 0.9 < loop.time() - t0 < 1.5
    assert out == Outcome(
        ProbeResult.FAILURE,
        f'Get "http://{IP}:{server.port}/slow": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)",
    )


async def test_http_connection_refused() -> None:
    port = free_port(IP)
    out = await http_get(http_probe(port, "/"), C, IP)
    assert out == Outcome(
        ProbeResult.FAILURE, f'Get "http://{IP}:{port}/": dial tcp {IP}:{port}: connect: connection refused'
    )


async def test_http_redirect_same_host_is_followed(server: Server) -> None:
    assert await http_get(http_probe(server.port, "/redirect"), C, IP) == Outcome(ProbeResult.SUCCESS, "ok")


async def test_http_nine_redirects_are_followed(server: Server) -> None:
    out = await http_get(http_probe(server.port, "/chain/9"), C, IP)
    assert out == Outcome(ProbeResult.SUCCESS, "end of chain")


async def test_http_stops_after_ten_redirects(server: Server) -> None:
    out = await http_get(http_probe(server.port, "/chain/10"), C, IP)
    assert out == Outcome(ProbeResult.FAILURE, f'Get "http://{IP}:{server.port}/chain/1": stopped after 10 redirects')


async def test_http_redirect_to_other_host_is_a_warning(server: Server) -> None:
    out = await http_get(http_probe(server.port, "/other"), C, IP)
    assert out == Outcome(ProbeResult.SUCCESS, "Probe terminated redirects, Response body: moved away", warning=True)
    assert server.other_hits == []


async def test_http_body_is_capped(server: Server) -> None:
    out = await http_get(http_probe(server.port, "/big"), C, IP)
    assert out.result is ProbeResult.SUCCESS
    assert out.output == "a" * MAX_BODY


async def test_http_default_headers(server: Server) -> None:
    out = await http_get(http_probe(server.port, "/headers"), C, IP)
    headers = {k.lower(): v for k, v in json.loads(out.output)}
    assert headers["user-agent"] == USER_AGENT == "kube-probe/1.37"
    assert headers["accept"] == "*/*"
    assert headers["connection"] == "close"
    assert headers["host"] == f"{IP}:{server.port}"
    assert "accept-encoding" not in headers


async def test_http_user_headers(server: Server) -> None:
    user = (
        HTTPHeader("X-Custom", "one"),
        HTTPHeader("X-Custom", "two"),
        HTTPHeader("User-Agent", "mine/1"),
        HTTPHeader("Accept", ""),
        HTTPHeader("Host", "example.test"),
    )
    out = await http_get(http_probe(server.port, "/headers", http_headers=user), C, IP)
    pairs = [(k.lower(), v) for k, v in json.loads(out.output)]
    assert ("x-custom", "one") in pairs and ("x-custom", "two") in pairs
    headers = dict(pairs)
    assert headers["user-agent"] == "mine/1"
    assert headers["host"] == "example.test"
    assert "accept" not in headers


async def test_https_self_signed(server: Server) -> None:
    out = await http_get(http_probe(server.tls_port, scheme="HTTPS"), C, IP)
    assert out == Outcome(ProbeResult.SUCCESS, "ok")


async def test_https_against_plain_http(server: Server) -> None:
    out = await http_get(http_probe(server.port, scheme="HTTPS"), C, IP)
    assert out == Outcome(
        ProbeResult.FAILURE, f'Get "https://{IP}:{server.port}/ok": http: server gave HTTP response to HTTPS client'
    )


async def test_http_host_field_overrides_pod_ip(server: Server) -> None:
    out = await http_get(http_probe(server.port, host=IP), C, "")
    assert out == Outcome(ProbeResult.SUCCESS, "ok")


async def test_http_header_names_are_sent_in_go_canonical_form(server: Server) -> None:
    user = (HTTPHeader("x-lower-case", "v"),)
    out = await http_get(http_probe(server.port, "/headers", http_headers=user), C, IP)
    assert ["X-Lower-Case", "v"] in json.loads(out.output)


async def test_http_header_value_with_a_newline_is_a_failure_and_sends_nothing(server: Server) -> None:
    user = (HTTPHeader("X-Bad", "one\r\nX-Injected: two"),)
    out = await http_get(http_probe(server.port, "/headers", http_headers=user), C, IP)
    url = f"http://{IP}:{server.port}/headers"
    assert out == Outcome(ProbeResult.FAILURE, f'Get "{url}": net/http: invalid header field value for "X-Bad"')


async def test_http_port_80_keeps_the_port_in_host_and_url() -> None:
    request = handlers._first_request(http_probe(80, "/x?y=1"), "10.0.0.9", 80)
    assert request.shown == "http://10.0.0.9:80/x?y=1"
    assert request.data.startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: 10.0.0.9:80\r\n")
    assert request.data.endswith(b"Connection: close\r\n\r\n")


@contextlib.asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[int]:
    """A TCP server on IP that reads one request head, answers ``reply`` verbatim and closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, IP, 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_http_body_without_length_ends_with_the_connection() -> None:
    async with raw_server(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof") as port:
        assert await http_get(http_probe(port), C, IP) == Outcome(ProbeResult.SUCCESS, "until eof")


async def test_http_chunked_body() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    async with raw_server(reply) as port:
        assert await http_get(http_probe(port), C, IP) == Outcome(ProbeResult.SUCCESS, "abcde")


async def test_http_body_cut_short_is_an_error_not_a_failure() -> None:
    async with raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this") as port:
        out = await http_get(http_probe(port), C, IP)
    # discarded by the worker ("probe errored"), with the text of Go's body read error
    assert out == Outcome(ProbeResult.FAILURE, "unexpected EOF", error=True)


async def test_http_connection_closed_without_a_response_is_eof() -> None:
    async with raw_server(b"") as port:
        out = await http_get(http_probe(port), C, IP)
    assert out == Outcome(ProbeResult.FAILURE, f'Get "http://{IP}:{port}/ok": EOF')


async def test_http_malformed_response() -> None:
    async with raw_server(b"SPLAT\r\n\r\n") as port:
        out = await http_get(http_probe(port), C, IP)
    assert out.result is ProbeResult.FAILURE and not out.error
    prefix = f'Get "http://{IP}:{port}/ok": net/http: HTTP/1.x transport connection broken: malformed HTTP response'
    assert out.output.startswith(prefix), out.output


# ---------------------------------------------------------------------------------------------------------- tcp


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((IP, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


async def test_tcp_open(listener: int) -> None:
    assert await tcp_socket(Probe(handler="tcpSocket", port=listener), C, IP) == Outcome(ProbeResult.SUCCESS, "")


async def test_tcp_named_port(listener: int) -> None:
    c = Container(name="app", image="host", ports=(ContainerPort(container_port=listener, name="db"),))
    assert (await tcp_socket(Probe(handler="tcpSocket", port="db"), c, IP)).result is ProbeResult.SUCCESS


async def test_tcp_closed() -> None:
    port = free_port(IP)
    out = await tcp_socket(Probe(handler="tcpSocket", port=port), C, IP)
    assert out == Outcome(ProbeResult.FAILURE, f"dial tcp {IP}:{port}: connect: connection refused")


async def test_tcp_host_field() -> None:
    port = free_port(OTHER_IP)
    out = await tcp_socket(Probe(handler="tcpSocket", port=port, host=OTHER_IP), C, IP)
    assert out.output == f"dial tcp {OTHER_IP}:{port}: connect: connection refused"


async def test_tcp_timeout() -> None:
    """A listener whose accept queue is full drops new SYNs: the dial times out."""
    with socket.socket() as server_sock:
        server_sock.bind((IP, 0))
        server_sock.listen(0)
        port = server_sock.getsockname()[1]
        held = []
        for _ in range(3):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex((IP, port))
            held.append(client)
        try:
            await asyncio.sleep(0.1)
            out = await tcp_socket(Probe(handler="tcpSocket", port=port, timeout_seconds=1), C, IP)
        finally:
            for client in held:
                client.close()
    assert out == Outcome(ProbeResult.FAILURE, f"dial tcp {IP}:{port}: i/o timeout")


# --------------------------------------------------------------------------------------------------------- exec


class ExecView:
    """Just enough of a PodView for exec probes."""

    uid, namespace, name = "uid", "default", "pod"

    def __init__(self, reply: tuple[int | None, bytes] | Exception) -> None:
        self.reply = reply
        self.calls: list[tuple[str, list[str], float]] = []

    def pod_ip(self) -> str:
        return IP

    def container_view(self, container: str) -> ContainerView | None:
        return None

    def deleting(self) -> bool:
        return False

    def finished(self) -> bool:
        return False

    def probe_result(self, container: str, kind: ProbeKind, result: ProbeResult, message: str) -> None:
        pass

    def record_event(self, type_: str, reason: str, message: str, container: str) -> None:
        pass

    async def exec_in_container(self, container: str, argv: list[str], timeout: float) -> tuple[int | None, bytes]:
        self.calls.append((container, argv, timeout))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


EXEC = Probe(handler="exec", command=("ls", "/data/file"), timeout_seconds=2)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((0, b"/data/file\n"), Outcome(ProbeResult.SUCCESS, "/data/file\n")),
        ((2, b"ls: cannot access '/data/file'\n"), Outcome(ProbeResult.FAILURE, "ls: cannot access '/data/file'\n")),
        ((1, b""), Outcome(ProbeResult.FAILURE, "")),
        ((None, b"partial"), Outcome(ProbeResult.FAILURE, 'command "ls /data/file" timed out')),
        (MinikubeletError("cannot exec"), Outcome(ProbeResult.UNKNOWN, "cannot exec", error=True)),
    ],
    ids=["exit-0", "exit-2", "empty-output", "timeout", "cannot-start"],
)
async def test_exec(reply: tuple[int | None, bytes] | Exception, expected: Outcome) -> None:
    view = ExecView(reply)
    assert await exec_probe(EXEC, C, view) == expected
    assert view.calls == [("app", ["ls", "/data/file"], 2.0)]


async def test_exec_expands_only_literal_env() -> None:
    c = Container(
        name="app",
        image="host",
        env=(EnvVar("DIR", "/data"), EnvVar("IP", field_path="status.podIP"), EnvVar("REF", "$(DIR)/x")),
    )
    probe = Probe(handler="exec", command=("cat", "$(DIR)/f", "$(IP)", "$(REF)", "$(NOPE)", "$$(DIR)"))
    view = ExecView((0, b""))
    await exec_probe(probe, c, view)
    assert view.calls[0][1] == ["cat", "/data/f", "", "$(DIR)/x", "$(NOPE)", "$(DIR)"]
