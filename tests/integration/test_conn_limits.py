"""Issue 9, point 3: held half-requests cannot starve the daemon: they are dropped after the header timeout,
bounded per client address, and probes, manifests and other clients keep working meanwhile."""

from __future__ import annotations

import select
import socket
import time

from tests.harness import BUSYBOX, DaemonHarness, http_get, pod_yaml, sh

HELD = 300


def closed(s: socket.socket) -> bool:
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def test_half_requests_are_bounded_and_dropped_while_pods_keep_working(daemon: DaemonHarness) -> None:
    web = {"name": "web", "image": "busybox", "command": [BUSYBOX, "sh", "-c",
                                                          "echo ok > /tmp/ok; exec busybox httpd -f -p 8080 -h /tmp"],
           "readinessProbe": {"httpGet": {"path": "/ok", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}}
    daemon.write("web.yaml", pod_yaml("web", [web]))

    def ready() -> bool:
        pod = daemon.pod("web")
        return bool(pod and any(c.get("ready") for c in pod["status"].get("containerStatuses", [])))

    daemon.wait_for(ready, 30, "web ready")
    socks: list[socket.socket] = []
    try:
        for _ in range(HELD):  # one byte each: past the first-byte peek, never a complete header
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            s.sendall(b"G")
            socks.append(s)
        time.sleep(2)
        held = [s for s in socks if not closed(s)]
        assert len(held) <= 128, f"{len(held)} half-requests held from one address"

        # another client address is served meanwhile; pods keep probing; a new manifest starts
        other = socket.create_connection(("127.0.0.1", daemon.port), timeout=10, source_address=("127.0.0.2", 0))
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"200 OK" in other.recv(4096)
        other.close()
        daemon.write("late.yaml", pod_yaml("late", [sh("main", "sleep 100000")]))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6:
            assert ready(), "the readiness probe failed while the API was flooded"
            time.sleep(0.5)
        # the held half-requests are dropped once the 10 s header timeout passes
        daemon.wait_for(lambda: all(closed(s) for s in held), 25, "half-requests dropped by the server")
    finally:
        for s in socks:
            s.close()
    daemon.wait_running("late")
    assert http_get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=10) == "ok"
    assert ready()
    assert "too many held" in daemon.log()
    assert "Too many open files" not in daemon.log()
