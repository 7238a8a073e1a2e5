"""The layer store for real, as root: chrooted unpack helper, hostile layers, overlay stacking, kills mid-unpack."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minikubelet.images.content import ImageConfig, ImageContent, LayerDesc
from minikubelet.images.layers import LayerError, LayerStore
from tests import imagefs
from tests.imagefs import Layer, TarBuilder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mknod, overlay)")


class Blobs:
    """Compressed blobs of test layers, by digest, as the content store would hold them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, Path] = {}

    def add(self, layer: Layer, kind: str = "gzip") -> LayerDesc:
        out = self.root / f"{uuid.uuid4().hex}.blob"
        digest = imagefs.compress(layer, out, kind)
        self.paths[digest] = out
        media = "application/vnd.oci.image.layer.v1.tar" + {"gzip": "+gzip", "zstd": "+zstd"}.get(kind, "")
        return LayerDesc(digest, media, out.stat().st_size, layer.diff_id)

    def path(self, digest: str) -> Path:
        return self.paths[digest]


# vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (as Debian's ping carries it)
CAP = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)
CAP_NET_RAW = CAP.decode("utf-8", "surrogateescape")


def image(*layers: LayerDesc) -> ImageContent:
    return ImageContent("docker.io/library/test:1", "sha256:" + "0" * 64, "", "sha256:" + "1" * 64, ImageConfig(),
                        tuple(layers))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[LayerStore, Blobs, Path]]:
    store = LayerStore(tmp_path / "layers")
    yield store, Blobs(tmp_path / "blobs"), tmp_path


def unpack(store: LayerStore, blobs: Blobs, *layers: LayerDesc) -> tuple[Path, ...]:
    return asyncio.run(store.ensure_layers(image(*layers), blobs.path))


def leftovers(store: LayerStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir()) if store.root.exists() else []


def hostile(tmp: Path, kind: str) -> tuple[Layer, str]:
    """A hostile layer of ``kind`` and the entry name its refusal must mention."""
    b = TarBuilder(tmp / f"{kind}.tar").dir("etc").file("etc/ok", b"fine")
    outside = tmp / "outside"
    if kind == "traversal":
        b.file(f"../../../../../..{outside}/traversal", b"x")
        return b.done(), "traversal"
    if kind == "absolute":
        b.file(f"{outside}/absolute", b"x")
        return b.done(), "absolute"
    if kind == "symlink-write":
        b.symlink("escape", str(outside)).file("escape/through", b"x")
        return b.done(), "escape/through"
    if kind == "symlink-dotdot-write":
        b.symlink("up", "../../../../../../..").file(f"up{outside}/through", b"x")
        return b.done(), "through"
    if kind == "hardlink-out":
        b.hardlink("passwd", "../../../../../../etc/passwd")
        return b.done(), "passwd"
    if kind == "hardlink-absolute":
        b.hardlink("shadow", "/etc/shadow")
        return b.done(), "shadow"
    if kind == "whiteout-dotdot":
        b.dir("etc/sub").file("etc/sub/.wh...")
        return b.done(), ".wh..."
    if kind == "device":
        b.chardev("mem", 1, 1)
        return b.done(), "mem"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink-write", "symlink-dotdot-write", "hardlink-out",
                                  "hardlink-absolute", "whiteout-dotdot", "device"])
def test_hostile_layers_are_refused_naming_the_entry_and_touch_nothing(env: tuple[LayerStore, Blobs, Path],
                                                                       kind: str) -> None:
    store, blobs, tmp = env
    (tmp / "outside").mkdir()
    before = set(os.listdir("/etc")), os.stat("/etc/passwd").st_nlink
    layer, entry = hostile(tmp, kind)
    with pytest.raises(LayerError) as err:
        unpack(store, blobs, blobs.add(layer))
    assert entry in str(err.value)
    assert os.listdir(tmp / "outside") == []
    assert (set(os.listdir("/etc")), os.stat("/etc/passwd").st_nlink) == before
    assert leftovers(store) == []  # the temp dir is gone and no chain ID looks present
    assert store.list() == []


