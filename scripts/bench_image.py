"""Pods on images (``scripts/bench image-start`` and ``image-scale``), issue 10.

  image-start   the busybox image cached: manifest written -> first HTTP 200 from busybox httpd serving the image's
                own /www (overlay root, pivot_root, /dev, /proc, volumes' shm); beside ``podman kube play`` of a
                busybox image built from the same static binary, in the same run (``--vs-podman``)
  image-scale   250 pods of one image at once -> all answering HTTP; the image store's size before and after (it
                must not grow: layers are shared), the pods' writable layers, pause PSS per pod

The registry is Debian's docker-registry on loopback with the test images (tests/testimages.py), mirrored as
docker.io; nothing leaves the machine. Traffic goes only to loopback and to pod IPs on the benchmark's bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.benchstats import poll, pss_kib, report  # noqa: E402
from tests.harness import DaemonHarness  # noqa: E402
from tests.testimages import INDEX_HTML, image_daemon, image_pod, serving_registry  # noqa: E402

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
IMAGE = "busybox:1.36"








def httpd(name: str) -> str:
    return image_pod(name, [{"name": "web", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}])


def serves(ip: str) -> bool:
    if not ip:
        return False
    with _DIRECT.open(f"http://{ip}:8080/index.html", timeout=1) as resp:
        return bool(resp.status == 200 and resp.read().decode() == INDEX_HTML)


def pod_ip(d: DaemonHarness, name: str) -> str:
    p = d.pod(name)
    return str(p["status"].get("podIP", "")) if p else ""


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total




@contextlib.contextmanager
def daemon_with_image(run_id: str) -> Iterator[DaemonHarness]:
    tmp = Path(tempfile.mkdtemp(prefix=f"mk-bench-{run_id}-"))
    try:
        with serving_registry(debian=False) as served, image_daemon(run_id, served, tmp, prefix="bench") as d:
            d.write("warm.json", httpd("warm"))  # pulls and unpacks once: the runs below start from the cache
            d.wait_running("warm", timeout=120)
            d.remove("warm.json")
            d.wait_gone("warm")
            yield d
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start(runs: int, vs_podman: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    times = []
    with daemon_with_image("imgst0") as d:
        for i in range(runs):
            name = f"i{i}"
            t0 = time.perf_counter()
            d.write(f"{name}.json", httpd(name))
            ip: str = poll(lambda name=name: pod_ip(d, name), 20)
            poll(lambda ip=ip: serves(ip), 20)
            times.append((time.perf_counter() - t0) * 1000)
            d.remove(f"{name}.json")
            d.wait_gone(name)
    results["image_start_ms"] = report("pod start on a cached image (-> HTTP 200)", times, "ms",
                                       "target median<=50")
    if vs_podman and shutil.which("podman"):
        from scripts.podman_peer import cleanup, run_podman_start

        try:
            peer = run_podman_start(runs, Path("/nonexistent"))
        finally:
            cleanup()
        if peer:
            pm = report("podman kube play, busybox image (-> HTTP 200)", peer, "ms")
            ratio = results["image_start_ms"]["median"] / pm["median"]
            print(f"{'ratio minikubelet/podman (median)':<44} {ratio:.3f}   target <= 0.3")
            results.update(podman_image_start_ms=pm, image_start_ratio=ratio)
    return results


def scale(count: int = 250) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with daemon_with_image("imgsc0") as d:
        store_before = du(d.data_dir / "images")
        names = [f"s{i}" for i in range(count)]
        t0 = time.perf_counter()
        for name in names:
            d.write(f"{name}.json", httpd(name))
        pending = set(names)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                with contextlib.suppress(OSError):
                    if serves(pod_ip(d, name)):
                        pending.discard(name)
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        print(f"{f'{count} pods of one image -> all answering':<44} {elapsed:8.2f} s   "
              f"{'' if not pending else f'({len(pending)} never answered) '}target <= 15 s")
        store_after = du(d.data_dir / "images")
        uppers = du(d.data_dir / "pods")
        pss = [pss_kib(d.pause_pid(n)) / 1024 for n in names[:50]]
        print(f"{'image store before / after':<44} {store_before / 2**20:8.2f} MB / {store_after / 2**20:.2f} MB")
        print(f"{'writable layers of all pods (<data-dir>/pods)':<44} {uppers / 2**20:8.2f} MB "
              f"= {uppers / count / 1024:.1f} KB per pod")
        results["image_scale"] = {"seconds": elapsed, "unanswered": len(pending), "store_before": store_before,
                                  "store_after": store_after, "pods_dir_bytes": uppers}
        results["image_pause_pss_mb"] = report("per-pod overhead PSS (pause), image pods", pss, "MB")
        for name in names:
            d.remove(f"{name}.json")
        for name in names:
            d.wait_gone(name, timeout=180)
    return results


def run(what: str, runs: int, vs_podman: bool = False) -> dict[str, Any]:
    if what == "image-start":
        return start(runs, vs_podman)
    if what == "image-scale":
        return scale()
    out = start(runs, vs_podman)
    out.update(scale())
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "image-start", 20, "--vs-podman" in sys.argv)))
