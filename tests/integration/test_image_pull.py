"""Pulls from a real docker-registry on loopback: anonymous and htpasswd, verification, resume, single-flight."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from minikubelet.images.reference import parse
from minikubelet.images.registry import Endpoint, Progress, RegistryClient, RegistryError
from minikubelet.images.store import ImageStore
from tests.oci import Image, Pusher, build_image
from tests.registry import LocalRegistry, running_registry


def _image() -> Image:
    big = os.urandom(3 << 20)  # incompressible, so the layer is a few MiB and downloads in several chunks
    return build_image(
        [{"bin": None, "bin/hello": b"hello\n"}, {"data": None, "data/big": big}, {"etc": None, "etc/x": b"x"}],
        config={"Entrypoint": ["/bin/hello"], "Cmd": ["--loud"], "Env": ["A=1"], "WorkingDir": "/data"},
    )


@pytest.fixture
def anon() -> Iterator[LocalRegistry]:
    with running_registry("anonymous") as reg:
        yield reg


def _pull(reg: LocalRegistry, image: str, store: ImageStore, **ep: str) -> object:
    async def go() -> object:
        client = RegistryClient()
        try:
            return await client.pull(parse(image), [Endpoint(reg.url, **ep)], store)
        finally:
            await client.close()

    return asyncio.run(go())


def test_anonymous_index_pull_selects_platform_and_verifies(anon: LocalRegistry, tmp_path: Path) -> None:
    img = _image()
    other = build_image([{"arm": b"arm"}], architecture="arm64")
    index = Pusher(anon.url).index("library/app", "1.0", {"arm64/v8": other, "amd64": img})
    store = ImageStore(tmp_path / "images")
    content = _pull(anon, f"{anon.host}/library/app:1.0", store)
    assert content.manifest_digest == img.manifest.digest  # type: ignore[attr-defined]
    assert content.repo_digest == f"{anon.host}/library/app@{index.digest}"  # type: ignore[attr-defined]
    assert content.config.entrypoint == ("/bin/hello",)  # type: ignore[attr-defined]
    assert [layer.diff_id for layer in content.layers] == img.diff_ids  # type: ignore[attr-defined]
    for b in img.blobs:
        assert store.blob_path(b.digest).read_bytes() == b.data
    assert not store.has_blob(other.layers[0].digest)
    assert list(store.ingest.iterdir()) == []
    assert store.content(f"{anon.host}/library/app:1.0") == content


def test_htpasswd_basic_auth_and_wrong_password(tmp_path: Path) -> None:
    with running_registry("htpasswd") as reg:
        img = build_image([{"f": b"1"}])
        Pusher(reg.url, reg.username, reg.password).image("team/app", "v1", img)
        store = ImageStore(tmp_path / "images")
        content = _pull(reg, f"{reg.host}/team/app:v1", store, username=reg.username, password=reg.password)
        assert content.config_digest == img.config.digest  # type: ignore[attr-defined]
        with pytest.raises(RegistryError, match="pull access denied.*401 Unauthorized"):
            _pull(reg, f"{reg.host}/team/app:v1", ImageStore(tmp_path / "other"), username="tester", password="bad")
        with pytest.raises(RegistryError, match="asks for a username and password"):
            _pull(reg, f"{reg.host}/team/app:v1", ImageStore(tmp_path / "third"))


def test_tampered_blob_refused_and_nothing_published(anon: LocalRegistry, tmp_path: Path) -> None:
    img = build_image([{"f": b"original content"}], compression="plain")
    Pusher(anon.url).image("library/bad", "1", img)
    layer = img.layers[0]
    data = next((anon.root / "data").rglob(f"blobs/sha256/{layer.digest[7:9]}/{layer.digest[7:]}/data"))
    data.write_bytes(layer.data.replace(b"original", b"tampered"))  # same size, other bytes
    store = ImageStore(tmp_path / "images")
    with pytest.raises(RegistryError, match=f"blob {layer.digest} failed verification"):
        _pull(anon, f"{anon.host}/library/bad:1", store)
    assert not store.has_blob(layer.digest)
    assert store.refs() == {}
    assert list(store.ingest.iterdir()) == []


def test_not_found_and_registry_down(anon: LocalRegistry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(RegistryError, match=r'failed to resolve reference ".*/library/nope:1": not found'):
        _pull(anon, f"{anon.host}/library/nope:1", store)
    anon.stop()
    with pytest.raises(RegistryError, match="failed to do request"):
        _pull(anon, f"{anon.host}/library/nope:1", store)


def test_partial_download_resumed_with_range(anon: LocalRegistry, tmp_path: Path) -> None:
    img = _image()
    Pusher(anon.url).image("library/app", "2", img)
    store = ImageStore(tmp_path / "images")
    big = max(img.layers, key=lambda b: len(b.data))
    store.partial_path(big.digest).write_bytes(big.data[: len(big.data) // 2])  # as a killed daemon leaves it
    _pull(anon, f"{anon.host}/library/app:2", store)
    assert store.blob_path(big.digest).read_bytes() == big.data
    assert list(store.ingest.iterdir()) == []


def test_concurrent_pulls_download_each_blob_once(anon: LocalRegistry, tmp_path: Path) -> None:
    img = _image()
    Pusher(anon.url).image("library/app", "3", img)
    store = ImageStore(tmp_path / "images")
    downloads: list[str] = []

    class Counting(RegistryClient):
        async def _download(self, ep, repo, digest, size, store, progress):  # type: ignore[no-untyped-def]
            downloads.append(digest)
            await super()._download(ep, repo, digest, size, store, progress)

    async def go() -> None:
        client = Counting()
        try:
            ref = parse(f"{anon.host}/library/app:3")
            a, b = await asyncio.gather(
                client.pull(ref, [Endpoint(anon.url)], store, Progress()),
                client.pull(ref, [Endpoint(anon.url)], store, Progress()),
            )
            assert a == b
        finally:
            await client.close()

    asyncio.run(go())
    assert sorted(downloads) == sorted(b.digest for b in img.blobs)
