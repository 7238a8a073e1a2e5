"""SPDY/3.1 framing as kubectl's client (moby/spdystream, k8s.io/apimachinery httpstream/spdy) speaks it. Pure logic.

Frames (spdystream spdy/types.go, read.go, write.go): a control frame is ``1 | version(15) | type(16)`` then
``flags(8) | length(24)`` and the payload; a data frame is ``0 | stream id(31)`` then ``flags(8) | length(24)``
and the data. Name/value header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are ``count(32)`` then per header
``len(32) name len(32) value`` (several values joined by NUL), compressed with one zlib stream per direction that
starts from the SPDY/3 dictionary and is sync-flushed after every block. spdystream implements no flow control:
WINDOW_UPDATE and SETTINGS are read and ignored, so this module never needs to send them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

VERSION = 3
FLAG_FIN = 0x01
MAX_LENGTH = (1 << 24) - 1  # 24-bit length field

# The SPDY/3 header dictionary (spec draft 3, §2.6.10.1): length-prefixed words, then a run of raw text.
_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age "
    "allow authorization cache-control connection content-base content-encoding content-language content-length "
    "content-location content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()

Headers = dict[str, list[str]]


class FrameType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6


class SpdyError(ValueError):
    """The peer sent something that is not SPDY/3: the connection cannot go on."""


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    flags: int
    data: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class ControlFrame:
    type: int
    flags: int
    payload: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


Frame = DataFrame | ControlFrame


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    associated_id: int
    priority: int
    header_block: bytes  # still compressed: decompress in arrival order (one zlib stream per direction)


# ----- encoding ------------------------------------------------------------------------------------------------


def control_frame(type_: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"control frame payload of {len(payload)} bytes exceeds {MAX_LENGTH}")
    return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes = b"", fin: bool = False) -> bytes:
    if not 0 < stream_id < 1 << 31:
        raise ValueError(f"stream id {stream_id} is out of range")
    if len(data) > MAX_LENGTH:
        raise ValueError(f"data frame of {len(data)} bytes exceeds {MAX_LENGTH}")
    return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def syn_reply(stream_id: int, header_block: bytes, fin: bool = False) -> bytes:
    return control_frame(FrameType.SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + header_block)


def syn_stream(stream_id: int, header_block: bytes, fin: bool = False, priority: int = 0) -> bytes:
    """A SYN_STREAM (what kubectl sends; used by the tests)."""
    payload = struct.pack(">IIBB", stream_id, 0, (priority & 7) << 5, 0) + header_block
    return control_frame(FrameType.SYN_STREAM, FLAG_FIN if fin else 0, payload)


def rst_stream(stream_id: int, status: int) -> bytes:
    return control_frame(FrameType.RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return control_frame(FrameType.PING, 0, struct.pack(">I", ping_id))


def goaway(last_good_stream_id: int, status: int = 0) -> bytes:
    return control_frame(FrameType.GOAWAY, 0, struct.pack(">II", last_good_stream_id, status))


def encode_headers(headers: Headers) -> bytes:
    """The uncompressed name/value block (names lowercased, several values joined by NUL)."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        raw_name, raw_value = name.lower().encode(), "\0".join(values).encode()
        out.append(struct.pack(">I", len(raw_name)) + raw_name + struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(out)


def _chunk(block: bytes, pos: int) -> tuple[bytes, int]:
    """A length-prefixed string of a header block at ``pos`` and the position after it."""
    if pos + 4 > len(block):
        raise SpdyError("header block is truncated")
    (n,) = struct.unpack_from(">I", block, pos)
    if pos + 4 + n > len(block):
        raise SpdyError("header block is truncated")
    return block[pos + 4:pos + 4 + n], pos + 4 + n


def decode_headers(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; SpdyError if it is malformed."""
    if len(block) < 4:
        raise SpdyError("header block is truncated")
    (count,), pos = struct.unpack_from(">I", block), 4
    headers: Headers = {}
    try:
        for _ in range(count):
            name, pos = _chunk(block, pos)
            value, pos = _chunk(block, pos)
            headers.setdefault(name.decode().lower(), []).extend(value.decode().split("\0"))
    except UnicodeDecodeError as e:
        raise SpdyError(f"malformed header block: {e}") from e
    if pos != len(block):
        raise SpdyError(f"header block has {len(block) - pos} trailing bytes")
    return headers


class HeaderCompressor:
    """Our direction's zlib stream (one per connection, in frame order)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_headers(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The peer's zlib stream (one per connection, in frame order)."""

    MAX_BLOCK = 1 << 20

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, self.MAX_BLOCK)
        except zlib.error as e:
            raise SpdyError(f"cannot decompress a header block: {e}") from e
        if self._z.unconsumed_tail:
            raise SpdyError(f"a header block is larger than {self.MAX_BLOCK} bytes")
        return decode_headers(block)


# ----- decoding ------------------------------------------------------------------------------------------------


class FrameReader:
    """Incremental parser: ``feed()`` bytes as they arrive (any split), iterate ``frames()`` for whole frames."""

    def __init__(self, max_length: int = MAX_LENGTH) -> None:
        self._buf = bytearray()
        self._max = max_length

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> Iterator[Frame]:
        while len(self._buf) >= 8:
            first, second = struct.unpack_from(">II", self._buf)
            length = second & 0xFFFFFF
            if length > self._max:
                raise SpdyError(f"frame of {length} bytes exceeds the limit of {self._max}")
            if len(self._buf) < 8 + length:
                return
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if first & 0x80000000:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise SpdyError(f"unsupported SPDY version {version}")
                yield ControlFrame(first & 0xFFFF, second >> 24, payload)
            else:
                if first == 0:
                    raise SpdyError("data frame on stream 0")
                yield DataFrame(first, second >> 24, payload)

    @property
    def buffered(self) -> int:
        return len(self._buf)


def _words(payload: bytes, count: int, what: str) -> tuple[int, ...]:
    if len(payload) < 4 * count:
        raise SpdyError(f"{what} frame is too short ({len(payload)} bytes)")
    return struct.unpack_from(f">{count}I", payload)


def parse_syn_stream(frame: ControlFrame) -> SynStream:
    if len(frame.payload) < 10:
        raise SpdyError(f"SYN_STREAM frame is too short ({len(frame.payload)} bytes)")
    stream_id, associated, priority = struct.unpack_from(">IIB", frame.payload)
    stream_id &= 0x7FFFFFFF
    if stream_id == 0:
        raise SpdyError("SYN_STREAM for stream 0")
    return SynStream(stream_id, associated & 0x7FFFFFFF, priority >> 5, frame.payload[10:])


def parse_rst_stream(frame: ControlFrame) -> tuple[int, int]:
    """(stream id, status)."""
    stream_id, status = _words(frame.payload, 2, "RST_STREAM")
    return stream_id & 0x7FFFFFFF, status


def parse_ping(frame: ControlFrame) -> int:
    return _words(frame.payload, 1, "PING")[0]


def parse_goaway(frame: ControlFrame) -> tuple[int, int]:
    """(last good stream id, status)."""
    last, status = _words(frame.payload, 2, "GOAWAY") if len(frame.payload) >= 8 else (
        *_words(frame.payload, 1, "GOAWAY"), 0)
    return last & 0x7FFFFFFF, status
