"""The per-container stdin/terminal relay (the role conmon plays for podman); stdlib only, forked by the zygote.

``op_relay`` (run in the zygote's helper child) makes a pty (``tty``) or pipes (stdin without tty) and a listening
unix socket, forks the relay (double fork, new session, no PDEATHSIG: it outlives the daemon and the zygote, and
keeps ``MINIKUBELET_OWNER`` in its environ like a pause), and hands the container's side back to the daemon
(SCM_RIGHTS), which passes it on in the ``spawn`` request. The relay copies the container's output into its log
file (plain bytes, as every log file) and to every attached client, writes clients' stdin to the container, and
exits when the container's output side is closed (the container exited), after draining.

Frames on the socket (both ways): 1 byte type, 4 bytes big-endian length, payload. Types: 0 stdin (to the relay),
1 stdout, 2 stderr (from it), 4 resize (payload: width, height as two big-endian u16), 255 close stdin (only
with stdinOnce, as the first attacher's disconnect; without it the container's stdin stays open for the next).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import socket
import struct
import termios
from typing import Any, NoReturn

STDIN, STDOUT, STDERR, RESIZE, CLOSE = 0, 1, 2, 4, 255
HEADER = struct.Struct(">BI")


def frame(kind: int, data: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(data)) + data


def op_relay(req: dict[str, Any]) -> dict[str, Any]:
    """Create the relay; returns ``{"pid": relay pid, "_fds": the container's side}``."""
    tty = bool(req.get("tty"))
    path = req["socket_path"]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(16)
    log_fd = os.open(req["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    if tty:
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        os.set_inheritable(slave, False)
        ours: dict[str, Any] = {"stdin": master, "outputs": [(master, STDOUT)], "master": master}
        theirs = [slave]
    else:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        ours = {"stdin": in_w, "outputs": [(out_r, STDOUT), (err_r, STDERR)], "master": None}
        theirs = [in_r, out_w, err_w]
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:
        try:
            if os.fork() == 0:
                os.close(ready_r)
                for fd in theirs:
                    os.close(fd)
                _relay_main(req, listener, log_fd, ours, ready_w)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.waitpid(middle, 0)
    raw = os.read(ready_r, 32)
    os.close(ready_r)
    listener.close()
    os.close(log_fd)
    for fd in {ours["stdin"], *(fd for fd, _ in ours["outputs"])}:
        os.close(fd)
    if not raw:
        for fd in theirs:
            os.close(fd)
        raise OSError(errno.ECHILD, "the relay died during start-up")
    return {"pid": int(raw), "_fds": theirs}


def _relay_main(req: dict[str, Any], listener: socket.socket, log_fd: int, ours: dict[str, Any],
                ready_w: int) -> NoReturn:
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        with contextlib.suppress(OSError):
            with open("/proc/self/comm", "w") as f:
                f.write("mk-relay")
        os.write(ready_w, str(os.getpid()).encode())
        os.close(ready_w)
        Relay(req, listener, log_fd, ours).run()
    except BaseException:  # noqa: BLE001 - never return into the zygote's code
        pass
    os._exit(0)


class Relay:
    def __init__(self, req: dict[str, Any], listener: socket.socket, log_fd: int, ours: dict[str, Any]) -> None:
        self.path = req["socket_path"]
        self.stdin_once = bool(req.get("stdin_once"))
        self.listener = listener
        self.log_fd = log_fd
        self.stdin: int | None = ours["stdin"]
        self.master: int | None = ours["master"]
        self.outputs: dict[int, int] = dict(ours["outputs"])
        self.clients: dict[socket.socket, bytearray] = {}
        self.sel = selectors.DefaultSelector()
        self.attached_once = False

    def run(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        for fd in self.outputs:
            self.sel.register(fd, selectors.EVENT_READ, "output")
        while self.outputs:
            for key, _ in self.sel.select():
                if key.data == "listen":
                    self._accept()
                elif key.data == "output":
                    self._output(key.fd)
                elif isinstance(key.fileobj, socket.socket) and key.fileobj in self.clients:
                    self._client(key.fileobj)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        for client in list(self.clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
            client.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.listener.accept()
            client.setblocking(True)
            client.settimeout(5)  # a stuck attacher must not stall the container's output for long
            self.clients[client] = bytearray()
            self.sel.register(client, selectors.EVENT_READ, "client")

    def _output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            del self.outputs[fd]
            if fd != self.master:
                os.close(fd)
            return
        with contextlib.suppress(OSError):
            os.write(self.log_fd, data)
        for client in list(self.clients):
            try:
                client.sendall(frame(self.outputs[fd], data))
            except OSError:
                self._drop(client)

    def _client(self, client: socket.socket) -> None:
        try:
            chunk = client.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(client)
            return
        buf = self.clients[client]
        buf += chunk
        while len(buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + length:
                break
            payload = bytes(buf[HEADER.size:HEADER.size + length])
            del buf[:HEADER.size + length]
            self._frame(kind, payload)

    def _frame(self, kind: int, payload: bytes) -> None:
        if kind == STDIN and self.stdin is not None and payload:
            try:
                os.write(self.stdin, payload)
            except OSError:
                self._close_stdin()
        elif kind == RESIZE and self.master is not None and len(payload) == 4:
            width, height = struct.unpack(">HH", payload)
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        elif kind == CLOSE and self.stdin_once:  # as the kubelet: an attacher's end of input ends the container's
            self._close_stdin()                  # only with stdinOnce (else the next attacher goes on typing)

    def _close_stdin(self) -> None:
        if self.stdin is None:
            return
        if self.master is not None:  # a terminal: end of input is ^D, the master stays for the output
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")
        else:
            os.close(self.stdin)
        self.stdin = None

    def _drop(self, client: socket.socket) -> None:
        if client not in self.clients:
            return
        del self.clients[client]
        self.sel.unregister(client)
        client.close()
        if self.stdin_once and not self.attached_once:
            self.attached_once = True
            self._close_stdin()
