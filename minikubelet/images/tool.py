"""``minikubelet images pull|list|rm|prune``: the image store for people, with crictl-like columns.

Works on ``<data-dir>/images`` directly (as ``crictl`` talks to the runtime's store); a pull here is the same
pull the daemon makes (same registries.yaml, same verification), so it also fills the store ahead of a pod.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TextIO

from minikubelet.images.reference import InvalidReference, parse
from minikubelet.images.registries import Registries
from minikubelet.images.registry import Progress, RegistryClient, RegistryError
from minikubelet.images.store import ImageStore

PRUNE_MIN_AGE = 3600.0  # an unreferenced blob younger than this may belong to a pull still running


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}"


async def _bar(progress: Progress, out: TextIO) -> None:
    while True:
        await asyncio.sleep(0.2)
        total = progress.total or 1
        filled = int(30 * min(progress.done, total) / total)
        out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {human_size(progress.done)}/{human_size(total)} ")
        out.flush()


async def pull(store: ImageStore, registries: Registries, image: str, out: TextIO = sys.stdout) -> int:
    try:
        ref = parse(image)
    except InvalidReference as e:
        print(f"minikubelet images pull: {image!r}: {e}", file=sys.stderr)
        return 2
    client = RegistryClient()
    progress = Progress()
    bar = asyncio.get_running_loop().create_task(_bar(progress, out)) if out.isatty() else None
    try:
        content = await client.pull(ref, registries.endpoints(ref.domain), store, progress)
    except RegistryError as e:
        print(f"\nminikubelet images pull: {e}" if bar else f"minikubelet images pull: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.cancel()
        await client.close()
    if bar is not None:
        out.write("\n")
    print(f"Image is up to date for {content.repo_digest}", file=out)
    return 0


def list_images(store: ImageStore, out: TextIO = sys.stdout) -> int:
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for ref in sorted(store.refs()):
        c = store.content(ref)
        r = parse(ref)
        rows.append(
            (r.name, r.tag or "<none>", (c.config_digest[7:20] if c else "<broken>"), human_size(c.size) if c else "-")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("   ".join(col.ljust(w) for col, w in zip(row, widths, strict=True)).rstrip(), file=out)
    return 0


def remove(store: ImageStore, images: list[str], out: TextIO = sys.stdout) -> int:
    rc = 0
    for image in images:
        try:
            key = str(parse(image))
        except InvalidReference as e:
            print(f"minikubelet images rm: {image!r}: {e}", file=sys.stderr)
            rc = 2
            continue
        if store.remove_image(key):
            print(f"Deleted: {key}", file=out)
        else:
            print(f"minikubelet images rm: no such image {key} (see minikubelet images list)", file=sys.stderr)
            rc = 1
    return rc


def prune_blobs(store: ImageStore, min_age: float = 0.0) -> tuple[int, int]:
    """Remove blobs no reference needs (and stale partials); returns (files, bytes) freed."""
    keep = store.referenced_blobs()
    now = time.time()
    files = freed = 0
    for d in (store.blobs, store.ingest):
        for p in d.iterdir():
            digest = "sha256:" + p.name.split(".", 1)[0]
            st = p.stat()
            if (d is store.blobs and digest in keep) or now - st.st_mtime < min_age:
                continue
            p.unlink(missing_ok=True)
            files, freed = files + 1, freed + st.st_size
    return files, freed


def prune(store: ImageStore, out: TextIO = sys.stdout) -> int:
    files, freed = prune_blobs(store, PRUNE_MIN_AGE)
    print(f"Removed {files} unused blobs, {human_size(freed)} freed", file=out)
    return 0


def store_at(data_dir: Path) -> ImageStore:
    return ImageStore(data_dir / "images")
