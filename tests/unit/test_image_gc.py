"""Image GC as the kubelet's: 85 % high, 80 % low, least recently used first, never in use, never too new."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from minikubelet.images.gc import Candidate, ImageGC, bytes_to_free, choose
from minikubelet.images.store import ImageStore, RefRecord
from tests.oci import build_image


def test_bytes_to_free_thresholds() -> None:
    assert bytes_to_free(1000, 160, 85, 80) == 0  # 84 % used
    assert bytes_to_free(1000, 150, 85, 80) == 50  # 85 %: down to 80 %
    assert bytes_to_free(1000, 0, 85, 80) == 200


def test_choose_lru_skips_in_use_and_new() -> None:
    c = [
        Candidate("a", frozenset({"id-a"}), last_used=30, pulled_at=1, size=10),
        Candidate("b", frozenset({"id-b"}), last_used=10, pulled_at=1, size=10),
        Candidate("c", frozenset({"id-c"}), last_used=20, pulled_at=1, size=10),
        Candidate("new", frozenset({"id-n"}), last_used=0, pulled_at=990, size=10),
    ]
    assert [x.reference for x in choose(c, {"id-b"}, 15, now=1000, min_age=120)] == ["c", "a"]
    assert [x.reference for x in choose(c, set(), 5, now=1000, min_age=120)] == ["b"]


def _add(store: ImageStore, ref: str, data: bytes, last_used: float) -> Any:
    img = build_image([{"f": data}])
    for b in [*img.blobs, img.manifest]:
        store.put_blob(b.digest, b.data)
    store.set_ref(
        ref,
        RefRecord(
            img.manifest.digest,
            f"{ref.split(':')[0]}@{img.manifest.digest}",
            img.config.digest,
            pulled_at=1.0,
            last_used=last_used,
        ),
    )
    return img


def test_collect_removes_unused_images_and_their_blobs(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    old = _add(store, "docker.io/library/old:1", os.urandom(1000), 10)
    used = _add(store, "docker.io/library/used:1", os.urandom(1000), 5)
    full = SimpleNamespace(f_blocks=100, f_frsize=4096, f_bavail=5)  # 95 % used
    gc = ImageGC(
        store,
        lambda: {f"docker.io/library/used@{used.manifest.digest}"},
        statvfs=lambda _p: full,
        clock=lambda: 10_000.0,
    )  # type: ignore[arg-type, return-value]
    assert gc.collect() > 0
    assert set(store.refs()) == {"docker.io/library/used:1"}
    assert not store.has_blob(old.layers[0].digest)
    assert store.has_blob(used.layers[0].digest)
    calm = SimpleNamespace(f_blocks=100, f_frsize=4096, f_bavail=50)
    gc2 = ImageGC(store, set, statvfs=lambda _p: calm)  # type: ignore[arg-type, return-value]
    assert gc2.collect() == 0
    assert set(store.refs()) == {"docker.io/library/used:1"}
