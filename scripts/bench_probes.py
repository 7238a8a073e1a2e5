"""Probe benchmarks (``scripts/bench probes``), issue 3.

  load      500 pods, each with an httpGet liveness probe at periodSeconds 1 against busybox httpd (all healthy):
            daemon CPU over 20 s (target <= 15 % of one core; the zygote and other helpers reported apart) and probe
            start lateness against schedule from ``GET /debug/probes`` (target p99 <= 50 ms)
  recreate  liveness failure -> the recreated pod answering HTTP again: from the daemon's log line ``Probe failure
            kills the pod`` to the first HTTP 200 of /index.html on the new sandbox (target median <= 100 ms)

Traffic goes only to loopback and to pod IPs on the benchmark's own bridge (a /22 pod CIDR for 500 pods).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import BUSYBOX, BenchDaemon, http_get, pod_yaml  # noqa: E402

LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(name: str, values: list[float], unit: str, target: str = "") -> dict[str, float]:
    med, p95, p99 = statistics.median(values), pct(values, 0.95), pct(values, 0.99)
    print(f"{name:<44} median {med:8.2f} {unit}   p95 {p95:8.2f} {unit}   p99 {p99:8.2f} {unit}   n={len(values)}"
          f"   {target}")
    return {"median": med, "p95": p95, "p99": p99}


def hist_pct(bounds: list[float], counts: list[int], q: float) -> float:
    """The q-quantile of a histogram as the upper bound of the bucket that holds it (inf: the overflow bucket)."""
    total = sum(counts)
    rank = max(1, -(-int(q * total * 1000) // 1000))  # ceil(q * total), at least the first sample
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return bounds[i] if i < len(bounds) else float("inf")
    return float("nan")


def window_lateness(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float] | None:
    """Lateness percentiles over exactly the probes started between two ``/debug/probes`` reads (the daemon's
    cumulative histogram), or None when the daemon does not publish one."""
    if "lateness_hist_counts" not in after or "lateness_hist_counts" not in before:
        return None
    bounds = after["lateness_hist_bounds_ms"]
    counts = [a - b for a, b in zip(after["lateness_hist_counts"], before["lateness_hist_counts"], strict=True)]
    if not sum(counts):
        return None
    return {"p50": hist_pct(bounds, counts, 0.50), "p95": hist_pct(bounds, counts, 0.95),
            "p99": hist_pct(bounds, counts, 0.99), "max": hist_pct(bounds, counts, 1.0), "n": sum(counts)}


def web_pod(name: str, www: Path, liveness: dict[str, Any], grace: int = 2) -> str:
    container = {"name": "web", "image": "busybox", "command": [BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(www)],
                 "livenessProbe": liveness}
    return pod_yaml(name, [container], terminationGracePeriodSeconds=grace)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def log_time(line: str) -> float:
    """The wall-clock time of a daemon log line (logging's asctime: local time, milliseconds)."""
    m = LOG_TS.match(line)
    if m is None:
        raise ValueError(f"no timestamp in {line!r}")
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


class ProbeBench(BenchDaemon):
    def __init__(self, runs: int) -> None:
        super().__init__("bprb", cidr_prefix=22)  # a /22: room for 500 pods
        self.runs = runs

    def debug_probes(self) -> dict[str, Any] | None:
        """``GET /debug/probes`` as JSON, or None (with a note) when the daemon does not serve it."""
        try:
            data: dict[str, Any] = json.loads(self.daemon.get_text("/debug/probes"))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                print(f"GET /debug/probes: 404: the endpoint is missing (ProbeManager.stats() not exposed): "
                      f"{e.read()[:200]!r}")
                return None
            raise
        return data

    # ----- (a) 500 pods with a liveness probe every second --------------------------------------------------

    def load(self, count: int = 500, seconds: int = 20, batch: int = 100) -> None:
        import psutil

        names = [f"p{i}" for i in range(count)]
        probe = {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
        t0 = time.perf_counter()
        # in batches: 500 manifests at once overflow the daemon's netlink socket (ENOBUFS), after which every
        # sandbox creation fails (see the report); the figures measured here are steady-state probing
        for start in range(0, count, batch):
            for n in names[start:start + batch]:
                self.daemon.write(f"{n}.yaml", web_pod(n, self.www, probe))
            upto = min(count, start + batch)
            self.daemon.wait_for(self._running_check(upto), 300, f"{upto} pods running", interval=0.5)
        print(f"{f'{count} pods with liveness probes -> Running':<44} {time.perf_counter() - t0:8.2f} s")
        time.sleep(3)  # let every worker settle into its schedule
        assert self.daemon.proc is not None
        daemon = psutil.Process(self.daemon.proc.pid)
        helpers = [psutil.Process(p) for p in _children(daemon.pid)]
        before = self.debug_probes()

        def cpu(p: psutil.Process) -> float:
            t = p.cpu_times()
            return float(t.user + t.system + t.children_user + t.children_system)

        samples: list[float] = []
        helper_samples: list[float] = []
        d_prev, h_prev = cpu(daemon), sum(cpu(h) for h in helpers)
        d_first, h_first = d_prev, h_prev
        split_first = daemon.cpu_times()
        w_prev = w_first = time.monotonic()
        for _ in range(seconds):
            time.sleep(1)
            d_now, h_now, w_now = cpu(daemon), sum(cpu(h) for h in helpers), time.monotonic()
            samples.append((d_now - d_prev) / (w_now - w_prev) * 100)
            helper_samples.append((h_now - h_prev) / (w_now - w_prev) * 100)
            d_prev, h_prev, w_prev = d_now, h_now, w_now
        wall = w_prev - w_first
        after = self.debug_probes()
        overall = (d_prev - d_first) / wall * 100
        # the daemon's own CPU excludes its helpers' (they are separate processes; children_* counts reaped ones)
        self.results["load_daemon_cpu_pct"] = report(f"daemon CPU, {count} pods probed every 1 s (per 1 s)", samples,
                                                     "%", "target <= 15 % of one core")
        print(f"{'  daemon CPU over the whole window':<44} {overall:8.2f} % of one core over {wall:.1f} s")
        split = daemon.cpu_times()
        user = (split.user - split_first.user) / wall * 100
        system = (split.system - split_first.system) / wall * 100
        # system time is mostly the kernel's TCP work for the probes' connections (connect, send, close over the
        # veth pairs, done in the daemon's syscalls): a floor that no change to the daemon's Python can lower
        print(f"{'    of which user / system (kernel)':<44} {user:8.2f} % / {system:.2f} %")
        self.results["load_daemon_cpu_user_pct"] = user
        self.results["load_daemon_cpu_system_pct"] = system
        names_h = ", ".join(sorted({h.name() for h in helpers})) or "none"
        helper_total = (h_prev - h_first) / wall * 100
        self.results["load_helpers_cpu_pct"] = report(f"  helpers CPU ({names_h}) (per 1 s)", helper_samples, "%",
                                                      "reported apart, not part of the target")
        print(f"{'  helpers CPU over the whole window':<44} {helper_total:8.2f} % of one core")
        self.results["load_daemon_cpu_overall_pct"] = overall
        if before is not None and after is not None:
            rate = (after["probes_run"] - before["probes_run"]) / wall
            print(f"{'probes run per second':<44} {rate:8.1f}   (expected ~{count})")
            # over exactly the measurement window (the histogram difference; each figure is the upper bound of its
            # bucket: 0.1 ms below 20 ms, 1 ms below 200 ms); the daemon's last-N-samples figures include whatever
            # came before the window when fewer than N probes ran in it
            window = window_lateness(before, after)
            if window is not None:
                print(f"{'probe start lateness vs schedule (window)':<44} median {window['p50']:6.1f} ms   "
                      f"p95 {window['p95']:6.1f} ms   p99 {window['p99']:6.1f} ms   max <= {window['max']:6.1f} ms   "
                      f"n={window['n']}   target p99 <= 50 ms")
                self.results["lateness_window_ms"] = window
            print(f"{'  last samples (daemon figures)':<44} p50 {after['lateness_p50_ms']:8.2f} ms   "
                  f"p99 {after['lateness_p99_ms']:8.2f} ms   max {after['lateness_max_ms']:8.2f} ms   "
                  f"n={after['lateness_samples']}")
            self.results["probe_rate_per_s"] = rate
            self.results["lateness_ms"] = {k: after[k] for k in ("lateness_p50_ms", "lateness_p99_ms",
                                                                 "lateness_max_ms", "lateness_samples")}
        events = json.loads(self.daemon.get_text("/events"))["items"]
        bad = [e for e in events if e["reason"] in ("Unhealthy", "Killing")]
        restarts = sum(c["restartCount"] for p in self.daemon.pods() for c in p["status"].get("containerStatuses", []))
        print(f"{'  Unhealthy/Killing events, restarts':<44} {len(bad)}, {restarts}   (expected 0, 0)")
        for e in bad[:3]:
            print(f"    {e['reason']} {e['involvedObject']['name']}: {e['message'][:160]}")
        for n in names:
            self.daemon.remove(f"{n}.yaml")
        self.daemon.wait_for(lambda: not self.daemon.pods(), 300, "all pods gone", interval=0.5)

    def _running_check(self, count: int) -> Callable[[], bool]:
        return lambda: self._all_running(count)

    def _all_running(self, count: int) -> bool:
        pods = self.daemon.pods()
        running = [p for p in pods if p["status"]["phase"] == "Running"
                   and all("running" in c["state"] for c in p["status"].get("containerStatuses", []))]
        return len(running) == count

    # ----- (b) liveness failure -> recreated pod answering HTTP again ------------------------------------------

    def recreate_one(self, i: int) -> float:
        name, alive = f"r{i}", f"alive-{i}"
        www = self.root / f"www-{i}"
        www.mkdir(mode=0o755)
        (www / "index.html").write_text("ok\n")
        (www / alive).write_text("yes\n")
        probe = {"httpGet": {"path": f"/{alive}", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1,
                 "initialDelaySeconds": 2}
        self.daemon.write(f"{name}.yaml", web_pod(name, www, probe))
        self.daemon.wait_running(name, 30)
        uid = self.daemon.pod(name)["metadata"]["uid"]  # type: ignore[index]
        record = self.daemon.run_dir / "pods" / uid / "record.json"
        old_pause = self.daemon.pause_pid(name)
        time.sleep(3)  # past the initial delay: a few successful probes
        with open(self.daemon.log_path, errors="replace") as log:
            log.seek(0, os.SEEK_END)
            (www / alive).unlink()
            marker = f"Probe failure kills the pod pod=default/{name} "
            buf, killed_at = "", None
            deadline = time.monotonic() + 15
            while killed_at is None:
                assert time.monotonic() < deadline, f"no {marker!r} in the daemon log"
                buf += log.read()
                for line in buf.splitlines():
                    if marker in line:
                        killed_at = log_time(line)
                        break
                else:
                    time.sleep(0.001)
        (www / alive).write_text("yes\n")  # the new container must stay healthy (initialDelaySeconds 2 covers it)

        def new_sandbox() -> tuple[int, str] | None:
            try:
                sb = json.loads(record.read_text())["sandbox"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if not sb or sb["pid"] == old_pause or not sb.get("ip"):
                return None
            return int(sb["pid"]), str(sb["ip"])

        deadline = time.monotonic() + 15
        while True:
            assert time.monotonic() < deadline, "the pod was not recreated"
            sandbox = new_sandbox()
            if sandbox is not None:
                break
            time.sleep(0.0005)
        url = f"http://{sandbox[1]}:8080/index.html"
        while True:
            assert time.monotonic() < deadline, f"the recreated pod never answered {url}"
            try:
                if http_get(url, timeout=1) == "ok\n":
                    answered = time.time()
                    break
            except OSError:
                pass
            time.sleep(0.0005)
        self.daemon.remove(f"{name}.yaml")
        return (answered - killed_at) * 1000

    def recreate(self) -> None:
        values = [self.recreate_one(i) for i in range(self.runs)]
        self.daemon.wait_for(lambda: not self.daemon.pods(), 60, "all pods gone")
        self.results["recreate_ms"] = report("liveness kill logged -> new pod HTTP 200", values, "ms",
                                             "target median <= 100")


def run(what: str, runs: int) -> dict[str, Any]:
    """Entry point for scripts/bench.py: ``what`` is probes (both), load or recreate."""
    with ProbeBench(runs) as b:
        if b.debug_probes() is None:
            print("  (lateness figures will be missing)")
        if what in ("probes", "load"):
            b.load()
        if what in ("probes", "recreate"):
            b.recreate()
        return b.results


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="probes", choices=["probes", "load", "recreate"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    uname = os.uname()
    print(f"machine: {uname.sysname} {uname.release} {uname.machine}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    results = run(args.what, args.runs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
