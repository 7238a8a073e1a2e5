"""The content-addressed image store under ``<data-dir>/images/``.

Layout: ``blobs/sha256/<hex>`` (verified blobs: manifests, configs, compressed layers), ``ingest/<hex>.partial``
(downloads in progress, resumable), ``refs.json`` (normalised reference -> its record). Every publish is a temp
file + fsync + rename, and ``refs.json`` is written last, so a daemon killed mid-pull leaves no reference to
anything half-written; the next pull finds the finished blobs and the partials and continues.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minikubelet.images.content import ImageConfig, ImageContent, LayerDesc


@dataclass(frozen=True, slots=True)
class RefRecord:
    """What ``refs.json`` keeps per reference."""

    manifest_digest: str
    repo_digest: str
    config_digest: str
    pulled_at: float
    last_used: float = 0.0


def _fsync_write(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"unsupported digest {digest!r}: only sha256 is supported")
    return hexpart


class ImageStore:
    """Blobs and references on disk; all methods are quick file operations (the client streams in chunks)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.ingest = root / "ingest"
        self.refs_file = root / "refs.json"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest.mkdir(parents=True, exist_ok=True)

    # blobs
    def blob_path(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def partial_path(self, digest: str) -> Path:
        return self.ingest / f"{_hex(digest)}.partial"

    def commit_partial(self, digest: str) -> None:
        """A verified partial becomes a blob (fsync + rename)."""
        partial = self.partial_path(digest)
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, self.blob_path(digest))

    def put_blob(self, digest: str, data: bytes) -> None:
        if not self.has_blob(digest):
            _fsync_write(self.blob_path(digest), data)

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    # references
    def refs(self) -> dict[str, RefRecord]:
        try:
            raw: dict[str, Any] = json.loads(self.refs_file.read_text())
        except FileNotFoundError:
            return {}
        return {k: RefRecord(**v) for k, v in raw.items()}

    def _write_refs(self, refs: dict[str, RefRecord]) -> None:
        data = json.dumps({k: asdict(v) for k, v in sorted(refs.items())}, indent=1).encode()
        _fsync_write(self.refs_file, data)

    def set_ref(self, reference: str, record: RefRecord) -> None:
        refs = self.refs()
        refs[reference] = record
        self._write_refs(refs)

    def remove_ref(self, reference: str) -> bool:
        refs = self.refs()
        if refs.pop(reference, None) is None:
            return False
        self._write_refs(refs)
        return True

    def touch(self, reference: str) -> None:
        refs = self.refs()
        rec = refs.get(reference)
        if rec is not None:
            refs[reference] = RefRecord(**{**asdict(rec), "last_used": time.time()})
            self._write_refs(refs)

    def content(self, reference: str) -> ImageContent | None:
        """The stored image for ``reference``, or None when absent or any of its blobs is missing."""
        rec = self.refs().get(reference)
        if rec is None:
            return None
        try:
            return content_from_blobs(self, reference, rec)
        except (OSError, ValueError, KeyError):
            return None

    def referenced_blobs(self) -> set[str]:
        """Every blob digest some reference needs (manifests, configs, layers, and index blobs)."""
        keep: set[str] = set()
        for ref, rec in self.refs().items():
            keep |= {rec.manifest_digest, rec.config_digest, rec.repo_digest.rpartition("@")[2]}
            c = content_from_blobs(self, ref, rec)
            keep |= {layer.digest for layer in c.layers}
        return keep


def parse_config(data: bytes) -> tuple[ImageConfig, list[str]]:
    """An OCI/Docker image config: what a container start uses, and the ``rootfs.diff_ids``."""
    doc = json.loads(data)
    cfg = doc.get("config") or {}

    def strs(v: Any) -> tuple[str, ...] | None:
        return tuple(str(x) for x in v) if isinstance(v, list) else None

    config = ImageConfig(
        entrypoint=strs(cfg.get("Entrypoint")),
        cmd=strs(cfg.get("Cmd")),
        env=strs(cfg.get("Env")) or (),
        working_dir=str(cfg.get("WorkingDir") or ""),
        user=str(cfg.get("User") or ""),
        stop_signal=cfg.get("StopSignal") or None,
        exposed_ports=tuple(sorted(cfg.get("ExposedPorts") or {})),
        labels=tuple(sorted((str(k), str(v)) for k, v in (cfg.get("Labels") or {}).items())),
    )
    diff_ids = [str(d) for d in (doc.get("rootfs") or {}).get("diff_ids") or []]
    return config, diff_ids


def content_from_blobs(store: ImageStore, reference: str, rec: RefRecord) -> ImageContent:
    manifest_bytes = store.read_blob(rec.manifest_digest)
    manifest = json.loads(manifest_bytes)
    config_bytes = store.read_blob(rec.config_digest)
    config, diff_ids = parse_config(config_bytes)
    descs = manifest.get("layers") or []
    if len(descs) != len(diff_ids):
        raise ValueError(f"manifest has {len(descs)} layers but config has {len(diff_ids)} diff_ids")
    layers = tuple(
        LayerDesc(digest=d["digest"], media_type=d["mediaType"], size=int(d["size"]), diff_id=diff)
        for d, diff in zip(descs, diff_ids, strict=True)
    )
    for layer in layers:
        if not store.has_blob(layer.digest):
            raise ValueError(f"layer {layer.digest} missing")
    size = len(manifest_bytes) + len(config_bytes) + sum(layer.size for layer in layers)
    return ImageContent(
        reference=reference,
        manifest_digest=rec.manifest_digest,
        repo_digest=rec.repo_digest,
        config_digest=rec.config_digest,
        config=config,
        layers=layers,
        size=size,
    )
