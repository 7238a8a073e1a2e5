"""A real registry for tests: Debian's ``docker-registry`` on 127.0.0.1:<free port>, storage in a temp dir.

Modes: ``anonymous``, ``htpasswd`` (Basic, bcrypt through apache2-utils' ``htpasswd``) and ``token`` (the flow
Docker Hub uses: the registry answers Bearer challenges, a test token server on another loopback port issues JWTs
signed by a test key (``openssl``) that the registry trusts through ``rootcertbundle`` and the ``x5c`` header).
The processes are always stopped on teardown.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclass
class LocalRegistry:
    host: str  # 127.0.0.1:<port>
    root: Path  # the registry's storage
    username: str = ""
    password: str = ""
    proc: subprocess.Popen[bytes] | None = None
    token: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 JWTs for ``repository:<name>:pull`` to a fixed user (Basic to the realm), or anonymously."""

    def __init__(self, root: Path, username: str, password: str, anonymous: bool = False) -> None:
        self.key, self.cert = root / "token.key", root / "token.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
                "-days",
                "1",
                "-subj",
                "/CN=mk-test-token",
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.username, self.password, self.anonymous = username, password, anonymous
        self.issued = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - containerd tries the OAuth2 POST first; 405 says "use GET"
                self.send_response(405)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                want = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
                if auth != want and not (server.anonymous and not auth):
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps(
                    {"token": server.sign(q.get("service", [""])[0], q.get("scope", [])), "expires_in": 300}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, service: str, scopes: list[str]) -> str:
        self.issued += 1
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        claims = {
            "iss": "mk-test-issuer",
            "sub": self.username,
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": f"t{self.issued}-{now}",
            "access": access,
        }
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing}.{_b64url(sig)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _config(root: Path, port: int, htpasswd: Path | None, token: TokenServer | None = None) -> str:
    auth = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n" if htpasswd else ""
    if token is not None:
        auth = (
            f"auth:\n  token:\n    realm: {token.url}\n    service: test-registry\n"
            f"    issuer: mk-test-issuer\n    rootcertbundle: {token.cert}\n"
        )
    return (
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )


def serve(reg: LocalRegistry, append: bool = False, timeout: float = 10) -> None:
    """Start ``reg``'s docker-registry on its config.yml (storage and port kept) and wait until ``/v2/`` answers."""
    log = open(reg.root / "registry.log", "ab" if append else "wb")  # noqa: SIM115 - the child holds it
    reg.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(reg.root / "config.yml")], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{reg.url}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for credentials
        except OSError:
            if reg.proc.poll() is not None or time.monotonic() > deadline:
                log_text = (reg.root / "registry.log").read_text()
                raise RuntimeError(f"docker-registry did not start: {log_text}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def running_registry(
    mode: str = "anonymous", username: str = "tester", password: str = "s3cret"
) -> Iterator[LocalRegistry]:
    """Start a registry, wait until ``/v2/`` answers, and stop it (and remove its storage) on exit."""
    root = Path(tempfile.mkdtemp(prefix="mk-registry-"))
    htpasswd: Path | None = None
    token: TokenServer | None = None
    if mode == "token":
        token = TokenServer(root, username, password)
    elif mode == "htpasswd":
        htpasswd = root / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), username, password], check=True, capture_output=True)
    elif mode != "anonymous":
        raise ValueError(f"unknown registry mode {mode!r}")
    port = free_port()
    (root / "config.yml").write_text(_config(root, port, htpasswd, token))
    reg = LocalRegistry(
        host=f"127.0.0.1:{port}",
        root=root,
        username=username if mode != "anonymous" else "",
        password=password if mode != "anonymous" else "",
        token=token,
    )
    try:
        serve(reg)
        yield reg
    finally:
        reg.stop()
        if token is not None:
            token.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def slow_proxy(upstream: str, chunk: int = 64 << 10, delay: float = 0.05) -> Iterator[str]:
    """A loopback HTTP proxy to ``upstream`` that sends bodies ``chunk`` bytes per ``delay`` s (a slow registry)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_a: object) -> None:
            pass

        def _forward(self, method: str) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range", "authorization")}
            req = urllib.request.Request(upstream + self.path, method=method, headers=headers)
            try:
                resp = urllib.request.urlopen(req, timeout=10)
            except urllib.error.HTTPError as e:
                resp = e
            with resp:
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.end_headers()
                try:
                    while method == "GET" and (data := resp.read(chunk)):
                        self.wfile.write(data)
                        self.wfile.flush()
                        time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        def do_GET(self) -> None:  # noqa: N802
            self._forward("GET")

        def do_HEAD(self) -> None:  # noqa: N802
            self._forward("HEAD")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
