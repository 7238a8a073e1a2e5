"""Drive a real minikubelet daemon: unique directories, bridge, pod CIDR and port per instance.

Used by the integration tests (through the ``daemon`` fixture) and by ``scripts/bench``. The daemon is the real
CLI in a subprocess; helpers poll the real API with generous timeouts instead of sleeping. No pytest here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
MINIKUBELET = [sys.executable, "-m", "minikubelet"]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# Every wait_for timeout is multiplied by this: scripts/vm-test's emulated guest (qemu TCG) runs about 5x slower.
TIME_SCALE = float(os.environ.get("MK_TEST_TIME_SCALE", "1"))
# Never through a proxy: tests talk only to loopback and to pod IPs they created.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 2, token: str | None = None) -> str:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with _DIRECT.open(request, timeout=timeout) as r:
        return str(r.read().decode())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def used_cidrs() -> set[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    nets = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.add(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


class DaemonHarness:
    def __init__(self, root: Path, run_id: str, prefix: int = 24, extra_flags: Sequence[str] = ()) -> None:
        self.root = root
        self.extra_flags = list(extra_flags)  # e.g. ["--registries", FILE]: given to every start and to reset
        self.manifests = root / "manifests"
        self.data_dir = root / "data"
        self.run_dir = root / "run"
        self.log_dir = root / "logs"
        self.bridge = f"mkt{run_id[:4]}{random.randrange(16**4):04x}"[:15]
        used = used_cidrs()
        while True:
            third = random.randrange(0, 256, 2 ** max(0, 24 - prefix))  # aligned for prefixes up to /16
            cidr = ipaddress.IPv4Network(f"10.{random.randrange(200, 250)}.{third}.0/{prefix}")
            if not any(cidr.overlaps(u) for u in used):
                break
        self.cidr = cidr
        self.port = free_port()
        self.node_name = "node1"
        self.cgroup_root = f"/mkt-{run_id[:8]}-{random.randrange(16**6):06x}"  # side-by-side daemons never share one
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "daemon.log"
        self.manifests.mkdir(mode=0o755)
        os.chmod(root, 0o755)
        os.chmod(self.manifests, 0o755)

    @property
    def flags(self) -> list[str]:
        return [
            "--manifests",
            str(self.manifests),
            "--data-dir",
            str(self.data_dir),
            "--run-dir",
            str(self.run_dir),
            "--log-dir",
            str(self.log_dir),
            "--bridge",
            self.bridge,
            "--pod-cidr",
            str(self.cidr),
            "--node-name",
            self.node_name,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--disable-default-registry-endpoint",  # tests never pull from beyond the machine
            "--cgroup-root",
            self.cgroup_root,
            "--max-pods",  # scale tests run hundreds of pods; the kubelet's 110 is tested with its own flag
            "1000",
            *self.extra_flags,
        ]

    # ----- process control ---------------------------------------------------------------------------------

    def start(self, *extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([*MINIKUBELET, "run", *self.flags, *extra], stdout=log, stderr=log, cwd=REPO)
        log.close()
        self.wait_for(lambda: self._healthy(), timeout=30, what="daemon /healthz")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.get_text("/healthz") == "ok"
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def reset(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MINIKUBELET, "reset", *self.flags], capture_output=True, text=True, timeout=120, cwd=REPO
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ----- API -----------------------------------------------------------------------------------------------

    def token(self) -> str | None:
        """The daemon's bearer token (every endpoint but /healthz needs it), once the daemon has made it."""
        try:
            return (self.data_dir / "token").read_text().strip()
        except FileNotFoundError:
            return None

    def get_text(self, path: str) -> str:
        return http_get(f"http://127.0.0.1:{self.port}{path}", timeout=10, token=self.token())

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.get_text("/pods"))["items"]
        return items

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        for p in self.pods():
            if p["metadata"]["name"] == name and p["metadata"]["namespace"] == namespace:
                return p
        return None

    def container(self, pod: str, name: str) -> dict[str, Any]:
        p = self.pod(pod)
        assert p is not None, f"pod {pod} not found"
        for c in (*p["status"].get("initContainerStatuses", []), *p["status"].get("containerStatuses", [])):
            if c["name"] == name:
                return dict(c)
        raise AssertionError(f"container {name} not in pod {pod}")

    # ----- manifests -----------------------------------------------------------------------------------------

    def write(self, filename: str, text: str, mode: int = 0o644) -> Path:
        """Write a manifest atomically (tmp + rename), as tools should."""
        path = self.manifests / filename
        fd, tmp = tempfile.mkstemp(dir=self.manifests, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        return path

    def remove(self, filename: str) -> None:
        (self.manifests / filename).unlink()

    # ----- waiting -------------------------------------------------------------------------------------------

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition", interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout * TIME_SCALE
        last_exc: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except AssertionError:
                raise
            except Exception as e:  # noqa: BLE001 - keep polling through transient errors
                last_exc = e
            time.sleep(interval)
        detail = f" ({last_exc!r})" if last_exc else ""
        raise AssertionError(f"timed out after {timeout * TIME_SCALE}s waiting for {what}{detail}")

    def wait_running(self, name: str, timeout: float = 20) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            p = self.pod(name)
            if (
                p
                and p["status"]["phase"] == "Running"
                and all("running" in c["state"] for c in p["status"].get("containerStatuses", []))
            ):
                return p
            return None

        result: dict[str, Any] = self.wait_for(check, timeout, f"pod {name} Running")
        return result

    def wait_gone(self, name: str, timeout: float = 40) -> None:
        self.wait_for(lambda: self.pod(name) is None, timeout, f"pod {name} gone")

    def pause_pid(self, name: str) -> int:
        """The pause pid from the daemon's run-dir record (the API shows no pids)."""
        p = self.pod(name)
        assert p is not None
        record = json.loads((self.run_dir / "pods" / p["metadata"]["uid"] / "record.json").read_text())
        return int(record["sandbox"]["pid"])

    def container_pid(self, name: str, container: str) -> int:
        p = self.pod(name)
        assert p is not None
        record = json.loads((self.run_dir / "pods" / p["metadata"]["uid"] / "record.json").read_text())
        return int(record["containers"][container]["pid"])

    def pod_processes(self) -> list[int]:
        """Host pids of every process in one of this daemon's pods (pause and descendants)."""
        pids = []
        for d in (self.run_dir / "pods").glob("*/record.json"):
            try:
                sb = json.loads(d.read_text())["sandbox"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if sb:
                pids.append(int(sb["pid"]))
        return pids

    def leftovers(self, pause_pids: list[int]) -> list[str]:
        """What of this run is still on the machine (pause processes given, since reset removes their records)."""
        found = []
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        if f" {self.bridge}:" in links or f"master {self.bridge} " in links:
            found.append(f"bridge/veths of {self.bridge}")
        found += [f"pause pid {pid}" for pid in pause_pids if alive(pid)]
        pods_dir = self.run_dir / "pods"
        if pods_dir.exists() and any(pods_dir.iterdir()):
            found.append(f"run state in {pods_dir}")
        top = Path("/sys/fs/cgroup")
        cgroups = [top / self.cgroup_root.lstrip("/"), *(d / self.cgroup_root.lstrip("/") for d in top.iterdir())]
        found += [f"cgroup {d}" for d in cgroups if d.is_dir()]
        return found


@contextlib.contextmanager
def running_daemon(
    run_id: str, prefix: str = "", cidr_prefix: int = 24, extra_flags: Sequence[str] = ()
) -> Iterator[DaemonHarness]:
    """A started daemon in a fresh temp root; on exit (also on failure) reset it and check nothing is left.
    ``extra_flags`` go to every start and to reset (e.g. ``["--registries", FILE]``).

    Raises AssertionError naming what was left (or the failed reset) after cleaning up what it could."""
    root = Path(tempfile.mkdtemp(prefix=f"mk-{run_id}-{prefix}"))
    harness = DaemonHarness(root, run_id, prefix=cidr_prefix, extra_flags=extra_flags)
    try:
        harness.start()
        yield harness
    finally:
        pause_pids = harness.pod_processes()
        try:
            harness.stop()
        except subprocess.TimeoutExpired:  # a daemon that does not stop within 30 s is killed; reset cleans up
            assert harness.proc is not None
            harness.proc.kill()
            harness.proc.wait()
        result = harness.reset()
        left = harness.leftovers(pause_pids)
        if harness.proc is not None and harness.proc.poll() is None:
            harness.proc.kill()
        shutil.rmtree(root, ignore_errors=True)
        if result.returncode != 0 or left:
            raise AssertionError(f"cleanup failed: reset rc={result.returncode} left={left}\n{result.stderr[-2000:]}")


def www_root(prefix: str) -> Path:
    """A fresh 0755 temp dir holding ``www/index.html`` ("ok\\n") for busybox httpd pods; the caller removes it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    (root / "www").mkdir(mode=0o755)
    (root / "www" / "index.html").write_text("ok\n")
    return root


class BenchDaemon:
    """A benchmark's scratch root (``www`` for busybox httpd pods) and a daemon started on enter; on exit, also when
    the start failed, the daemon is stopped, reset and checked for leftovers (running_daemon) and the root removed."""

    def __init__(self, run_id: str, cidr_prefix: int = 24) -> None:
        self.root = www_root(f"mk-bench-{run_id}-")
        self.www = self.root / "www"
        self.results: dict[str, Any] = {}
        self._run_id, self._cidr_prefix = run_id, cidr_prefix
        self._cleanup = contextlib.ExitStack()
        self._cleanup.callback(shutil.rmtree, self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        with self._cleanup as cleanup:
            self.daemon = cleanup.enter_context(running_daemon(self._run_id, cidr_prefix=self._cidr_prefix))
            self._cleanup = cleanup.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cleanup.close()


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (this machine's init does not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


# The annotation that makes a pod run programs of the node instead of its image (pod/rootfs.py NODE_FILESYSTEM):
# the tests' pods run busybox from the node, so pod_yaml adds it unless told not to.
NODE_FS = {"minikubelet.io/node-filesystem": "true"}


def pod_yaml(name: str, containers: list[dict[str, Any]], *, node_filesystem: bool = True, **spec: Any) -> str:
    metadata: dict[str, Any] = {"name": name}
    if node_filesystem:
        metadata["annotations"] = dict(NODE_FS)
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": containers, **spec}}
    return json.dumps(doc)


def httpd(name: str = "web", port: int = 8080, root: str = "/tmp") -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": [BUSYBOX, "httpd", "-f", "-p", str(port), "-h", root]}


def sh(name: str, script: str) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": [BUSYBOX, "sh", "-c", script]}


def events_of(daemon: DaemonHarness, pod: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(daemon.get_text("/events"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == pod]


def find_events(
    daemon: DaemonHarness, pod: str, reason: str, *, container: str | None = None, kind: str = "containers"
) -> list[dict[str, Any]]:
    """The pod's events with ``reason``, only those about ``container`` (of ``kind``) when one is named."""
    out = []
    for e in events_of(daemon, pod):
        if e["reason"] != reason:
            continue
        if container is not None and e["involvedObject"].get("fieldPath") != f"spec.{kind}{{{container}}}":
            continue
        out.append(e)
    return out


def wait_pod(
    daemon: DaemonHarness, name: str, check: Callable[[dict[str, Any]], Any], timeout: float = 20, what: str = ""
) -> dict[str, Any]:
    """Poll until the listed pod satisfies ``check``; returns it."""

    def probe() -> dict[str, Any] | None:
        p = daemon.pod(name)
        return p if p is not None and check(p) else None

    result: dict[str, Any] = daemon.wait_for(probe, timeout, what or f"pod {name} condition")
    return result
