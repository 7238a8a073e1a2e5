"""A real registry for tests: Debian's ``docker-registry`` on 127.0.0.1:<free port>, storage in a temp dir.

Modes: ``anonymous`` and ``htpasswd`` (Basic, bcrypt through apache2-utils' ``htpasswd``). The process is
always stopped on teardown (the context manager and the pytest fixture both guarantee it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.error
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


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    auth = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n" if htpasswd else ""
    return (
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )


@contextlib.contextmanager
def running_registry(
    mode: str = "anonymous", username: str = "tester", password: str = "s3cret"
) -> Iterator[LocalRegistry]:
    """Start a registry, wait until ``/v2/`` answers, and stop it (and remove its storage) on exit."""
    root = Path(tempfile.mkdtemp(prefix="mk-registry-"))
    htpasswd: Path | None = None
    if mode == "htpasswd":
        htpasswd = root / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), username, password], check=True, capture_output=True)
    elif mode != "anonymous":
        raise ValueError(f"unknown registry mode {mode!r}")
    port = free_port()
    (root / "config.yml").write_text(_config(root, port, htpasswd))
    reg = LocalRegistry(
        host=f"127.0.0.1:{port}",
        root=root,
        username=username if htpasswd else "",
        password=password if htpasswd else "",
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed below
    reg.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"{reg.url}/v2/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for credentials
            except OSError:
                if reg.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {(root / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield reg
    finally:
        reg.stop()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
