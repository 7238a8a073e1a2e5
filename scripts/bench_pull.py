"""``scripts/bench pull``: a ~30 MB, 3-layer image, cold, from Debian's docker-registry on loopback.

Side by side in the same run: minikubelet's download + verify (images/registry.py into a fresh store) against
``skopeo copy docker://… oci:DIR`` of the same image; and pull + unpack into the layer store (what a pod start
needs) against ``podman pull`` into a fresh podman storage (its pull unpacks too). Medians and p95 of wall time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minikubelet.images.layers import LayerStore  # noqa: E402
from minikubelet.images.reference import parse  # noqa: E402
from minikubelet.images.registry import Endpoint, RegistryClient  # noqa: E402
from minikubelet.images.store import ImageStore  # noqa: E402
from tests.oci import Pusher, build_image  # noqa: E402
from tests.registry import running_registry  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(name: str, runs: int) -> dict[str, Any]:
    img = build_image([{f"l{i}": None, f"l{i}/data": os.urandom(10 << 20)} for i in range(3)], compression="plain")
    ours: list[float] = []
    peer: list[float] = []
    unpacked: list[float] = []
    podman: list[float] = []
    with running_registry() as reg, tempfile.TemporaryDirectory(prefix="mk-bench-pull-", dir="/var/tmp") as tmp:
        Pusher(reg.url).image("library/bench", "1", img)
        ref = parse(f"{reg.host}/library/bench:1")
        for i in range(runs):
            store_dir = Path(tmp) / f"store{i}"

            async def pull(unpack: bool, store_dir: Path = store_dir) -> None:
                client = RegistryClient()
                store = ImageStore(store_dir)
                try:
                    content = await client.pull(ref, [Endpoint(reg.url)], store)
                    if unpack:  # what a pod start needs: the layers unpacked into the layer store
                        await LayerStore(store_dir / "layers").ensure_layers(content, store.blob_path)
                finally:
                    await client.close()

            for unpack, times in ((False, ours), (True, unpacked)):
                t = time.perf_counter()
                asyncio.run(pull(unpack))
                times.append(time.perf_counter() - t)
                shutil.rmtree(store_dir)
            if shutil.which("podman"):
                root = Path(tmp) / f"podman{i}"
                t = time.perf_counter()
                subprocess.run(["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
                                "--storage-driver", "overlay", "pull", "--quiet", "--tls-verify=false",
                                f"{reg.host}/library/bench:1"], check=True, capture_output=True)
                podman.append(time.perf_counter() - t)
                subprocess.run(["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
                                "--storage-driver", "overlay", "system", "reset", "--force"], capture_output=True)
                subprocess.run(["umount", "-R", str(root)], capture_output=True)
                shutil.rmtree(root, ignore_errors=True)
            if shutil.which("skopeo"):
                oci = Path(tmp) / f"oci{i}"
                t = time.perf_counter()
                subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{reg.host}/library/bench:1",
                                f"oci:{oci}"], check=True, capture_output=True)
                peer.append(time.perf_counter() - t)
                shutil.rmtree(oci)
    out: dict[str, Any] = {"pull_ms_median": statistics.median(ours) * 1000, "pull_ms_p95": _pct(ours, 0.95) * 1000}
    line = f"{name}: 30 MB / 3 layers cold, download+verify median {out['pull_ms_median']:.0f} ms " \
           f"p95 {out['pull_ms_p95']:.0f} ms"
    if peer:
        out["skopeo_ms_median"] = statistics.median(peer) * 1000
        out["skopeo_ms_p95"] = _pct(peer, 0.95) * 1000
        out["ratio"] = out["pull_ms_median"] / out["skopeo_ms_median"]
        line += f"; skopeo copy median {out['skopeo_ms_median']:.0f} ms p95 {out['skopeo_ms_p95']:.0f} ms " \
                f"({out['ratio']:.2f}x)"
    print(line)
    out["pull_unpack_ms_median"] = statistics.median(unpacked) * 1000
    out["pull_unpack_ms_p95"] = _pct(unpacked, 0.95) * 1000
    line = f"{name}: pull + unpack median {out['pull_unpack_ms_median']:.0f} ms p95 {out['pull_unpack_ms_p95']:.0f} ms"
    if podman:
        out["podman_pull_ms_median"] = statistics.median(podman) * 1000
        out["podman_pull_ms_p95"] = _pct(podman, 0.95) * 1000
        out["unpack_ratio"] = out["pull_unpack_ms_median"] / out["podman_pull_ms_median"]
        line += f"; podman pull median {out['podman_pull_ms_median']:.0f} ms p95 {out['podman_pull_ms_p95']:.0f} ms " \
                f"({out['unpack_ratio']:.2f}x, target <= 0.7)"
    print(line)
    return {name: out}
