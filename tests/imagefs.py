"""Test image roots and layer tarballs: hand-built layers, a busybox root, a Debian bookworm nginx root.

Every builder returns uncompressed layer tarballs as ``Layer(path, diff_id)`` (bottom first), which tests/oci.py
turns into images; ``compress`` makes the gzip/zstd blob of one. Built roots are cached in
``/var/tmp/minikubelet-test-cache/`` keyed by their inputs (versions), so only the first run pays. No pytest here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MK_TEST_CACHE", "/var/tmp/minikubelet-test-cache"))
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@dataclass(frozen=True)
class Layer:
    path: Path  # an uncompressed tar
    diff_id: str  # sha256:<hex> of that tar

    @staticmethod
    def of(path: Path) -> Layer:
        return Layer(path, sha256_file(path))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def compress(layer: Layer, out: Path, kind: str) -> str:
    """Write ``layer`` compressed as ``kind`` (gzip, zstd or none) to ``out``; returns the blob digest."""
    if kind == "gzip":
        with open(layer.path, "rb") as src, gzip.open(out, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
    elif kind == "zstd":
        subprocess.run(["zstd", "-q", "-f", "-1", str(layer.path), "-o", str(out)], check=True)
    else:
        shutil.copyfile(layer.path, out)
    return sha256_file(out)


class TarBuilder:
    """A layer written entry by entry, for hostile and whiteout layers that no real tool writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tf = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)

    def _add(self, name: str, type_: bytes, data: bytes = b"", mode: int = 0o644, **kw: object) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.mtime = int(kw.pop("mtime", 1_600_000_000))  # type: ignore[call-overload]
        for k, v in kw.items():
            setattr(ti, k, v)
        ti.size = len(data) if type_ == tarfile.REGTYPE else 0
        self.tf.addfile(ti, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)

    def dir(self, name: str, mode: int = 0o755, **kw: object) -> TarBuilder:
        self._add(name, tarfile.DIRTYPE, mode=mode, **kw)
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> TarBuilder:
        self._add(name, tarfile.REGTYPE, data, mode=mode, **kw)
        return self

    def symlink(self, name: str, target: str) -> TarBuilder:
        self._add(name, tarfile.SYMTYPE, mode=0o777, linkname=target)
        return self

    def hardlink(self, name: str, target: str) -> TarBuilder:
        self._add(name, tarfile.LNKTYPE, linkname=target)
        return self

    def chardev(self, name: str, major: int, minor: int) -> TarBuilder:
        self._add(name, tarfile.CHRTYPE, mode=0o666, devmajor=major, devminor=minor)
        return self

    def done(self) -> Layer:
        self.tf.close()
        return Layer.of(self.path)


def _tar_dir(root: Path, out: Path) -> Layer:
    """Tar ``root`` as an image layer: names ``./...``, sorted, numeric owners (the tree is built as root)."""
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(root, arcname=".", recursive=False)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = Path(dirpath) / name
                tf.add(p, arcname="./" + str(p.relative_to(root)), recursive=False)
    os.replace(tmp, out)
    return Layer.of(out)


def busybox_root() -> list[Layer]:
    """One layer: /bin/busybox (static) and a symlink per applet, /etc/passwd and /etc/group, /tmp."""
    version = subprocess.run([BUSYBOX], capture_output=True, text=True).stdout.splitlines()[0]
    key = hashlib.sha256((version + sha256_file(Path(BUSYBOX))).encode()).hexdigest()[:16]
    out = CACHE / f"busybox-{key}.tar"
    if out.exists():
        return [Layer.of(out)]
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "root"
        for d in ("bin", "etc", "tmp", "root"):
            (root / d).mkdir(parents=True)
        os.chmod(root / "tmp", 0o1777)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for a in applets:
            if a != "busybox":
                (root / "bin" / a).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        return [_tar_dir(root, out)]


def debian_root(package: str, name: str = "") -> Layer:
    """One layer: Debian bookworm with ``package`` (mmdebstrap ``--variant=essential`` from the machine's apt
    sources, docs excluded, no /dev nodes), cached in CACHE keyed by mmdebstrap's and the package's candidate
    versions (about 20-75 s cold)."""
    mm = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    cand = next((line.split()[-1] for line in policy.splitlines() if "Candidate:" in line), "unknown")
    key = hashlib.sha256(f"{mm} {package} {cand}".encode()).hexdigest()[:16]
    out = CACHE / f"{name or package}-bookworm-{key}.tar"
    if out.exists():
        return Layer.of(out)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".part{os.getpid()}.tar")
    excludes = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")]
    try:
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=essential", f"--include={package}", "--format=tar",
             "--skip=output/dev", *excludes, "bookworm", str(tmp)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return Layer.of(out)


def nginx_root() -> list[Layer]:
    """One layer: Debian bookworm with nginx-light, 116 MB (debian_root)."""
    return [debian_root("nginx-light", "nginx")]
