"""v5.channel.k8s.io frames and status objects (exec), the pty resize, and reading a log's tail backwards (logs)."""

from __future__ import annotations

import io
import json
import os

import pytest

from minikubelet.api import exec as ex
from minikubelet.api.logs import tail_offset


def test_encode_and_decode_round_trip() -> None:
    for channel in (ex.STDIN, ex.STDOUT, ex.STDERR, ex.ERROR, ex.RESIZE, ex.CLOSE):
        frame = ex.encode_frame(channel, b"payload\x00\xff")
        assert frame[0] == channel
        assert ex.decode_frame(frame) == (channel, b"payload\x00\xff")


def test_close_of_stdin_is_ff_00() -> None:
    assert ex.decode_frame(b"\xff\x00") == (ex.CLOSE, bytes((ex.STDIN,)))
    assert ex.encode_frame(ex.CLOSE, bytes((ex.STDIN,))) == b"\xff\x00"


def test_empty_payload_and_bad_frames() -> None:
    assert ex.decode_frame(b"\x01") == (1, b"")
    with pytest.raises(ValueError, match="empty frame"):
        ex.decode_frame(b"")
    with pytest.raises(ValueError, match="out of range"):
        ex.encode_frame(256, b"")


def test_parse_resize() -> None:
    assert ex.parse_resize(b'{"Width":120,"Height":30}\n') == (120, 30)
    assert ex.parse_resize(b'{"Width":120}') is None
    assert ex.parse_resize(b"not json") is None
    assert ex.parse_resize(b'{"Width":-1,"Height":3}') is None
    assert ex.parse_resize(b'{"Width":70000,"Height":3}') is None
    assert ex.parse_resize(b"[1, 2]") is None


def test_status_frames_match_the_kubelet() -> None:
    assert ex.exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    assert ex.exit_status(["sh", "-c", "exit 3"], 3) == {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    err = ex.internal_error('exec: "nope": executable file not found in $PATH')
    assert err == {
        "metadata": {},
        "status": "Failure",
        "reason": "InternalError",
        "code": 500,
        "message": 'Internal error occurred: exec: "nope": executable file not found in $PATH',
    }
    frame = ex.status_frame(ex.success_status())
    assert frame[0] == ex.ERROR and json.loads(frame[1:]) == {"metadata": {}, "status": "Success"}


def test_set_winsize_on_a_pty() -> None:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    try:
        ex.set_winsize(master, 120, 30)
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8))
        assert (rows, cols) == (30, 120)
    finally:
        os.close(master)
        os.close(slave)


def test_read_nowait_on_a_pipe() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        assert ex.read_nowait(r) is None
        os.write(w, b"abc")
        assert ex.read_nowait(r) == b"abc"
        os.close(w)
        assert ex.read_nowait(r) == b""
    finally:
        os.close(r)


def _tail(data: bytes, n: int) -> bytes:
    f = io.BytesIO(data)
    f.seek(tail_offset(f, n, len(data)))
    return f.read()


@pytest.mark.parametrize(
    ("data", "n", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 5, b""),
        (b"\n\n\n", 2, b"\n\n"),
    ],
)
def test_tail_offset(data: bytes, n: int, expected: bytes) -> None:
    assert _tail(data, n) == expected


def test_tail_offset_spans_chunks_of_a_big_file() -> None:
    lines = [f"line {i} ".encode() + b"x" * 1000 + b"\n" for i in range(300)]  # ~300 KB, several 64 KiB chunks
    data = b"".join(lines)
    assert _tail(data, 100) == b"".join(lines[-100:])
    assert _tail(data, 300) == data
