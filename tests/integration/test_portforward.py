"""``kubectl port-forward`` for real: the pip kubectl (websocket-tunneled SPDY, its default) against a real daemon.

The pods' servers listen on 127.0.0.1 only, so a forward works only if the connection is made inside the pod's
network namespace, as the kubelet does it."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import BUSYBOX, DaemonHarness, alive, free_port, http_get, pod_yaml
from tests.integration.test_logs_exec import Kubectl

pytestmark = pytest.mark.root

BIG = 1_500_000  # bytes of the large file: many DATA frames and websocket messages


@pytest.fixture
def kubectl(daemon: DaemonHarness, kubectl_bin: Path, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def listening(daemon: DaemonHarness, pod: str, port: int) -> bool:
    """True once something listens on ``port`` in the pod's network namespace (its /proc/PID/net/tcp)."""
    rows = Path(f"/proc/{daemon.pause_pid(pod)}/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


def local_httpd(name: str, ports: list[int], root: str) -> dict[str, object]:
    """A container serving ``root`` with busybox httpd on 127.0.0.1:PORT for each port (loopback only)."""
    servers = " & ".join(f"{BUSYBOX} httpd -f -p 127.0.0.1:{p} -h {root}" for p in ports)
    script = (
        f"mkdir -p {root} && echo hello from $(hostname) > {root}/index.html && "
        f"head -c {BIG} /dev/zero | tr '\\0' x > {root}/big && {{ {servers} & wait; }}"
    )
    return {"name": name, "image": "busybox", "command": [BUSYBOX, "sh", "-c", script]}


@pytest.fixture
def web(daemon: DaemonHarness, tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    daemon.write("pfweb.yaml", pod_yaml("pfweb", [local_httpd("web", [8080], str(root))]))
    pod = daemon.wait_running("pfweb")
    daemon.wait_for(lambda: listening(daemon, "pfweb", 8080), 10, "httpd listening in the pod")
    pod_ip = pod["status"]["podIP"]
    with pytest.raises(OSError):  # not reachable from the node: only through the pod's loopback
        http_get(f"http://{pod_ip}:8080/index.html", timeout=2)
    yield "pfweb"


class Forward:
    """A running ``kubectl port-forward``; ``wait_ready`` parses its "Forwarding from" lines."""

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self.proc = kubectl.popen("port-forward", *args)
        self.lines: list[str] = []

    def wait_ready(self, count: int, timeout: float = 20) -> list[tuple[str, int, int]]:
        """(address, local port, remote port) of the first ``count`` listeners."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        found: list[tuple[str, int, int]] = []
        while len(found) < count:
            assert time.monotonic() < deadline, f"no Forwarding lines: {self.lines}"
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"kubectl exited rc={self.proc.wait()}: {self.stderr()}")
            self.lines.append(line)
            m = re.match(r"Forwarding from (\S+):(\d+) -> (\d+)", line)
            if m:
                found.append((m.group(1), int(m.group(2)), int(m.group(3))))
        return found

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids.update(int(c) for c in (task / "children").read_text().split())
    return kids


def test_forward_to_loopback_only_server(daemon: DaemonHarness, kubectl: Kubectl, web: str) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    kubectl("get", "pod", web)  # warm the discovery cache: the fd baseline is taken after the first connections
    fds = _fds(pid)
    local = free_port()
    fwd = Forward(kubectl, f"pod/{web}", f"{local}:8080")
    try:
        listeners = fwd.wait_ready(1)
        assert ("127.0.0.1", local, 8080) in listeners, fwd.lines
        url = f"http://127.0.0.1:{local}"
        for _ in range(5):  # sequential: a new stream pair per connection
            assert http_get(f"{url}/index.html", timeout=10) == "hello from pfweb\n"
        assert http_get(f"{url}/big", timeout=30) == "x" * BIG
        with ThreadPoolExecutor(8) as pool:  # concurrent: interleaved streams in one SPDY connection
            results = list(
                pool.map(lambda i: http_get(f"{url}/{'big' if i % 4 == 0 else 'index.html'}", 30), range(16))
            )
        assert results == ["x" * BIG if i % 4 == 0 else "hello from pfweb\n" for i in range(16)]
        with pytest.raises(urllib.error.HTTPError) as missing:
            http_get(f"{url}/no-such-file", timeout=10)
        assert missing.value.code == 404
        missing.value.close()
        assert fwd.proc.poll() is None, fwd.stderr()
    finally:
        fwd.stop()
    assert not alive(fwd.proc.pid)
    daemon.wait_for(lambda: "Port forward session ended pod=default/pfweb" in daemon.log(), 10, "the session end")
    daemon.wait_for(lambda: _fds(pid) <= fds, 10, "port-forward must not leak file descriptors in the daemon")
    zygote = [c for c in _children(pid) if _comm(c) == "mk-zygote"]
    assert len(zygote) == 1
    # every connect helper (a fork of the zygote, same name) has exited and been reaped; pauses stay
    daemon.wait_for(
        lambda: not [c for c in _children(zygote[0]) if _comm(c) == "mk-zygote"],
        10,
        "the zygote's connect helpers gone",
    )
    log = daemon.log()
    assert "Port forward session started pod=default/pfweb" in log
    assert "Traceback" not in log, log[-3000:]


def test_several_ports_name_form_and_address(daemon: DaemonHarness, kubectl: Kubectl, tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    daemon.write("pf2.yaml", pod_yaml("pf2", [local_httpd("web", [one, two], str(tmp_path / "www"))]))
    daemon.wait_running("pf2")
    daemon.wait_for(lambda: listening(daemon, "pf2", one) and listening(daemon, "pf2", two), 10, "both httpds")
    fwd = Forward(kubectl, "pf2", str(one), str(two), "--address", "127.0.0.1")  # NAME PORT: same port locally
    try:
        assert sorted(fwd.wait_ready(2)) == sorted([("127.0.0.1", one, one), ("127.0.0.1", two, two)])
        for port in (one, two, one):
            assert http_get(f"http://127.0.0.1:{port}/index.html", timeout=10) == "hello from pf2\n"
    finally:
        fwd.stop()


def test_refused_port_reports_the_kubelet_error(daemon: DaemonHarness, kubectl: Kubectl, web: str) -> None:
    """Nothing listens on 9999: the error comes back on the error stream in the kubelet's words. kubectl ≥1.31
    then ends the whole forward ("lost connection to pod", exit 1), as against a cluster; the daemon is fine."""
    good, bad = free_port(), free_port()
    fwd = Forward(kubectl, f"pod/{web}", f"{good}:8080", f"{bad}:9999")
    try:
        fwd.wait_ready(2)
        assert http_get(f"http://127.0.0.1:{good}/index.html", timeout=10) == "hello from pfweb\n"
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{bad}/", timeout=10)
        assert fwd.proc.wait(timeout=20) == 1
        err = fwd.stderr()
    finally:
        fwd.stop()
    assert "error forwarding port 9999 to pod " in err, err
    assert "failed to connect to localhost:9999 inside namespace" in err, err
    assert "IPv4: dial tcp4 127.0.0.1:9999: connect: connection refused" in err, err
    assert "error: lost connection to pod" in err, err
    # a new forward works right away
    again = free_port()
    fwd = Forward(kubectl, f"pod/{web}", f"{again}:8080")
    try:
        fwd.wait_ready(1)
        assert http_get(f"http://127.0.0.1:{again}/index.html", timeout=10) == "hello from pfweb\n"
    finally:
        fwd.stop()


def test_missing_pod_is_not_found(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    r = kubectl("port-forward", "pod/nope", f"{free_port()}:8080", timeout=30)
    assert r.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in r.stderr, r.stderr
