"""Unpack one image layer into an empty directory, chrooted there, as a fresh helper process (stdlib only).

``python -c '...unpack import main; main([...])' BLOB TARGET DIFF_ID MAX_BYTES`` (see images/layers.py). The
process opens the blob, starts ``zstd -dc`` when the blob is zstd, then ``chroot``s into TARGET, so no entry can
land outside it whatever the archive says. On top of that every entry is checked and a bad one refuses the
whole layer, naming the entry: absolute names, ``..``, a parent that is a symlink (a write through a symlink),
hard links whose target is outside or absent, and device nodes other than the overlay whiteout (char 0:0), as
runc refuses mknod outside a user namespace. setuid/setgid bits are kept: the daemon is root, as containerd's.
Mode, owner (numeric), xattrs (but ``trusted.overlay.*``) and mtimes are kept. ``.wh.NAME`` becomes an overlay
whiteout (char 0:0), ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its directory. The uncompressed
stream is bounded by MAX_BYTES and its sha256 must be DIFF_ID. Prints one JSON line: ``{"ok": true, "size": N}``
or ``{"ok": false, "error": "..."}`` (exit 1). Never deletes anything outside TARGET; the caller removes TARGET.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import zlib
from typing import IO, Any, cast

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20


class Refused(Exception):
    """The layer is refused; the message names the entry and why."""


class Bounded:
    """A read-only stream over the decompressed layer that hashes every byte and stops past ``limit``."""

    def __init__(self, raw: IO[bytes], decompress: Any, limit: int) -> None:
        self.raw = raw
        self.decompress = decompress  # a zlib decompressobj, or None when ``raw`` is already uncompressed
        self.limit = limit
        self.count = 0
        self.sha = hashlib.sha256()
        self.buf = b""
        self.pos = 0
        self.eof = False

    def _next(self) -> bytes:
        """The next piece of uncompressed data (at most a few MB), b"" at the end."""
        if self.decompress is None:
            return self.raw.read(CHUNK)
        data: bytes
        while True:
            d = self.decompress
            if d.unconsumed_tail:
                data = d.decompress(d.unconsumed_tail, CHUNK)
            elif d.eof:
                rest = d.unused_data or self.raw.read(CHUNK)
                if not rest:
                    return b""
                self.decompress = zlib.decompressobj(zlib.MAX_WBITS | 16)  # gzip allows concatenated members
                data = self.decompress.decompress(rest, CHUNK)
            else:
                chunk = self.raw.read(CHUNK)
                if not chunk:
                    raise Refused("the gzip stream of the layer is truncated")
                data = d.decompress(chunk, CHUNK)
            if data:
                return data

    def _fill(self, want: int) -> None:
        while len(self.buf) < want and not self.eof:
            data = self._next()
            if not data:
                self.eof = True
                return
            self.count += len(data)
            if self.count > self.limit:
                raise Refused(f"the layer uncompresses to more than {self.limit} bytes (the size limit: a "
                              "decompression bomb, or a layer larger than the store allows)")
            self.sha.update(data)
            self.buf += data

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (fewer is allowed: tarfile's stream reader loops)."""
        if self.pos >= len(self.buf):
            self.buf, self.pos = b"", 0
            self._fill(1)
        if n is None or n < 0:
            n = len(self.buf) - self.pos
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def open_layer(blob: str, limit: int) -> tuple[Bounded, subprocess.Popen[bytes] | None]:
    """Sniff the blob's compression by its magic (as containerd's DetectCompression) and open a bounded stream."""
    f = open(blob, "rb", buffering=0)  # noqa: SIM115 (kept open across the chroot)
    magic = os.pread(f.fileno(), 4, 0)
    if magic[:2] == b"\x1f\x8b":
        return Bounded(f, zlib.decompressobj(zlib.MAX_WBITS | 16), limit), None
    if magic == b"\x28\xb5\x2f\xfd":
        proc = subprocess.Popen(["zstd", "-dcq"], stdin=f, stdout=subprocess.PIPE)
        f.close()
        assert proc.stdout is not None
        return Bounded(proc.stdout, None, limit), proc
    return Bounded(f, None, limit), None


