"""The kubelet's Summary API (``GET /stats/summary``) and kubectl top against known load, from the cgroups' counters:
a container holding 64 MiB shows that working set, a busy loop limited to 200m shows about 0.2 cores, the first call
answers at once (no sampling pause), and the endpoint is behind the bearer token like every other but /healthz."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonHarness, http_get
from tests.integration.test_kubectl import Kubectl, rows

pytestmark = pytest.mark.root

MiB = 2**20
NODE_FS = {"minikubelet.io/node-filesystem": "true"}
HOLD = [sys.executable, "-c", "import time\nb = bytearray(64 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "time.sleep(1000)"]
BUSY = [sys.executable, "-c", "while True: pass"]
FAST = 0.4  # seconds: the old first call slept 0.5 s for a second reading


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def pod(name: str, command: list[str], resources: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": NODE_FS},
                       "spec": {"containers": [{"name": "main", "image": "busybox", "command": command,
                                                "resources": resources}]}})


def timed_get(daemon: DaemonHarness, path: str) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    body = json.loads(daemon.get_text(path))
    return body, time.monotonic() - t0


def pod_stats(summary: dict[str, Any], name: str) -> dict[str, Any]:
    found = [p for p in summary["pods"] if p["podRef"]["name"] == name]
    assert len(found) == 1, [p["podRef"] for p in summary["pods"]]
    return found[0]


def start_load(daemon: DaemonHarness) -> None:
    daemon.write("hold.json", pod("hold", HOLD, {"limits": {"memory": "128Mi"}}))
    daemon.write("busy.json", pod("busy", BUSY, {"limits": {"cpu": "200m", "memory": "64Mi"}}))
    daemon.wait_running("hold")
    daemon.wait_running("busy")
    time.sleep(3)  # the busy loop's life so far is its first window; the holder has touched its 64 MiB


@pytest.mark.cgroups
def test_summary_from_the_cgroups(daemon: DaemonHarness) -> None:
    start_load(daemon)
    summary, took = timed_get(daemon, "/stats/summary")
    assert took < FAST, f"the first call took {took:.3f}s: it must not sample"

    node = summary["node"]
    assert node["nodeName"] == daemon.node_name and node["startTime"].endswith("Z")
    assert node["cpu"]["usageCoreNanoSeconds"] > 0 and node["cpu"]["usageNanoCores"] > 0
    mem = node["memory"]
    assert 0 < mem["workingSetBytes"] <= mem["usageBytes"] and mem["availableBytes"] > 0
    assert mem["rssBytes"] > 0 and mem["pageFaults"] > 0 and "majorPageFaults" in mem
    for fs in (node["fs"], node["runtime"]["imageFs"]):
        assert 0 < fs["availableBytes"] <= fs["capacityBytes"] and fs["usedBytes"] >= 0

    hold = pod_stats(summary, "hold")
    assert hold["podRef"]["namespace"] == "default" and hold["podRef"]["uid"] == daemon.pod("hold")["metadata"]["uid"]
    [c] = hold["containers"]
    assert c["name"] == "main" and c["startTime"].endswith("Z")
    ws = c["memory"]["workingSetBytes"]
    assert 60 * MiB <= ws <= 100 * MiB, f"a container holding 64 MiB has a working set of {ws / MiB:.1f} MiB"
    assert c["memory"]["usageBytes"] >= ws and c["memory"]["rssBytes"] >= 60 * MiB
    assert c["memory"]["availableBytes"] == 128 * MiB - ws  # the limit minus the working set
    assert hold["memory"]["workingSetBytes"] >= ws  # the pod cgroup holds its containers
    assert hold["network"]["name"] == "eth0" and hold["network"]["rxBytes"] >= 0

    busy = pod_stats(summary, "busy")
    cores = busy["containers"][0]["cpu"]["usageNanoCores"] / 1e9
    assert 0.05 <= cores <= 0.35, f"a busy loop limited to 200m uses {cores:.3f} cores over its life so far"
    assert busy["containers"][0]["cpu"]["usageCoreNanoSeconds"] > 0.3e9  # 3 s at 0.2 cores
    assert 0.05 <= busy["cpu"]["usageNanoCores"] / 1e9 <= 0.35

    time.sleep(1)  # the second call measures from the first
    again, took = timed_get(daemon, "/stats/summary")
    cores = pod_stats(again, "busy")["containers"][0]["cpu"]["usageNanoCores"] / 1e9
    assert 0.05 <= cores <= 0.35, f"over the last second the busy loop used {cores:.3f} cores"
    only, _ = timed_get(daemon, "/stats/summary?only_cpu_and_memory=true")
    assert "fs" not in only["node"] and "network" not in pod_stats(only, "hold")


def test_summary_needs_the_token_and_answers_through_the_node_proxy(daemon: DaemonHarness) -> None:
    url = f"http://127.0.0.1:{daemon.port}/stats/summary"
    for token in (None, "not-the-token"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            http_get(url, token=token)
        with refused.value:
            assert refused.value.code == 401 and json.loads(refused.value.read())["reason"] == "Unauthorized"
    summary = json.loads(http_get(url, token=daemon.token()))
    assert summary["node"]["nodeName"] == daemon.node_name and summary["pods"] == []
    proxied = json.loads(daemon.get_text(f"/api/v1/nodes/{daemon.node_name}/proxy/stats/summary"))
    assert proxied["node"]["nodeName"] == daemon.node_name
    with pytest.raises(urllib.error.HTTPError) as missing:
        daemon.get_text("/api/v1/nodes/nope/proxy/stats/summary")
    with missing.value:
        assert missing.value.code == 404
    assert http_get(f"http://127.0.0.1:{daemon.port}/healthz") == "ok"  # still open


@pytest.mark.cgroups
def test_top_pod_and_node_against_known_load(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    start_load(daemon)
    raw, took = timed_get(daemon, "/apis/metrics.k8s.io/v1beta1/nodes")
    assert took < FAST, f"the first kubectl top node took {took:.3f}s in the daemon: it must not sample"
    assert float(raw["items"][0]["window"].removesuffix("s")) > 1  # since boot, not a half-second sample

    usage = {r[0]: r[1:] for r in rows(kubectl("top", "pod"))[1:]}
    assert set(usage) == {"hold", "busy"}, usage
    busy_m = int(usage["busy"][0].removesuffix("m"))
    assert 50 <= busy_m <= 350, f"kubectl top shows the 200m-limited busy loop at {busy_m}m"
    hold_mi = int(usage["hold"][1].removesuffix("Mi"))
    assert 60 <= hold_mi <= 100, f"kubectl top shows the 64 MiB holder at {hold_mi}Mi"
    time.sleep(1)  # a first call averages the holder's life so far, start-up included (slow in the tcg guest)
    later = {r[0]: r[1:] for r in rows(kubectl("top", "pod"))[1:]}
    assert int(later["hold"][0].removesuffix("m")) < 50, later  # over the last second it only sleeps

    time.sleep(1)
    node = rows(kubectl("top", "node"))
    assert node[0] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert node[1][0] == daemon.node_name
    cpu_m = int(node[1][1].removesuffix("m"))
    assert cpu_m >= 150, f"the node with a 200m busy loop on it shows {cpu_m}m since the last reading"
    assert re.fullmatch(r"\d+%", node[1][2]) and re.fullmatch(r"\d+Mi", node[1][3]), node