def test_a_decompression_bomb_stops_at_the_size_limit(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers", max_layer_bytes=8 << 20)
    blobs = Blobs(tmp_path / "blobs")
    big = TarBuilder(tmp_path / "bomb.tar").file("zeros", bytes(64 << 20)).done()
    desc = blobs.add(big, "gzip")
    assert desc.size < 1 << 20  # a small blob...
    t0 = time.monotonic()
    with pytest.raises(LayerError, match="more than 8388608 bytes"):
        unpack(store, blobs, desc)
    assert time.monotonic() - t0 < 20
    assert leftovers(store) == []


def test_a_layer_whose_content_is_not_its_diff_id_is_refused(env: tuple[LayerStore, Blobs, Path]) -> None:
    store, blobs, tmp = env
    layer = TarBuilder(tmp / "a.tar").file("a", b"a").done()
    desc = blobs.add(layer)
    wrong = LayerDesc(desc.digest, desc.media_type, desc.size, "sha256:" + "2" * 64)
    with pytest.raises(LayerError, match="is not its diff_id"):
        unpack(store, blobs, wrong)
    assert leftovers(store) == []


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_metadata_hard_links_and_absolute_symlinks_are_kept(env: tuple[LayerStore, Blobs, Path], kind: str) -> None:
    store, blobs, tmp = env
    b = TarBuilder(tmp / "meta.tar").dir("usr").dir("usr/bin", mtime=1_500_000_000)
    b.file("usr/bin/su", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0)
    b.file("usr/bin/tool", b"tool", mode=0o750, uid=1234, gid=5678, mtime=1_400_000_000,
           pax_headers={"SCHILY.xattr.user.origin": "test", "SCHILY.xattr.security.capability": CAP_NET_RAW,
                        "SCHILY.xattr.trusted.overlay.redirect": "/etc"})
    b.hardlink("usr/bin/tool2", "usr/bin/tool").dir("etc").symlink("etc/alt", "/usr/bin/tool")
    b.symlink("etc/rel", "../usr/bin/su")
    b.tf.addfile(__import__("tarfile").TarInfo("pipe"))  # a plain regular empty file stays fine
    (lower,) = unpack(store, blobs, blobs.add(b.done(), kind))
    su = os.stat(lower / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    tool = os.stat(lower / "usr/bin/tool")
    assert (stat.S_IMODE(tool.st_mode), tool.st_uid, tool.st_gid, tool.st_mtime) == (0o750, 1234, 5678, 1_400_000_000)
    assert os.stat(lower / "usr/bin/tool2").st_ino == tool.st_ino and tool.st_nlink == 2
    assert os.getxattr(lower / "usr/bin/tool", "user.origin") == b"test"
    assert os.getxattr(lower / "usr/bin/tool", "security.capability") == CAP
    assert "trusted.overlay.redirect" not in os.listxattr(lower / "usr/bin/tool")  # a layer never sets overlay's own
    assert os.readlink(lower / "etc/alt") == "/usr/bin/tool"
    assert os.readlink(lower / "etc/rel") == "../usr/bin/su"
    assert os.stat(lower / "usr/bin").st_mtime == 1_500_000_000
    [info] = store.list()
    assert info.path == lower and info.size == os.path.getsize(tmp / "meta.tar")


def test_whiteouts_and_opaque_dirs_stack_as_overlay_lowerdirs(env: tuple[LayerStore, Blobs, Path]) -> None:
    store, blobs, tmp = env
    bottom = (TarBuilder(tmp / "bottom.tar").dir("a").file("a/keep", b"k").file("a/gone", b"g").dir("o")
              .file("o/old", b"o").dir("o/sub").file("top", b"t").file("removed", b"r").done())
    upper = (TarBuilder(tmp / "upper.tar").dir("a").file("a/.wh.gone").dir("o").file("o/.wh..wh..opq")
             .file("o/new", b"n").file(".wh.removed").done())
    lowers = unpack(store, blobs, blobs.add(bottom), blobs.add(upper, "zstd"))
    assert lowers == (store.path(image(blobs.add(bottom), blobs.add(upper)).chain_ids()[1]),
                      store.path(bottom.diff_id))
    wh = os.lstat(lowers[0] / "a" / "gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(lowers[0] / "o", "trusted.overlay.opaque") == b"y"
    mnt = tmp / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowers[0]}:{lowers[1]}", str(mnt)],
                   check=True)
    try:
        assert sorted(os.listdir(mnt)) == ["a", "o", "top"]
        assert os.listdir(mnt / "a") == ["keep"]
        assert os.listdir(mnt / "o") == ["new"]
        assert (mnt / "top").read_bytes() == b"t"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_concurrent_callers_share_one_unpack_and_layers_are_shared(env: tuple[LayerStore, Blobs, Path]) -> None:
    store, blobs, tmp = env
    desc = blobs.add(TarBuilder(tmp / "s.tar").file("s", b"s").done())
    runs = []
    original = store._run_helper

    async def counting(*a: object) -> int:
        runs.append(a)
        return await original(*a)  # type: ignore[arg-type]

    store._run_helper = counting  # type: ignore[method-assign]

    async def both() -> list[tuple[Path, ...]]:
        return await asyncio.gather(store.ensure_layers(image(desc), blobs.path),
                                    store.ensure_layers(image(desc), blobs.path))

    a, b = asyncio.run(both())
    assert a == b and len(runs) == 1
    assert unpack(store, blobs, desc) == a and len(runs) == 1
    [info] = store.list()
    assert asyncio.run(store.remove(info.chain_id)) is True
    assert store.list() == [] and leftovers(store) == []


_KILLED = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from minikubelet.images.content import ImageConfig, ImageContent, LayerDesc
from minikubelet.images.layers import LayerStore
d = LayerDesc(sys.argv[3], "application/vnd.oci.image.layer.v1.tar", 0, sys.argv[4])
c = ImageContent("x", "", "", "", ImageConfig(), (d,))
asyncio.run(LayerStore(Path(sys.argv[2])).ensure_layers(c, lambda _d: Path(sys.argv[5])))
"""


def helpers(root: Path) -> list[int]:
    """Pids of unpack helpers working under ``root``."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (p / "cmdline").read_bytes()
                if str(root).encode() in cmdline and b"nsexec.unpack" in cmdline:
                    out.append(int(p.name))
    return out


def test_a_daemon_killed_mid_unpack_leaves_no_complete_looking_layer(env: tuple[LayerStore, Blobs, Path]) -> None:
    store, blobs, tmp = env
    b = TarBuilder(tmp / "many.tar")
    for i in range(4000):
        b.file(f"f{i:05d}", os.urandom(16 << 10))
    layer = b.done()
    desc = blobs.add(layer, "none")
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, repo, str(store.root), desc.digest, layer.diff_id,
                             str(blobs.path(desc.digest))], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tmps = [p for p in store.root.glob(".tmp-*/fs")] if store.root.exists() else []
            if tmps and len(os.listdir(tmps[0])) > 50:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the unpack never started")
        os.kill(proc.pid, signal.SIGKILL)  # the daemon alone, as the OOM killer or an operator would
        proc.wait()
        deadline = time.monotonic() + 10  # its unpack helper dies with it (PDEATHSIG), so the tree stops changing
        while helpers(store.root) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert helpers(store.root) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not store.has(desc.diff_id) and store.list() == []
    assert all(name.startswith(".tmp-") for name in leftovers(store))
    (lower,) = unpack(store, blobs, desc)  # a new store start removes the leftovers and unpacks anew
    assert len(os.listdir(lower)) == 4000 and leftovers(store) == [desc.diff_id.split(":")[1]]
    assert json.loads((lower.parent / "layer.json").read_text())["diff_id"] == desc.diff_id


