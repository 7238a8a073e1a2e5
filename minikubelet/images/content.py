"""What an image is once it is in the store: its config, its layers, and what a container start needs of it.

These types are the seam between the image store (images/store.py), unpacked layers (images/layers.py), the
pod-level pull decisions (images/manager.py) and the container start path (pod/containers.py, runtime/rootfs.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an OCI image config (``config`` object) a container start uses."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str | None = None
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LayerDesc:
    """One layer: its blob (``digest``, compressed as ``media_type``) and its uncompressed ``diff_id``."""

    digest: str
    media_type: str
    size: int
    diff_id: str


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


@dataclass(frozen=True, slots=True)
class ImageContent:
    """A stored image: the reference it was pulled by, its digests, config and layers (bottom first)."""

    reference: str  # normalised, e.g. docker.io/library/nginx:1.14
    manifest_digest: str  # the platform manifest's digest
    repo_digest: str  # docker.io/library/nginx@sha256:... (the index digest when pulled through an index)
    config_digest: str  # the image ID
    config: ImageConfig
    layers: tuple[LayerDesc, ...]
    size: int = 0  # bytes of compressed layers + config

    def chain_ids(self) -> list[str]:
        return chain_ids([layer.diff_id for layer in self.layers])


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What a container start needs: the image, its unpacked layers as overlay lowerdirs (top layer first)."""

    content: ImageContent
    lowerdirs: tuple[Path, ...]
    image_id: str = field(default="")  # shown as imageID in container statuses: repo@sha256:...


class ImagePullError(Exception):
    """An image could not be made ready: ``reason`` is the container's waiting reason (the kubelet's words).

    ErrImagePull, ImagePullBackOff, ErrImageNeverPull or InvalidImageName; ``message`` is the waiting message.
    """

    def __init__(self, reason: str, message: str, retry_in: float = 1.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_in = retry_in  # seconds until trying again is worth it (the rest of a back-off period)
