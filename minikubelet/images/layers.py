"""Unpacked layers, one directory per chain ID under ``<data-dir>/images/layers/``, shared by every pod.

``<root>/<chain-hex>/fs`` is the layer's tree (an overlay lowerdir, whiteouts as overlay whiteouts) and
``<root>/<chain-hex>/layer.json`` says what it is. A layer is unpacked into ``<root>/.tmp-<chain-hex>-<n>/`` by a
fresh helper process (``minikubelet.nsexec.unpack``, chrooted into the new tree), synced, then renamed into place:
only a finished layer has a chain-ID name, so a daemon killed mid-unpack leaves a ``.tmp-`` directory, which the
next store start removes. Concurrent callers for one chain ID share one unpack. The daemon only awaits the helper.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minikubelet.images.content import ImageContent

log = logging.getLogger(__name__)

DEFAULT_MAX_LAYER_BYTES = 32 << 30  # 32 GiB uncompressed per layer: far past any real layer, short of a bomb's
UNPACK_CONCURRENCY = 3  # containerd's default of layers unpacked at once
_HELPER = "import sys; sys.path.insert(0, sys.argv[1]); from minikubelet.nsexec.unpack import main; main(sys.argv[2:])"
_PKG_PARENT = str(Path(__file__).resolve().parents[2])


class LayerError(Exception):
    """A layer could not be unpacked; the message names the layer and, when one is at fault, the entry."""


@dataclass(frozen=True, slots=True)
class LayerInfo:
    chain_id: str
    diff_id: str
    size: int  # bytes of the uncompressed tar stream
    path: Path  # the lowerdir


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise LayerError(f"{digest!r} is not a sha256 digest")
    return hexpart


class LayerStore:
    def __init__(self, root: Path, *, max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES) -> None:
        self.root = root
        self.max_layer_bytes = max_layer_bytes
        self._inflight: dict[str, asyncio.Future[Path]] = {}
        self._sem = asyncio.Semaphore(UNPACK_CONCURRENCY)
        self._seq = itertools.count()
        self._cleaned = False

    def path(self, chain_id: str) -> Path:
        return self.root / _hex(chain_id) / "fs"

    def has(self, chain_id: str) -> bool:
        return (self.root / _hex(chain_id) / "layer.json").is_file()

    async def _clean_temps(self) -> None:
        """Remove what an unpack killed midway left (only ``.tmp-`` names: nothing that looks complete)."""
        if self._cleaned:
            return
        self._cleaned = True
        self.root.mkdir(parents=True, exist_ok=True)
        stale = [p for p in self.root.iterdir() if p.name.startswith(".tmp-")]
        for p in stale:
            log.info("Removing an unfinished layer unpack path=%s", p)
            await asyncio.to_thread(shutil.rmtree, p, True)

    async def ensure_layers(self, content: ImageContent, blob_path: Callable[[str], Path]) -> tuple[Path, ...]:
        """Unpack every layer of ``content`` not yet present; return the overlay lowerdirs, top layer first."""
        await self._clean_temps()
        chains = content.chain_ids()
        paths = await asyncio.gather(*(self._ensure(chain, layer.diff_id, blob_path(layer.digest), content.reference)
                                       for chain, layer in zip(chains, content.layers, strict=True)))
        return tuple(reversed(paths))

    async def _ensure(self, chain_id: str, diff_id: str, blob: Path, reference: str) -> Path:
        if self.has(chain_id):
            return self.path(chain_id)
        fut = self._inflight.get(chain_id)
        if fut is None:
            fut = asyncio.ensure_future(self._unpack(chain_id, diff_id, blob, reference))
            self._inflight[chain_id] = fut
            fut.add_done_callback(functools.partial(self._done, chain_id))
        return await asyncio.shield(fut)

    def _done(self, chain_id: str, _fut: asyncio.Future[Path]) -> None:
        self._inflight.pop(chain_id, None)

    async def _unpack(self, chain_id: str, diff_id: str, blob: Path, reference: str) -> Path:
        hexpart = _hex(chain_id)
        final = self.root / hexpart
        tmp = self.root / f".tmp-{hexpart}-{os.getpid()}-{next(self._seq)}"
        fs = tmp / "fs"
        async with self._sem:
            fs.mkdir(parents=True, mode=0o755)
            try:
                size = await self._run_helper(blob, fs, diff_id, reference)
                meta = {"chain_id": chain_id, "diff_id": diff_id, "size": size}
                with open(tmp / "layer.json", "w") as f:
                    json.dump(meta, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, final)
                dfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
        log.info("Unpacked layer chain_id=%s diff_id=%s size=%d image=%s", chain_id, diff_id, size, reference)
        return final / "fs"

    async def _run_helper(self, blob: Path, fs: Path, diff_id: str, reference: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HELPER, _PKG_PARENT, str(blob), str(fs), diff_id, str(self.max_layer_bytes),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await proc.communicate()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        line = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
        try:
            reply = json.loads(line[0])
        except ValueError:
            reply = {"ok": False, "error": f"the unpack helper failed (exit {proc.returncode}): "
                                           f"{err.decode(errors='replace').strip()[-500:]}"}
        if not reply.get("ok"):
            raise LayerError(f"layer {diff_id} of {reference}: {reply.get('error')}")
        return int(reply["size"])

    def list(self) -> list[LayerInfo]:
        """Every complete layer with its size, for image GC and ``images list``."""
        out: list[LayerInfo] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not (d / "layer.json").is_file():
                continue
            try:
                meta = json.loads((d / "layer.json").read_text())
                out.append(LayerInfo(meta["chain_id"], meta["diff_id"], int(meta["size"]), d / "fs"))
            except (OSError, ValueError, KeyError):
                log.warning("Skipping a layer whose layer.json is unreadable path=%s", d)
        return out

    async def remove(self, chain_id: str) -> bool:
        """Remove one layer (GC; the caller knows no container uses it). Returns whether it was there."""
        final = self.root / _hex(chain_id)
        if not final.exists():
            return False
        doomed = self.root / f".tmp-rm-{final.name}-{os.getpid()}-{next(self._seq)}"
        os.rename(final, doomed)  # gone at once for has()/list(); the slow delete runs in a thread
        await asyncio.to_thread(shutil.rmtree, doomed, True)
        log.info("Removed layer chain_id=%s", chain_id)
        return True
