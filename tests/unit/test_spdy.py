"""SPDY/3.1 framing (minikubelet.api.spdy) and the port-forward session over it, with a fake pod (no root)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from minikubelet.api import spdy
from minikubelet.api.portforward import PortForwardSession, request_id, stream_error
from minikubelet.errors import ContainerStartError

# ----- frames --------------------------------------------------------------------------------------------------


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\0\0\0\x07options\0\0\0\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2  # the dictionary id in every SPDY/3 zlib header


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (spdy.data_frame(3, b"abc"), b"\0\0\0\x03\0\0\0\x03abc"),
        (spdy.data_frame(1, fin=True), b"\0\0\0\x01\x01\0\0\0"),
        (spdy.rst_stream(5, spdy.RstStatus.CANCEL), b"\x80\x03\0\x03\0\0\0\x08\0\0\0\x05\0\0\0\x05"),
        (spdy.ping(7), b"\x80\x03\0\x06\0\0\0\x04\0\0\0\x07"),
        (spdy.goaway(9), b"\x80\x03\0\x07\0\0\0\x08\0\0\0\x09\0\0\0\0"),
        (spdy.syn_reply(1, b"HB"), b"\x80\x03\0\x02\0\0\0\x06\0\0\0\x01HB"),
        (spdy.syn_reply(1, b"", fin=True), b"\x80\x03\0\x02\x01\0\0\x04\0\0\0\x01"),
    ],
    ids=["data", "data-fin", "rst", "ping", "goaway", "syn-reply", "syn-reply-fin"],
)
def test_encode(frame: bytes, expected: bytes) -> None:
    assert frame == expected


def test_reader_handles_any_split_and_several_frames() -> None:
    wire = spdy.syn_stream(1, b"xyz", priority=2) + spdy.data_frame(1, b"hello", fin=True) + spdy.ping(3)
    reader = spdy.FrameReader()
    frames: list[spdy.Frame] = []
    for i in range(len(wire)):  # one byte at a time, as kubectl's unbuffered framer writes its fields
        reader.feed(wire[i : i + 1])
        frames.extend(reader.frames())
    assert reader.buffered == 0
    syn, data, ping = frames
    assert isinstance(syn, spdy.ControlFrame) and syn.type == spdy.FrameType.SYN_STREAM
    parsed = spdy.parse_syn_stream(syn)
    assert (parsed.stream_id, parsed.associated_id, parsed.priority, parsed.header_block) == (1, 0, 2, b"xyz")
    assert data == spdy.DataFrame(1, spdy.FLAG_FIN, b"hello") and data.fin
    assert isinstance(ping, spdy.ControlFrame) and spdy.parse_ping(ping) == 3


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (struct.pack(">HHI", 0x8002, 1, 0), "unsupported SPDY version 2"),
        (struct.pack(">II", 0, 0), "data frame on stream 0"),
        (struct.pack(">II", 1, 0x00FFFFFF), "exceeds the limit"),
    ],
    ids=["spdy2", "stream0", "too-long"],
)
def test_reader_rejects(wire: bytes, message: str) -> None:
    reader = spdy.FrameReader(max_length=1 << 20)
    reader.feed(wire)
    with pytest.raises(spdy.SpdyError, match=message):
        list(reader.frames())


def test_short_control_frames_are_errors() -> None:
    with pytest.raises(spdy.SpdyError):
        spdy.parse_syn_stream(spdy.ControlFrame(spdy.FrameType.SYN_STREAM, 0, b"\0\0\0\x01"))
    with pytest.raises(spdy.SpdyError):
        spdy.parse_rst_stream(spdy.ControlFrame(spdy.FrameType.RST_STREAM, 0, b"\0\0\0\x01"))


def test_header_blocks_share_one_zlib_stream_per_direction() -> None:
    out, inp = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    blocks = [out.compress({"streamType": ["error"], "port": ["8080"], "requestID": [str(i)]}) for i in range(3)]
    assert len(blocks[1]) < len(blocks[0])  # the later blocks refer back to the earlier ones
    for i, block in enumerate(blocks):
        assert inp.decompress(block) == {"streamtype": ["error"], "port": ["8080"], "requestid": [str(i)]}
    with pytest.raises(spdy.SpdyError):  # a block out of order does not decompress
        spdy.HeaderDecompressor().decompress(blocks[1])


def test_header_block_encoding() -> None:
    block = spdy.encode_headers({"A": ["1", "2"], "b": []})
    assert block == b"\0\0\0\x02\0\0\0\x01a\0\0\0\x031\x002\0\0\0\x01b\0\0\0\0"
    assert spdy.decode_headers(block) == {"a": ["1", "2"], "b": [""]}
    for bad in (block[:-1], block + b"x", b"\0\0"):
        with pytest.raises(spdy.SpdyError):
            spdy.decode_headers(bad)


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"streamtype": ["data"], "port": ["80"]}, None),
        ({"streamtype": ["data"]}, '"port" header is required'),
        ({"streamtype": ["data"], "port": ["http"]}, 'unable to parse "http" as a port'),
        ({"streamtype": ["data"], "port": ["0"]}, 'port "0" must be > 0'),
        ({"port": ["80"]}, '"streamType" header is required'),
        ({"streamtype": ["stdin"], "port": ["80"]}, 'invalid stream type "stdin"'),
    ],
    ids=["ok", "no-port", "bad-port", "port-0", "no-type", "bad-type"],
)
def test_stream_headers_checked_as_the_kubelet(headers: spdy.Headers, problem: str | None) -> None:
    assert stream_error(headers) == problem


def test_request_id_falls_back_to_stream_ids() -> None:
    assert request_id({"streamtype": ["data"], "requestid": ["7"]}, 9) == "7"
    assert request_id({"streamtype": ["error"]}, 5) == "5"
    assert request_id({"streamtype": ["data"]}, 7) == "5"


# ----- the session, with a fake pod ----------------------------------------------------------------------------


@dataclass
class FakePod:
    key: str = "default/web"
    uid: str = "uid-1"
    name: str = "web"


@dataclass
class FakeRuntime:
    """Port 8080 answers each line in upper case (through a socketpair); any other port is refused."""

    servers: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect_in_pod(self, uid: str, sandbox: Any, port: int, timeout: float) -> socket.socket:
        if port != 8080:
            raise ContainerStartError(f"failed to connect to localhost:{port}: connection refused")
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        self.servers.append(asyncio.create_task(self._serve(theirs)))
        return ours

    @staticmethod
    async def _serve(conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with conn:
            while data := await loop.sock_recv(conn, 1024):
                await loop.sock_sendall(conn, data.upper())


@dataclass
class FakeState:
    sandbox: object = field(default_factory=object)


@dataclass
class FakeWorker:
    pod: FakePod = field(default_factory=FakePod)
    state: FakeState = field(default_factory=FakeState)
    runtime: FakeRuntime = field(default_factory=FakeRuntime)


class Client:
    """kubectl's side: frames to the session, and the frames it sent back, decoded."""

    def __init__(self) -> None:
        self.worker = FakeWorker()
        self.session = PortForwardSession(self._receive, self.worker)  # type: ignore[arg-type]
        self.reader = spdy.FrameReader()
        self.frames: list[spdy.Frame] = []
        self.deflate = spdy.HeaderCompressor()

    async def _receive(self, data: bytes) -> None:
        self.reader.feed(data)
        self.frames.extend(self.reader.frames())

    async def open(self, stream_id: int, kind: str, port: int, rid: int) -> None:
        headers = {"streamType": [kind], "port": [str(port)], "requestID": [str(rid)]}
        await self.session.feed(spdy.syn_stream(stream_id, self.deflate.compress(headers)))

    def data(self, stream_id: int) -> bytes:
        return b"".join(f.data for f in self.frames if isinstance(f, spdy.DataFrame) and f.stream_id == stream_id)

    def fin(self, stream_id: int) -> bool:
        return any(isinstance(f, spdy.DataFrame) and f.stream_id == stream_id and f.fin for f in self.frames)

    def control(self, type_: int) -> list[spdy.ControlFrame]:
        return [f for f in self.frames if isinstance(f, spdy.ControlFrame) and f.type == type_]

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not check():
                await asyncio.sleep(0.01)


