"""``scripts/bench unpack``: unpack the Debian bookworm nginx root (one ~116 MB layer) into the layer store.

Side by side in the same run: the store's chrooted, checked unpack (gzip and zstd blobs; diff_id verified, synced)
against GNU ``tar -x`` of the same blob with owners, xattrs and no checks (``tar --zstd`` for zstd). Medians and
p95 of wall time. The nginx root is built once by tests/imagefs.py (mmdebstrap, cached).
"""

from __future__ import annotations

import asyncio
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

from minikubelet.images.content import ImageConfig, ImageContent, LayerDesc  # noqa: E402
from minikubelet.images.layers import LayerStore  # noqa: E402
from tests import imagefs  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(name: str, runs: int) -> dict[str, Any]:
    (layer,) = imagefs.nginx_root()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mk-bench-unpack-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        for kind in ("gzip", "zstd"):
            blob = root / f"layer.{kind}"
            digest = imagefs.compress(layer, blob, kind)
            content = ImageContent("bench", "", "", "", ImageConfig(),
                                   (LayerDesc(digest, "", blob.stat().st_size, layer.diff_id),))
            ours: list[float] = []
            tars: list[float] = []
            for i in range(runs):
                store = LayerStore(root / f"store-{kind}-{i}")
                t0 = time.monotonic()
                asyncio.run(store.ensure_layers(content, lambda _d, b=blob: b))
                ours.append(time.monotonic() - t0)
                shutil.rmtree(store.root)
                out = root / f"tar-{kind}-{i}"
                out.mkdir()
                t0 = time.monotonic()
                subprocess.run(["tar", "-x", "--zstd" if kind == "zstd" else "-z", "--numeric-owner", "--xattrs",
                                "--xattrs-include=*", "-f", str(blob), "-C", str(out)], check=True)
                subprocess.run(["sync", "-f", str(out)], check=True)
                tars.append(time.monotonic() - t0)
                shutil.rmtree(out)
            for label, values in ((f"minikubelet {kind}", ours), (f"GNU tar {kind}", tars)):
                print(f"{name} {label}: median {statistics.median(values):.2f} s, p95 {_pct(values, 0.95):.2f} s "
                      f"({runs} runs, {layer.path.stat().st_size >> 20} MiB tar, blob "
                      f"{blob.stat().st_size >> 20} MiB)")
                results[f"{name} {label}"] = {"median_s": statistics.median(values), "p95_s": _pct(values, 0.95)}
            ratio = statistics.median(ours) / statistics.median(tars)
            print(f"{name} {kind}: minikubelet / GNU tar = {ratio:.2f}x")
    return results


if __name__ == "__main__":
    run("unpack", int(sys.argv[1]) if len(sys.argv) > 1 else 5)
