"""The images the image-pod tests run, built offline, and a test registry that serves them as docker.io would.

* busybox: one gzip layer holding the host's static ``/bin/busybox`` with a symlink per applet, ``/etc/passwd`` and
  ``/etc/group`` (root, nobody 65534, ``app`` 1000), ``/www/index.html``; ``Cmd ["sh"]``. Pushed as an index (the
  host's platform) to ``library/busybox:latest`` and ``library/busybox:1.36``. Variants of the same layer with other
  configs for the Entrypoint/Cmd/Env/WorkingDir/User rules (``library/bbentry``, ``library/bbuser``).
* nginx: Debian bookworm with ``nginx-light`` (mmdebstrap, tests/imagefs.py ``nginx_root``: cached in
  ``/var/tmp/minikubelet-test-cache`` keyed by the mmdebstrap and nginx-light versions, ~25 s cold), as one zstd
  layer (cached beside it); ``Cmd ["nginx","-g","daemon off;"]``, ``ExposedPorts 80/tcp``, ``StopSignal SIGQUIT``.
  Pushed as ``library/nginx:1.14``, ``1.14.2`` and ``latest``. Debian's default site serves
  ``/var/www/html/index.nginx-debian.html`` at ``/`` with 200, nginx running as root without systemd.
* redis: the same with ``redis-server`` (~75 s cold, cached the same way), ``Cmd ["redis-server",
  "--protected-mode", "no"]``, ``WorkingDir /data``, as ``library/redis:7`` and ``latest`` (examples/redis-pod.yml).

``image_registry`` is a session fixture: a docker-registry (tests/registry.py) with all of these pushed.
``write_registries`` writes the k3s ``registries.yaml`` mirroring docker.io to it (root-owned, 0600) and
``image_daemon`` starts a daemon with ``--registries`` it. Built once per test session (``functools.cache``).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import platform
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import imagefs
from tests.harness import DaemonHarness, running_daemon
from tests.oci import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Blob, Image, Pusher, sha256
from tests.registry import LocalRegistry, running_registry, serve

BUSYBOX = "/bin/busybox"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\napp:x:1000:\n"
INDEX_HTML = "<html><body><h1>busybox httpd: it works</h1></body></html>\n"
NGINX_TAGS = ("1.14", "1.14.2", "latest")
BUSYBOX_TAGS = ("latest", "1.36")
REDIS_TAGS = ("7", "latest")
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MTIME = 1_700_000_000


def host_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


# ----- layers ------------------------------------------------------------------------------------------------


def _entry(tf: tarfile.TarFile, name: str, kind: bytes, data: bytes = b"", mode: int = 0o644, **kw: Any) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, mode, MTIME
    for k, v in kw.items():
        setattr(ti, k, v)
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


@functools.cache
def busybox_tar() -> bytes:
    """The busybox root as one uncompressed tar (names ``bin/...``, owners root except /home/app)."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("www", 0o755), ("home", 0o755)):
            _entry(tf, d, tarfile.DIRTYPE, mode=mode)
        _entry(tf, "tmp", tarfile.DIRTYPE, mode=0o1777)
        _entry(tf, "home/app", tarfile.DIRTYPE, mode=0o755, uid=1000, gid=1000)
        _entry(tf, "bin/busybox", tarfile.REGTYPE, Path(BUSYBOX).read_bytes(), mode=0o755)
        for a in sorted(set(applets) - {"busybox"}):
            _entry(tf, f"bin/{a}", tarfile.SYMTYPE, mode=0o777, linkname="busybox")
        _entry(tf, "etc/passwd", tarfile.REGTYPE, PASSWD.encode())
        _entry(tf, "etc/group", tarfile.REGTYPE, GROUP.encode())
        _entry(tf, "www/index.html", tarfile.REGTYPE, INDEX_HTML.encode())
    return buf.getvalue()


@dataclass(frozen=True)
class LayerBlob:
    blob: Blob
    diff_id: str


@functools.cache
def busybox_layer() -> LayerBlob:
    raw = busybox_tar()
    return LayerBlob(Blob(LAYER_GZIP, gzip.compress(raw, compresslevel=6, mtime=0)), sha256(raw))


@functools.cache
def nginx_layer() -> LayerBlob:
    """The mmdebstrap nginx root (tests/imagefs.py ``nginx_root``, cached) as a zstd blob."""
    return zstd_layer(imagefs.nginx_root()[0])


def zstd_layer(layer: imagefs.Layer) -> LayerBlob:
    """``layer`` as a zstd blob, cached beside it by its diff_id."""
    out = imagefs.CACHE / f"layer-{layer.diff_id[7:23]}.tar.zst"
    if not out.exists():
        part = out.with_suffix(f".part{os.getpid()}")
        imagefs.compress(layer, part, "zstd")
        os.replace(part, out)
    return LayerBlob(Blob(LAYER_ZSTD, out.read_bytes()), layer.diff_id)


@functools.cache
def redis_layer() -> LayerBlob:
    return zstd_layer(imagefs.debian_root("redis-server"))


# ----- images ------------------------------------------------------------------------------------------------


def image_of(layers: list[LayerBlob], config: dict[str, Any], arch: str | None = None) -> Image:
    cfg = {
        "architecture": arch or host_arch(),
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [lb.diff_id for lb in layers]},
    }
    config_blob = Blob(OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [lb.blob.descriptor() for lb in layers],
    }
    return Image(
        [lb.blob for lb in layers],
        config_blob,
        Blob(OCI_MANIFEST, json.dumps(manifest).encode()),
        [lb.diff_id for lb in layers],
    )


