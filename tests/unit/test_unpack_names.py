"""The unpack helper's pure parts: entry names and the bounded, hashing decompression stream."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib

import pytest

from minikubelet.nsexec.unpack import Bounded, Refused, clean_name


@pytest.mark.parametrize(("raw", "clean"), [("./etc/passwd", "etc/passwd"), ("etc/", "etc"), ("./", "."),
                                            ("a/./b", "a/b"), ("a//b", "a/b"), ("..a/b..", "..a/b..")])
def test_names_are_made_relative_to_the_layer_root(raw: str, clean: str) -> None:
    assert clean_name(raw, "name", raw) == clean


@pytest.mark.parametrize(("raw", "why"), [("/etc/passwd", "absolute"), ("../x", "'..'"), ("a/../../x", "'..'"),
                                          ("./a/..", "'..'")])
def test_escaping_names_are_refused_naming_the_entry(raw: str, why: str) -> None:
    with pytest.raises(Refused, match=why) as err:
        clean_name(raw, "name", raw)
    assert repr(raw) in str(err.value)


def test_concatenated_gzip_members_are_one_stream_and_hashed() -> None:
    data = gzip.compress(b"a" * 100_000) + gzip.compress(b"b" * 50_000)
    s = Bounded(io.BytesIO(data), zlib.decompressobj(zlib.MAX_WBITS | 16), 1 << 20)
    assert s.read(-1) == b"a" * 100_000 + b"b" * 50_000
    assert s.sha.hexdigest() == hashlib.sha256(b"a" * 100_000 + b"b" * 50_000).hexdigest()


def test_the_limit_stops_a_bomb_early() -> None:
    bomb = gzip.compress(bytes(50 << 20), compresslevel=1)
    s = Bounded(io.BytesIO(bomb), zlib.decompressobj(zlib.MAX_WBITS | 16), 4 << 20)
    with pytest.raises(Refused, match="more than 4194304 bytes"):
        s.drain()
    assert s.count <= (4 << 20) + (1 << 20)  # it stopped within one chunk of the limit


def test_a_truncated_gzip_stream_is_refused() -> None:
    data = gzip.compress(b"x" * 10_000)[:-12]
    with pytest.raises(Refused, match="truncated"):
        Bounded(io.BytesIO(data), zlib.decompressobj(zlib.MAX_WBITS | 16), 1 << 20).drain()