def clean_name(raw: str, what: str, entry: str) -> str:
    """The entry's path relative to the layer root, or Refused for absolute names and ``..``."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return "."
    if name.startswith("/"):
        raise Refused(f"entry {entry!r}: {what} {raw!r} is an absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise Refused(f"entry {entry!r}: {what} {raw!r} contains '..'")
    return "/".join(p for p in parts if p not in ("", "."))


def check_parents(name: str, entry: str, create: bool = True) -> None:
    """Create missing parent directories; refuse a parent that is a symlink or not a directory."""
    parts = name.split("/")[:-1]
    path = ""
    for p in parts:
        path = f"{path}/{p}" if path else p
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise Refused(f"entry {entry!r}: its parent {path!r} is a symlink (a write through a symlink)")
        if not stat.S_ISDIR(st.st_mode):
            raise Refused(f"entry {entry!r}: its parent {path!r} is not a directory")


def remove_existing(name: str, keep_dir: bool) -> None:
    try:
        st = os.lstat(name)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        import shutil

        shutil.rmtree(name)
    else:
        os.unlink(name)


def apply_meta(name: str, m: tarfile.TarInfo) -> None:
    os.lchown(name, m.uid, m.gid)
    if not m.issym():
        os.chmod(name, m.mode & 0o7777)
    for key, value in (m.pax_headers or {}).items():
        if not key.startswith("SCHILY.xattr."):
            continue
        attr = key[len("SCHILY.xattr."):]
        if attr.startswith("trusted.overlay."):
            continue  # overlay's own metadata (redirect, origin, opaque) comes only from whiteouts, never a layer
        try:
            os.setxattr(name, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
                raise  # a namespace the store's filesystem lacks is skipped, as Moby does


def extract(tf: tarfile.TarFile) -> None:
    dirs: list[tuple[str, float]] = []
    for m in tf:
        entry = m.name
        name = clean_name(m.name, "name", entry)
        if name == ".":
            if m.isdir():
                apply_meta(".", m)
                dirs.append((".", m.mtime))
            continue
        check_parents(name, entry)
        base = name.rsplit("/", 1)[-1]
        parent = name.rsplit("/", 1)[0] if "/" in name else "."
        if base == OPAQUE:
            os.setxattr(parent, "trusted.overlay.opaque", b"y")
            continue
        if base.startswith(WHITEOUT + WHITEOUT):
            continue  # other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content
        if base.startswith(WHITEOUT):
            if base[len(WHITEOUT):] in ("", ".", ".."):
                raise Refused(f"entry {entry!r}: a whiteout of {base[len(WHITEOUT):]!r} names no entry")
            target = f"{parent}/{base[len(WHITEOUT):]}" if parent != "." else base[len(WHITEOUT):]
            remove_existing(target, keep_dir=False)
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            continue
        if m.ischr() or m.isblk():
            if not (m.ischr() and m.devmajor == 0 and m.devminor == 0):
                raise Refused(f"entry {entry!r}: device node ({'char' if m.ischr() else 'block'} "
                              f"{m.devmajor}:{m.devminor}) refused, as runc refuses mknod outside a user namespace")
        remove_existing(name, keep_dir=m.isdir())
        if m.isdir():
            if not os.path.isdir(name):
                os.mkdir(name, 0o700)
            dirs.append((name, m.mtime))
        elif m.isreg():
            src = tf.extractfile(m)
            assert src is not None
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
        elif m.issym():
            os.symlink(m.linkname, name)  # any target: inside the chroot it cannot leave the layer
        elif m.islnk():
            target = clean_name(m.linkname, "hard link target", entry)
            if target == ".":
                raise Refused(f"entry {entry!r}: hard link target {m.linkname!r} is the layer root")
            try:
                check_parents(target, entry, create=False)
                tst = os.lstat(target)
            except (FileNotFoundError, Refused):
                raise Refused(f"entry {entry!r}: hard link target {m.linkname!r} is not an earlier entry of "
                              "this layer") from None
            if stat.S_ISDIR(tst.st_mode):
                raise Refused(f"entry {entry!r}: hard link target {m.linkname!r} is a directory")
            os.link(target, name, follow_symlinks=False)
            continue  # the link shares the target's inode and metadata
        elif m.isfifo():
            os.mkfifo(name, 0o600)
        elif m.ischr():
            os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        else:
            raise Refused(f"entry {entry!r}: unsupported tar entry type {m.type!r}")
        apply_meta(name, m)
        if not m.isdir():
            os.utime(name, (m.mtime, m.mtime), follow_symlinks=False)
    for name, mtime in reversed(dirs):
        os.utime(name, (mtime, mtime), follow_symlinks=False)


def syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGKILL): a killed daemon takes its unpack with it, so nothing writes into a tree after."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


def run(blob: str, target: str, diff_id: str, limit: int) -> int:
    die_with_parent()
    stream, proc = open_layer(blob, limit)
    os.chroot(target)
    os.chdir("/")
    os.umask(0)
    with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tf:
        extract(tf)
    stream.drain()
    if proc is not None and proc.wait() != 0:
        raise Refused(f"zstd could not decompress the layer (exit {proc.returncode})")
    got = "sha256:" + stream.sha.hexdigest()
    if got != diff_id:
        raise Refused(f"the uncompressed layer's digest {got} is not its diff_id {diff_id}")
    syncfs("/")
    return stream.count


def main(argv: list[str]) -> None:
    blob, target, diff_id, limit = argv[0], argv[1], argv[2], int(argv[3])
    try:
        size = run(blob, target, diff_id, limit)
    except Refused as e:
        print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        sys.exit(1)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as e:
        print(json.dumps({"ok": False, "error": f"the layer cannot be unpacked: {e}"}), flush=True)
        sys.exit(1)
    print(json.dumps({"ok": True, "size": size}), flush=True)
