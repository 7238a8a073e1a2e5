"""Per-pod image decisions (the kubelet's ``images/image_manager.go``): policy, back-off, events, one pull per image.

``ImageManager`` implements the ``ImageProvider`` seam of pod/context.py. Pull policy as the API server defaults
it (Always for ``:latest`` or no tag, else IfNotPresent; Never); pull back-off per ``<podUID>_<image>`` 10 s
doubling to 300 s; waiting reasons ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName; the
kubelet's event texts. Pulls run in tasks of their own, parallel across images and single-flight per normalised
reference, so a slow pull never delays a present image. Unpacking is the ``LayerUnpacker`` injected (images/layers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from minikubelet.images.content import ImageContent, ImagePullError, ResolvedImage
from minikubelet.images.gc import GC_PERIOD, ImageGC
from minikubelet.images.layers import LayerError
from minikubelet.images.reference import Reference, default_pull_policy, invalid_image_message, parse
from minikubelet.images.registries import Registries
from minikubelet.images.registry import Progress, RegistryClient, RegistryError
from minikubelet.images.store import ImageStore
from minikubelet.timefmt import go_duration

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 10.0  # imageBackOffPeriod
BACKOFF_MAX = 300.0  # MaxImageBackOff
PROGRESS_EVERY = 5.0
NODE_STATUS_MAX_IMAGES = 50


class LayerUnpacker(Protocol):
    """What the manager needs of unpacked layers (images/layers.py ``LayerStore``)."""

    async def ensure_layers(self, content: ImageContent, blob_path: Callable[[str], Path]) -> tuple[Path, ...]: ...


class _Pod(Protocol):
    uid: str
    manifest: dict[str, Any]


class _Container(Protocol):
    name: str
    image: str


@dataclass
class _BackOff:
    delay: float
    until: float
    error: str


def _container_manifest(pod: _Pod, name: str) -> dict[str, Any]:
    spec = pod.manifest.get("spec") or {}
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            if c.get("name") == name:
                return dict(c)
    return {}


class ImageManager:
    def __init__(
        self,
        store: ImageStore,
        registries: Registries,
        layers: LayerUnpacker | None = None,
        client: RegistryClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.registries = registries
        self.layers = layers
        self.client = client or RegistryClient()
        self._clock = clock
        self._pulls: dict[str, asyncio.Task[ImageContent]] = {}
        self._backoff: dict[str, _BackOff] = {}
        self._in_use: dict[str, set[str]] = {}
        self._gc_task: asyncio.Task[None] | None = None
        self._node_images: tuple[int, list[dict[str, Any]]] | None = None  # (refs.json mtime, status.images)

    def start_gc(self, high: int, low: int) -> None:
        """Image garbage collection every 5 minutes (images/gc.py), never of an image a pod uses."""
        gc = ImageGC(self.store, self.images_in_use, high=high, low=low)

        async def loop() -> None:
            while True:
                await asyncio.sleep(GC_PERIOD)
                try:
                    await asyncio.to_thread(gc.collect)
                except (OSError, ValueError) as e:
                    log.warning("Image garbage collection failed error=%s", e)

        self._gc_task = asyncio.get_running_loop().create_task(loop(), name="image gc")

    async def close(self) -> None:
        if self._gc_task is not None:
            self._gc_task.cancel()
        for task in self._pulls.values():
            task.cancel()
        for task in list(self._pulls.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    # --- the ImageProvider seam ---------------------------------------------------------------------------
    async def ensure(self, pod: Any, container: Any, event: Callable[[str, str, str], None]) -> ResolvedImage:
        image = container.image
        bad = invalid_image_message(image)
        if bad is not None:
            event("Warning", "InspectFailed", bad)
            raise ImagePullError("InvalidImageName", bad, retry_in=10.0)
        ref = parse(image)
        spec = _container_manifest(pod, container.name)
        policy = spec.get("imagePullPolicy") or default_pull_policy(image)
        present = await asyncio.to_thread(self.store.content, str(ref))
        if present is not None and policy != "Always":
            event("Normal", "Pulled", f'Container image "{image}" already present on machine')
            return await self._resolve(present)
        if policy == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            event("Warning", "ErrImageNeverPull", msg)
            raise ImagePullError("ErrImageNeverPull", msg, retry_in=10.0)
        key = f"{pod.uid}_{image}"
        back = self._backoff.get(key)
        if back is not None and self._clock() < back.until:
            event("Normal", "BackOff", f'Back-off pulling image "{image}"')
            raise ImagePullError("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {back.error}',
                                 retry_in=max(back.until - self._clock(), 0.1))
        secrets = [s.get("name", "") for s in (pod.manifest.get("spec") or {}).get("imagePullSecrets") or []]
        if secrets:
            event(
                "Warning",
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(secrets)}); "
                "attempting to pull the image may not succeed.",
            )
        event("Normal", "Pulling", f'Pulling image "{image}"')
        started = self._clock()
        try:
            content, pulled_in = await self.pull(ref)
        except RegistryError as e:
            delay = BACKOFF_INITIAL if back is None else min(back.delay * 2, BACKOFF_MAX)
            self._backoff[key] = _BackOff(delay, self._clock() + delay, str(e))
            event("Warning", "Failed", f'Failed to pull image "{image}": {e}')
            raise ImagePullError("ErrImagePull", str(e)) from None
        self._backoff.pop(key, None)
        total = self._clock() - started
        event(
            "Normal",
            "Pulled",
            f'Successfully pulled image "{image}" in {go_duration(pulled_in)} ({go_duration(total)} including '
            f"waiting). Image size: {content.size} bytes.",
        )
        return await self._resolve(content)

    def in_use(self, pod_uid: str, image_ids: set[str]) -> None:
        if image_ids:
            self._in_use[pod_uid] = set(image_ids)
        else:
            self._in_use.pop(pod_uid, None)

    def images_in_use(self) -> set[str]:
        return set().union(*self._in_use.values()) if self._in_use else set()

    # --- pulls --------------------------------------------------------------------------------------------
    async def pull(self, ref: Reference, progress: Progress | None = None) -> tuple[ImageContent, float]:
        """Pull ``ref`` (one pull per reference however many callers); returns the image and the pull's seconds."""
        key = str(ref)
        task = self._pulls.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._pull(ref, progress or Progress()))
            self._pulls[key] = task
            task.add_done_callback(lambda _t: self._pulls.pop(key, None))
        started = self._clock()
        content = await asyncio.shield(task)
        return content, self._clock() - started

    async def _pull(self, ref: Reference, progress: Progress) -> ImageContent:
        endpoints = self.registries.endpoints(ref.domain)
        log.info("Pulling image image=%s endpoints=%s", ref, ",".join(e.url for e in endpoints) or "none")
        reporter = asyncio.get_running_loop().create_task(self._report(ref, progress))
        try:
            content = await self.client.pull(ref, endpoints, self.store, progress)
        finally:
            reporter.cancel()
        log.info(
            "Pulled image image=%s digest=%s bytes=%d seconds=%.3f",
            ref,
            content.repo_digest,
            content.size,
            time.monotonic() - progress.started,
        )
        return content

    @staticmethod
    async def _report(ref: Reference, progress: Progress) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            log.info("Pull in progress image=%s bytes=%d total=%d", ref, progress.done, progress.total)

    async def _resolve(self, content: ImageContent) -> ResolvedImage:
        await asyncio.to_thread(self.store.touch, content.reference)
        lowerdirs: tuple[Path, ...] = ()
        if self.layers is not None:
            try:
                lowerdirs = await self.layers.ensure_layers(content, self.store.blob_path)
            except (OSError, ValueError, LayerError) as e:
                raise ImagePullError("ErrImagePull", f'failed to unpack image "{content.reference}": {e}') from None
        return ResolvedImage(content=content, lowerdirs=lowerdirs, image_id=content.repo_digest)

    # --- for the node and the CLI -------------------------------------------------------------------------
    def node_images(self) -> list[dict[str, Any]]:
        """Node ``status.images``: up to 50, largest first, each ``{names: [repo@digest, repo:tag], sizeBytes}``."""
        try:
            stamp = self.store.refs_file.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if self._node_images is not None and self._node_images[0] == stamp:
            return self._node_images[1]
        found: list[tuple[int, str, str]] = []
        for ref in self.store.refs():
            c = self.store.content(ref)
            if c is not None:
                found.append((c.size, c.repo_digest, ref))
        found.sort(key=lambda f: -f[0])
        images = [{"names": [digest, ref], "sizeBytes": size} for size, digest, ref in found[:NODE_STATUS_MAX_IMAGES]]
        self._node_images = (stamp, images)
        return images