async def test_session_error_then_forward_then_ping() -> None:
    c = Client()
    try:
        await c.open(1, "error", 9999, 0)
        await c.session.feed(spdy.data_frame(1, fin=True))  # kubectl closes its side of the error stream at once
        await c.open(3, "data", 9999, 0)
        await c.until(lambda: c.fin(1) and c.fin(3))
        replies = [struct.unpack_from(">I", f.payload)[0] for f in c.control(spdy.FrameType.SYN_REPLY)]
        assert replies == [1, 3]
        assert (
            c.data(1) == b"error forwarding port 9999 to pod uid-1, uid : failed to connect to localhost:9999: "
            b"connection refused"
        )
        assert c.data(3) == b""
        # the session goes on: the next connection on the same tunnel works
        await c.open(5, "error", 8080, 1)
        await c.open(7, "data", 8080, 1)
        await c.session.feed(spdy.data_frame(7, b"hello\n"))
        await c.until(lambda: c.data(7) == b"HELLO\n")
        await c.session.feed(spdy.data_frame(7, fin=True))  # kubectl's side ends: half-close, the pod closes
        await c.until(lambda: c.fin(7) and c.fin(5))
        assert c.data(5) == b""
        await c.session.feed(spdy.ping(1))
        await c.until(lambda: [spdy.parse_ping(f) for f in c.control(spdy.FrameType.PING)] == [1])
        assert not c.session.streams and not c.session.pairs
    finally:
        await c.session.close()
        await asyncio.gather(*c.worker.runtime.servers, return_exceptions=True)