def index_of(image: Image) -> Blob:
    """A one-platform OCI index, as Docker Hub serves official images."""
    arch = host_arch()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest.descriptor(platform={"os": "linux", "architecture": arch})],
    }
    return Blob(OCI_INDEX, json.dumps(doc).encode())


def busybox_image(**config: Any) -> Image:
    return image_of([busybox_layer()], {"Env": [DEFAULT_PATH], "Cmd": ["sh"], **config})


def nginx_image() -> Image:
    return image_of(
        [nginx_layer()],
        {
            "Env": [DEFAULT_PATH, "NGINX_VERSION=1.22.1"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT",
        },
    )


def redis_image() -> Image:
    return image_of(
        [redis_layer()],
        {
            "Env": [DEFAULT_PATH],
            "Cmd": ["redis-server", "--protected-mode", "no"],
            "ExposedPorts": {"6379/tcp": {}},
            "WorkingDir": "/data",
        },
    )


# Same busybox layer, other configs: the image config -> process rules.
ENTRY_CONFIG: dict[str, Any] = {
    "Entrypoint": ["sh", "-c"],
    "Cmd": ['echo "image-cmd $IMGVAR in $(pwd)"; sleep 3600'],
    "Env": [DEFAULT_PATH, "IMGVAR=from-image", "SHARED=image"],
    "WorkingDir": "/work/dir",
}


@dataclass
class ImageRegistry:
    """The running registry and what was pushed to it (top-level digests by ``repo:tag``)."""

    registry: LocalRegistry
    digests: dict[str, str]

    @property
    def host(self) -> str:
        return self.registry.host

    def image_id(self, repo_tag: str) -> str:
        """The imageID a container of ``repo_tag`` (``library/busybox:1.36``) shows: repo@<top-level digest>."""
        repo = repo_tag.rpartition(":")[0]
        return f"docker.io/{repo}@{self.digests[repo_tag]}"


def push_busybox(reg: LocalRegistry, digests: dict[str, str] | None = None) -> dict[str, str]:
    """busybox (as an index) and its config variants; returns/extends ``repo:tag -> top-level digest``."""
    out = digests if digests is not None else {}
    p = Pusher(reg.url, reg.username, reg.password)
    bb = busybox_image()
    p.image("library/busybox", bb.manifest.digest, bb)
    index = index_of(bb)
    for tag in BUSYBOX_TAGS:
        p.manifest("library/busybox", tag, index)
        out[f"library/busybox:{tag}"] = index.digest
    for repo, tag, img in (
        ("library/bbentry", "1", busybox_image(**ENTRY_CONFIG)),
        ("library/bbuser", "app", busybox_image(User="app")),
        ("library/bbuser", "1000", busybox_image(User="1000")),
    ):
        p.image(repo, tag, img)
        out[f"{repo}:{tag}"] = img.manifest.digest
    return out


def push_debian(reg: LocalRegistry, digests: dict[str, str]) -> None:
    """nginx (library/nginx:1.14, 1.14.2, latest) and redis (library/redis:7, latest)."""
    p = Pusher(reg.url, reg.username, reg.password)
    for repo, img, tags in (("library/nginx", nginx_image(), NGINX_TAGS), ("library/redis", redis_image(), REDIS_TAGS)):
        for b in img.blobs:
            _retry(lambda b=b, repo=repo: p.blob(repo, b))
        for tag in tags:
            p.manifest(repo, tag, img.manifest)
            digests[f"{repo}:{tag}"] = img.manifest.digest


def _retry(fn: Any, tries: int = 3) -> None:
    for i in range(tries):
        try:
            fn()
            return
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if i == tries - 1:
                raise
            time.sleep(1)


@contextlib.contextmanager
def serving_registry(debian: bool = True) -> Iterator[ImageRegistry]:
    """A fresh anonymous registry with busybox (and nginx and redis unless told not to) pushed; stopped and removed
    on exit."""
    with running_registry("anonymous") as reg:
        digests = push_busybox(reg)
        if debian:
            push_debian(reg, digests)
        yield ImageRegistry(reg, digests)


@pytest.fixture(scope="session")
def image_registry() -> Iterator[ImageRegistry]:
    """One registry per test session serving busybox, its variants and nginx as docker.io's ``library/*``."""
    with serving_registry() as served:
        yield served


def restart_registry(reg: LocalRegistry) -> None:
    """Start a stopped ``reg`` again on the same port and storage (its config.yml), and wait until it answers."""
    assert reg.proc is None or reg.proc.poll() is not None, "registry still running"
    serve(reg, append=True, timeout=15)


def image_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> str:
    """A pod manifest that runs on its images: never the node-filesystem annotation (tests/harness.py pod_yaml may
    add it by default for the tests that run node programs)."""
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers, **spec}}
    return json.dumps(doc)


def write_registries(path: Path, registry: ImageRegistry | LocalRegistry) -> Path:
    """k3s registries.yaml mirroring docker.io to ``registry`` (root-owned, 0600: it may hold credentials)."""
    host = registry.host
    text = f'mirrors:\n  docker.io:\n    endpoint: ["http://{host}"]\n'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    return path


@contextlib.contextmanager
def image_daemon(
    run_id: str, registry: ImageRegistry | LocalRegistry, tmp: Path, prefix: str = "img"
) -> Iterator[DaemonHarness]:
    """A daemon (tests/harness.py running_daemon: reset and leftovers checked) pulling docker.io from ``registry``."""
    regs = write_registries(tmp / "registries.yaml", registry)
    with running_daemon(run_id, prefix=prefix, extra_flags=["--registries", str(regs)]) as harness:
        yield harness
