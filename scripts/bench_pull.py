"""``scripts/bench pull``: a ~30 MB, 3-layer image, cold, from Debian's docker-registry on loopback.

Side by side in the same run: minikubelet's download + verify (images/registry.py into a fresh store) against
``skopeo copy docker://… oci:DIR`` of the same image. Medians and p95 of wall time. Pull + unpack against
``podman pull`` is not measured yet.
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
    with running_registry() as reg, tempfile.TemporaryDirectory(prefix="mk-bench-pull-", dir="/var/tmp") as tmp:
        Pusher(reg.url).image("library/bench", "1", img)
        ref = parse(f"{reg.host}/library/bench:1")
        for i in range(runs):
            store_dir = Path(tmp) / f"store{i}"

            async def pull(store_dir: Path = store_dir) -> None:
                client = RegistryClient()
                try:
                    await client.pull(ref, [Endpoint(reg.url)], ImageStore(store_dir))
                finally:
                    await client.close()

            t = time.perf_counter()
            asyncio.run(pull())
            ours.append(time.perf_counter() - t)
            shutil.rmtree(store_dir)
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
    return {name: out}