async def test_session_reset_and_bad_streams() -> None:
    c = Client()
    try:
        await c.open(1, "error", 8080, 0)
        await c.open(3, "data", 8080, 0)
        await c.session.feed(spdy.data_frame(3, b"abc"))
        await c.until(lambda: c.data(3) == b"ABC")
        await c.session.feed(spdy.rst_stream(3, spdy.RstStatus.CANCEL))  # kubectl's dataStream.Reset()
        await c.until(lambda: c.fin(1))
        assert not c.fin(3)  # nothing more on a reset stream
        await c.session.feed(spdy.syn_stream(5, c.deflate.compress({"streamType": ["data"]})))
        await c.session.feed(spdy.syn_stream(5, c.deflate.compress({"streamType": ["data"], "port": ["1"]})))
        rsts = [spdy.parse_rst_stream(f) for f in c.control(spdy.FrameType.RST_STREAM)]
        assert rsts == [(5, spdy.RstStatus.CANCEL), (5, spdy.RstStatus.PROTOCOL_ERROR)]  # bad headers; id reused
        await c.session.feed(spdy.goaway(0))
        await c.open(7, "error", 8080, 9)
        assert 7 not in c.session.streams  # no new streams after GOAWAY
        with pytest.raises(spdy.SpdyError):
            await c.session.feed(struct.pack(">HHI", 0x8002, 1, 0))
    finally:
        await c.session.close()
        await asyncio.gather(*c.worker.runtime.servers, return_exceptions=True)


async def test_session_close_stops_forwarding() -> None:
    c = Client()
    await c.open(1, "error", 8080, 0)
    await c.open(3, "data", 8080, 0)
    await c.until(lambda: bool(c.session._tasks))
    task = next(iter(c.session._tasks))
    await c.session.close()  # the websocket went away: the pod connection closes, the fake server sees EOF
    assert task.done()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.gather(*c.worker.runtime.servers)
    assert all(t.done() for t in c.worker.runtime.servers)
