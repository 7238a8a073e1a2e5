"""Issue 9, point 2: the watch history is bounded by bytes and shares unchanged objects, so create/delete cycles
of a large pod leave the daemon's memory where it was."""

from __future__ import annotations

import json

import psutil

from tests.harness import DaemonHarness, pod_yaml, sh
from tests.integration.test_api_errors import Api

PODS = "/api/v1/namespaces/default/pods"
CYCLES = 100


def big_pod(i: int) -> bytes:
    doc = json.loads(pod_yaml(f"big{i}", [sh("main", "sleep 100000")], terminationGracePeriodSeconds=0))
    # a 500 KB spec: 500 environment variables of 1 KB each
    doc["spec"]["containers"][0]["env"] = [{"name": f"V{n}", "value": f"{i}-{n}-" + "x" * 1000} for n in range(500)]
    return json.dumps(doc).encode()


def test_create_delete_cycles_of_a_500kb_pod_keep_rss_flat(daemon: DaemonHarness) -> None:
    api = Api(daemon)
    assert daemon.proc is not None
    proc = psutil.Process(daemon.proc.pid)

    def cycle(i: int) -> None:
        code, body = api.call("POST", PODS, big_pod(i))
        assert code == 201, body
        daemon.wait_running(f"big{i}", timeout=60)
        code, body = api.call("DELETE", f"{PODS}/big{i}", b'{"gracePeriodSeconds": 0}')
        assert code == 200, body
        daemon.wait_gone(f"big{i}", timeout=60)

    for i in range(5):  # warm up: allocator arenas, caches, the first history entries
        cycle(i)
    start = proc.memory_info().rss
    for i in range(5, CYCLES + 5):
        cycle(i)
    grown = (proc.memory_info().rss - start) / 2**20
    assert grown < 30, f"RSS grew by {grown:.0f} MB over {CYCLES} create/delete cycles of a 500 KB pod"
