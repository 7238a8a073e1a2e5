"""The peer for ``scripts/bench --vs-podman``: the same busybox httpd pod through ``podman kube play``.

The image is built offline from the machine's busybox-static (``podman import``), and the pod joins an
``--internal`` podman network of its own (no NAT, no forwarding), so traffic stays on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

IMAGE = "localhost/minikubelet-bench-busybox:latest"
NETWORK = "mkbench"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


CONF = """[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]

[engine]
runtime = "runc"
"""
_conf_file: Path | None = None


def _env() -> dict[str, str]:
    """podman with runc (crun refuses this machine's cgroup v1 hybrid) and a nofile limit we may set."""
    global _conf_file
    if _conf_file is None:
        import resource

        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # runc fails with EPERM setting RLIMIT_NPROC to the hard limit itself here (no CAP_SYS_RESOURCE); a lower
        # value is always allowed, and 4096 processes are plenty for a one-container pod
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
        fd, name = tempfile.mkstemp(prefix="mk-podman-", suffix=".conf")
        os.write(fd, (CONF % (nofile, nofile, nproc, nproc)).encode())
        os.close(fd)
        _conf_file = Path(name)
    return dict(os.environ, CONTAINERS_CONF=str(_conf_file))


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run podman; netavark turns net.ipv4.ip_forward on, so put it back as it was (no forwarding, ever)."""
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = forward.read_text()
    try:
        return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=_env())
    finally:
        if forward.read_text() != before:
            forward.write_text(before)


def ensure_image() -> None:
    if _run("image", "exists", IMAGE, check=False).returncode == 0:
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "bin").mkdir(parents=True)
        (root / "www").mkdir()
        (root / "www" / "index.html").write_text("ok\n")
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in ("sh", "httpd", "sleep"):
            os.symlink("busybox", root / "bin" / applet)
        tar = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            t.add(root, arcname=".")
        _run("import", str(tar), IMAGE)


def ensure_network() -> None:
    if _run("network", "exists", NETWORK, check=False).returncode != 0:
        # the gateway address puts the host on the bridge (an internal network has none by default), so the
        # benchmark can reach the pod IP from the host, as it does minikubelet's
        _run("network", "create", "--internal", "--disable-dns", "--subnet", "10.251.250.0/24",
             "--gateway", "10.251.250.1", NETWORK)


def kube_yaml(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [
        {"name": "web", "image": IMAGE, "command": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]}]}})


def pod_ip(name: str) -> str:
    out = _run("inspect", f"{name}-web", "--format", "{{json .NetworkSettings.Networks}}").stdout
    nets = json.loads(out or "{}")
    for net in nets.values():
        if net.get("IPAddress"):
            return str(net["IPAddress"])
    return ""


def run_podman_start(runs: int, _www: Path) -> list[float]:
    try:
        ensure_image()
        ensure_network()
    except subprocess.CalledProcessError as e:
        print(f"podman: cannot prepare the peer ({e.stderr.strip()[:200]}); skipping")
        return []
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            name = f"pmbench{i}"
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(kube_yaml(name))
            t0 = time.perf_counter()
            r = _run("kube", "play", "--network", NETWORK, str(path), check=False)
            if r.returncode != 0:
                print(f"podman kube play failed: {r.stderr.strip()[:300]}")
                return []
            ip = pod_ip(name)
            deadline = time.monotonic() + 10
            served = False
            while not served and time.monotonic() < deadline:
                try:
                    with _DIRECT.open(f"http://{ip}:8080/index.html", timeout=1) as resp:
                        served = resp.status == 200
                except OSError:
                    time.sleep(0.0005)
            elapsed = (time.perf_counter() - t0) * 1000
            _run("kube", "down", str(path), check=False)
            if not served:
                print(f"podman: the pod never answered on http://{ip}:8080 within 10 s; skipping the peer")
                return []
            times.append(elapsed)
    return times


def overhead_kib(count: int) -> list[float]:
    """PSS of the infra (pause) container's process and conmon, per pod, over ``count`` pods."""
    ensure_image()
    ensure_network()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(count):
            path = Path(tmp) / f"pmo{i}.yaml"
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pmo{i}"},
                                        "spec": {"containers": [{"name": "app", "image": IMAGE,
                                                                 "command": ["/bin/busybox", "sleep", "100000"]}]}}))
            _run("kube", "play", "--network", NETWORK, str(path))
            paths.append(path)
        time.sleep(1)
        for i in range(count):
            info = json.loads(_run("pod", "inspect", f"pmo{i}").stdout)
            info = info[0] if isinstance(info, list) else info
            total = 0
            for c in info.get("Containers", []):
                state = json.loads(_run("inspect", c["Id"], "--format", "{{json .State}}").stdout)
                pids = [int(state.get("ConmonPid") or 0)]
                if c["Name"].endswith("-infra"):
                    pids.append(int(state.get("Pid") or 0))
                for pid in pids:
                    if pid:
                        total += _pss(pid)
            results.append(total)
        for path in paths:
            _run("kube", "down", str(path), check=False)
    return results


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cleanup() -> None:
    _run("network", "rm", "-f", NETWORK, check=False)
    if _conf_file is not None:
        _conf_file.unlink(missing_ok=True)
