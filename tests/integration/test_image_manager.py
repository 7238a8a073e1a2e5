"""ImageManager against a real registry: policy, events in the kubelet's words, back-off, one pull per image."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from minikubelet.images.content import ImagePullError
from minikubelet.images.manager import ImageManager
from minikubelet.images.registries import Registries
from minikubelet.images.store import ImageStore
from tests.oci import Pusher, build_image
from tests.registry import running_registry


def _pod(image: str, policy: str = "", secrets: tuple[str, ...] = ()) -> Any:
    c = {"name": "app", "image": image, **({"imagePullPolicy": policy} if policy else {})}
    spec = {"containers": [c], **({"imagePullSecrets": [{"name": s} for s in secrets]} if secrets else {})}
    return SimpleNamespace(uid="uid-1", manifest={"spec": spec}), SimpleNamespace(name="app", image=image)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _manager(tmp_path: Path, host: str, clock: Clock | None = None) -> ImageManager:
    regs = Registries(mirrors={"docker.io": (f"http://{host}",)}, disable_default_endpoint=True)
    return ImageManager(ImageStore(tmp_path / "images"), regs, clock=clock or Clock())


def test_pull_events_present_never_and_secrets(tmp_path: Path) -> None:
    with running_registry() as reg:
        img = build_image([{"f": b"1"}])
        Pusher(reg.url).image("library/nginx", "1.14", img)
        events: list[tuple[str, str, str]] = []

        async def go() -> None:
            m = _manager(tmp_path, reg.host)
            try:
                pod, c = _pod("nginx:1.14", secrets=("regcred",))
                resolved = await m.ensure(pod, c, lambda *e: events.append(e))
                assert resolved.image_id.startswith("docker.io/library/nginx@sha256:")
                assert resolved.content.reference == "docker.io/library/nginx:1.14"
                await m.ensure(pod, c, lambda *e: events.append(e))
                pod, c = _pod("nginx:absent", policy="Never")
                with pytest.raises(ImagePullError) as ei:
                    await m.ensure(pod, c, lambda *e: events.append(e))
                assert ei.value.reason == "ErrImageNeverPull"
                pod, c = _pod("Nginx")
                with pytest.raises(ImagePullError) as ei:
                    await m.ensure(pod, c, lambda *e: events.append(e))
                assert ei.value.reason == "InvalidImageName"
                assert m.node_images()[0]["names"][1] == "docker.io/library/nginx:1.14"
            finally:
                await m.close()

        asyncio.run(go())
    reasons = [(t, r) for t, r, _ in events]
    assert reasons == [
        ("Warning", "FailedToRetrieveImagePullSecret"),
        ("Normal", "Pulling"),
        ("Normal", "Pulled"),
        ("Normal", "Pulled"),
        ("Warning", "ErrImageNeverPull"),
        ("Warning", "InspectFailed"),
    ]
    assert events[0][2] == (
        "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed."
    )
    assert events[1][2] == 'Pulling image "nginx:1.14"'
    assert events[2][2].startswith('Successfully pulled image "nginx:1.14" in ')
    assert events[2][2].endswith(
        f"including waiting). Image size: {sum(len(b.data) for b in img.blobs) + len(img.manifest.data)} bytes."
    )
    assert events[3][2] == 'Container image "nginx:1.14" already present on machine'
    assert events[4][2] == 'Container image "nginx:absent" is not present with pull policy of Never'


def test_registry_down_errimagepull_then_backoff_then_recovers(tmp_path: Path) -> None:
    with running_registry() as reg:
        Pusher(reg.url).image("library/app", "1", build_image([{"f": b"1"}]))
        host = reg.host
        reg.stop()
        clock = Clock()
        events: list[tuple[str, str, str]] = []

        async def go() -> None:
            m = _manager(tmp_path, host, clock)
            try:
                pod, c = _pod("app:1")
                with pytest.raises(ImagePullError) as ei:
                    await m.ensure(pod, c, lambda *e: events.append(e))
                assert ei.value.reason == "ErrImagePull"
                assert "failed to do request" in ei.value.message
                clock.now += 5
                with pytest.raises(ImagePullError) as ei:
                    await m.ensure(pod, c, lambda *e: events.append(e))
                assert ei.value.reason == "ImagePullBackOff"
                assert ei.value.message.startswith('Back-off pulling image "app:1": ErrImagePull: ')
                clock.now += 6  # 10 s passed: a new attempt, still down, now 20 s
                with pytest.raises(ImagePullError) as ei:
                    await m.ensure(pod, c, lambda *e: events.append(e))
                assert ei.value.reason == "ErrImagePull"
                clock.now += 15
                with pytest.raises(ImagePullError) as ei:
                    await m.ensure(pod, c, lambda *e: events.append(e))
                assert ei.value.reason == "ImagePullBackOff"
            finally:
                await m.close()

        asyncio.run(go())
    assert [r for _, r, _ in events] == ["Pulling", "Failed", "BackOff", "Pulling", "Failed", "BackOff"]
    assert events[1][2].startswith('Failed to pull image "app:1": failed to pull and unpack image ')
    assert events[2] == ("Normal", "BackOff", 'Back-off pulling image "app:1"')


def test_two_pods_one_pull(tmp_path: Path) -> None:
    with running_registry() as reg:
        Pusher(reg.url).image("library/app", "2", build_image([{"f": b"2" * 100000}]))

        async def go() -> None:
            m = _manager(tmp_path, reg.host)
            pulls = 0
            real = m.client.pull

            async def counting(*a: Any, **k: Any) -> Any:
                nonlocal pulls
                pulls += 1
                return await real(*a, **k)

            m.client.pull = counting  # type: ignore[method-assign]
            try:
                (p1, c1), (p2, c2) = _pod("app:2"), _pod("app:2")
                p2.uid = "uid-2"
                a, b = await asyncio.gather(m.ensure(p1, c1, lambda *e: None), m.ensure(p2, c2, lambda *e: None))
                assert a.content == b.content
                assert pulls == 1
            finally:
                await m.close()

        asyncio.run(go())


def test_pulled_image_unpacked_into_shared_layers(tmp_path: Path) -> None:
    from minikubelet.images.layers import LayerStore

    with running_registry() as reg:
        img = build_image([{"bin": None, "bin/hello": b"hi\n"}, {"etc": None, "etc/motd": b"welcome\n"}])
        Pusher(reg.url).image("library/app", "5", img)

        async def go() -> None:
            regs = Registries(mirrors={"docker.io": (f"http://{reg.host}",)}, disable_default_endpoint=True)
            root = tmp_path / "images"
            m = ImageManager(ImageStore(root), regs, layers=LayerStore(root / "layers"))
            try:
                pod, c = _pod("app:5")
                resolved = await m.ensure(pod, c, lambda *e: None)
                top, bottom = resolved.lowerdirs
                assert (top / "etc" / "motd").read_bytes() == b"welcome\n"
                assert (bottom / "bin" / "hello").read_bytes() == b"hi\n"
                pod2, c2 = _pod("app:5")
                pod2.uid = "uid-2"
                assert (await m.ensure(pod2, c2, lambda *e: None)).lowerdirs == resolved.lowerdirs
            finally:
                await m.close()

        asyncio.run(go())