def test_the_busybox_root_unpacks_and_runs_chrooted(env: tuple[LayerStore, Blobs, Path]) -> None:
    store, blobs, _ = env
    layers = imagefs.busybox_root()
    (lower,) = unpack(store, blobs, *(blobs.add(x) for x in layers))
    out = subprocess.run(["chroot", str(lower), "/bin/sh", "-c", "echo hello from $(basename $(readlink /bin/ls))"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "hello from busybox\n"


def test_bad_gzip_is_a_clear_error(env: tuple[LayerStore, Blobs, Path]) -> None:
    store, blobs, tmp = env
    layer = TarBuilder(tmp / "t.tar").file("a", os.urandom(100_000)).done()
    desc = blobs.add(layer)
    data = blobs.path(desc.digest).read_bytes()
    blobs.path(desc.digest).write_bytes(data[: len(data) // 2])
    with pytest.raises(LayerError, match="truncated|cannot be unpacked"):
        unpack(store, blobs, desc)
    assert leftovers(store) == []
    assert gzip  # gzip blobs are made by imagefs.compress


def test_a_debian_nginx_root_unpacks_whole_and_runs(env: tuple[LayerStore, Blobs, Path]) -> None:
    """The realistic image (mmdebstrap, cached): absolute symlinks, setuid binaries and hard links all come through."""
    store, blobs, _ = env
    if not imagefs.shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap is not installed (scripts/_setup.sh installs it)")
    layers = imagefs.nginx_root()
    descs = [blobs.add(x, "gzip") for x in layers]
    t0 = time.monotonic()
    (lower,) = unpack(store, blobs, *descs)
    print(f"unpacked nginx root size={layers[0].path.stat().st_size} seconds={time.monotonic() - t0:.2f}")
    assert os.readlink(lower / "etc/alternatives/awk").startswith("/usr/bin/")
    su = os.stat(lower / "usr/bin/su")
    assert su.st_mode & stat.S_ISUID
    out = subprocess.run(["chroot", str(lower), "/usr/sbin/nginx", "-v"], capture_output=True, text=True, check=True)
    assert "nginx version" in out.stderr
