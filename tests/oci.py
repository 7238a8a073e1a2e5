"""A small offline OCI image writer for tests, and a push to the test registry with plain HTTP PUTs.

Layers come from dicts (path -> bytes, or ``None`` for a directory), compressed gzip or plain; an image can
be pushed alone or as an index with several platforms.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import urllib.request
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "plain": "application/vnd.oci.image.layer.v1.tar",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes | None]) -> bytes:
    """A tar of ``files`` (``None`` = a directory), with fixed mtimes so the digest is stable."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass
class Image:
    """One platform's image: its layer blobs, config and manifest."""

    layers: list[Blob]
    config: Blob
    manifest: Blob
    diff_ids: list[str] = field(default_factory=list)

    @property
    def blobs(self) -> list[Blob]:
        return [*self.layers, self.config]


def build_image(
    layers: list[dict[str, bytes | None]],
    *,
    compression: str = "gzip",
    config: dict[str, Any] | None = None,
    architecture: str = "amd64",
) -> Image:
    blobs: list[Blob] = []
    diff_ids: list[str] = []
    for files in layers:
        raw = tar_of(files)
        diff_ids.append(sha256(raw))
        data = gzip.compress(raw, mtime=0) if compression == "gzip" else raw
        blobs.append(Blob(LAYER_TYPES[compression], data))
    cfg = {
        "architecture": architecture,
        "os": "linux",
        "config": config or {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_blob = Blob(OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in blobs],
    }
    return Image(blobs, config_blob, Blob(OCI_MANIFEST, json.dumps(manifest).encode()), diff_ids)


def build_index(images: dict[str, Image]) -> Blob:
    """An OCI index of ``{"amd64": image, "arm64/v8": image, ...}`` (plus a buildkit-style attestation entry)."""
    manifests = []
    for plat, img in images.items():
        arch, _, variant = plat.partition("/")
        platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        manifests.append(img.manifest.descriptor(platform=platform))
    manifests.append(
        {
            **images[next(iter(images))].config.descriptor(),
            "mediaType": OCI_MANIFEST,
            "platform": {"os": "unknown", "architecture": "unknown"},
        }
    )
    return Blob(OCI_INDEX, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode())


class Pusher:
    """Plain-HTTP pushes to the test registry (monolithic blob uploads, manifests by tag or digest)."""

    def __init__(self, url: str, username: str = "", password: str = "") -> None:
        self.url = url
        self.headers: dict[str, str] = {}
        if username:
            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def _do(self, method: str, url: str, data: bytes | None = None, ctype: str = "") -> Any:
        headers = dict(self.headers)
        if ctype:
            headers["Content-Type"] = ctype
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        return urllib.request.urlopen(req, timeout=10)

    def blob(self, repo: str, blob: Blob) -> None:
        with self._do("POST", f"{self.url}/v2/{repo}/blobs/uploads/", b"") as r:
            location = r.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        sep = "&" if "?" in location else "?"
        self._do("PUT", f"{location}{sep}digest={blob.digest}", blob.data, "application/octet-stream").close()

    def manifest(self, repo: str, ref: str, blob: Blob) -> None:
        self._do("PUT", f"{self.url}/v2/{repo}/manifests/{ref}", blob.data, blob.media_type).close()

    def image(self, repo: str, tag: str, image: Image) -> None:
        for b in image.blobs:
            self.blob(repo, b)
        self.manifest(repo, tag, image.manifest)

    def index(self, repo: str, tag: str, images: dict[str, Image]) -> Blob:
        for img in images.values():
            for b in img.blobs:
                self.blob(repo, b)
            self.manifest(repo, img.manifest.digest, img.manifest)
        index = build_index(images)
        self.manifest(repo, tag, index)
        return index
