"""Issue 9, point 5: bad input is a 4xx, never a 500 and never a log flood, and disturbs nothing."""

from __future__ import annotations

import json
import os
import socket

from tests.harness import DaemonHarness, pod_yaml, sh
from tests.integration.test_api_errors import Api

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str, namespace: str = "default") -> dict[str, object]:
    doc = json.loads(pod_yaml(name, [sh("main", "sleep 100000")]))
    doc["metadata"]["namespace"] = namespace
    return doc


def test_deep_bodies_long_names_and_fifos_are_refused_clearly(daemon: DaemonHarness) -> None:
    api = Api(daemon)
    daemon.write("keeper.yaml", pod_yaml("keeper", [sh("main", "sleep 100000")]))
    keeper = daemon.wait_running("keeper")

    deep_json = b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d", "labels": ' + b"[" * 10000 + \
        b"]" * 10000 + b"}}"
    code, body = api.call("POST", PODS, deep_json)
    assert code == 400 and "levels deep" in body["message"], body
    deep_yaml = b"apiVersion: v1\nkind: Pod\nmetadata: {name: d, labels: " + b"[" * 10000 + b"]" * 10000 + b"}\n"
    code, body = api.call("POST", PODS, deep_yaml, ctype="application/yaml")
    assert 400 <= code < 500, body
    middling = b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d", "annotations": {"a": ' + \
        b"[" * 500 + b"]" * 500 + b"}}}"
    code, body = api.call("POST", PODS, middling)
    assert code == 400 and "more than 100 levels deep" in body["message"], body
    code, body = api.call("PATCH", "/api/v1/nodes/node1", b"[" * 10000 + b"]" * 10000,
                          ctype="application/merge-patch+json")
    assert 400 <= code < 500, body

    # a namespace + name that cannot be one log directory name: refused at admission, saying why
    long = pod("n" * 230, "default")
    code, body = api.call("POST", PODS, json.dumps(long).encode())
    assert code == 422 and "log directory" in body["message"], body
    daemon.write("long.yaml", json.dumps(pod("m" * 240)))
    daemon.wait_for(lambda: "log directory" in json.loads(daemon.get_text("/manifests/errors")).get(
        str(daemon.manifests / "long.yaml"), ""), 20, "the long name refused")

    # a FIFO named like a manifest: refused with a line saying so, and never opened (it would block)
    fifo = daemon.manifests / "pipe.yaml"
    os.mkfifo(fifo, 0o600)
    daemon.wait_for(lambda: "FIFO" in json.loads(daemon.get_text("/manifests/errors")).get(str(fifo), ""), 30,
                    "the FIFO listed")
    assert "FIFO" in daemon.log()
    fifo.unlink()

    after = daemon.wait_running("keeper")
    assert after["metadata"]["uid"] == keeper["metadata"]["uid"]
    assert not any(p["metadata"]["name"] in ("d", "n" * 230, "m" * 240) for p in daemon.pods())
    assert "Traceback" not in daemon.log() and "RecursionError" not in daemon.log()


def test_malformed_request_lines_do_not_flood_the_log(daemon: DaemonHarness) -> None:
    before = len(daemon.log())
    variants = [b"GARBAGE \x01\x02 %d\r\n\r\n", b"GET /\x00%d HTTP/1.1\r\n\r\n",
                b"GET /%d HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"GET /%d HTTP/9.9\r\n\r\n",
                b"\x16\x03\x01\x00\x05%d garbage that is no TLS ClientHello\r\n\r\n",
                b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz%d\r\n"]
    for i in range(1000):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
            s.sendall(variants[i % len(variants)] % i)
            s.settimeout(10)
            try:
                s.recv(4096)
            except OSError:
                pass
    assert daemon.get_text("/healthz") == "ok"
    grown = daemon.log()[before:]
    assert "Traceback" not in grown
    assert len(grown) < 20_000, f"{len(grown)} bytes of log for 1000 bad requests"
