"""The nsexec zygote: a small, single-threaded, stdlib-only process that forks every pod-side process.

The daemon starts one zygote (``python -I -S``) and sends it JSON requests over a SOCK_SEQPACKET socket; fds (for
exec stdio) travel as SCM_RIGHTS. For each request the zygote forks a fresh child that does the namespace work
(unshare/setns/fork/exec) and answers on the same socket, then exits. The daemon itself never calls setns or fork.

Why a zygote: no request pays the ~5-20 ms interpreter start-up. The pause is the compiled ``pause.c`` when the
request names it (about 50 KB per pod), else a Python pause forked from the quiescent pause factory, whose pages it
shares (about 1.3 MB per pod instead of the ~4 MB of an exec'd Python). The zygote is a child subreaper:
pause processes (grandchildren) are re-parented to it and reaped here while the daemon runs. It dies with the
daemon (PDEATHSIG) and the pods stay: they are then re-parented to the host's init.

Requests: ``{"id": N, "op": "sandbox"|"spawn"|"exec"|"relay"|"netconf"|"connect"|"mount_tmpfs"|"umount"|"ping", ...}``
(``mount_tmpfs`` and ``umount`` act in the host's mount namespace: nsexec/hostmount.py);
replies: ``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "reason": R, "error": MESSAGE}``; a ``connect``
reply carries the connected socket as SCM_RIGHTS.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any, NoReturn

from minikubelet.nsexec import _sys, hostmount, netconf, pause, relay
from minikubelet.nsexec.spawn import StartError, enter_and_fork, open_target

MAX_MESSAGE = 1 << 20


OWNER_ENV = "MINIKUBELET_OWNER"  # = runtime.zygote.OWNER_ENV: the daemon's run dir, in every pause's environ


def op_sandbox(req: dict[str, Any]) -> dict[str, Any]:
    """New NET, IPC, UTS and PID namespaces; hostname; loopback up; fork pause as PID 1.

    Every pause carries ``MINIKUBELET_OWNER=<run dir>`` in its environ (the kernel keeps it in /proc/PID/environ):
    the Python pause inherits the zygote's, the compiled one gets it from execve. With it a restarted daemon or
    ``reset`` finds a pause even when no trace could be written. Any failure after the fork kills and reaps it."""
    _sys.unshare(_sys.CLONE_NEWNET | _sys.CLONE_NEWIPC | _sys.CLONE_NEWUTS | _sys.CLONE_NEWPID)
    _sys.sethostname(req["hostname"])
    netconf.loopback_up()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _sys.set_process_name("pause")
        if req.get("pause_bin"):  # the compiled pause (nsexec/pause.c): same contract, a tenth of the memory
            try:
                os.set_inheritable(ready_w, True)
                env = {OWNER_ENV: os.environ[OWNER_ENV]} if OWNER_ENV in os.environ else {}
                os.execve(req["pause_bin"], ["pause", req["pod_dir"], str(ready_w)], env)
            except OSError:
                pass  # the Python pause below does the same job
        pause.run(req["pod_dir"], ready_w)
    try:
        os.close(ready_w)
        if os.read(ready_r, 1) != b"1":
            raise StartError("the pause process died during start-up", "CreatePodSandboxError")
        start = _sys.start_time(pid)
        write_sandbox_trace(req["pod_dir"], pid, start)
    except BaseException as e:
        os.kill(pid, signal.SIGKILL)  # its PID namespace, and all in it, go with it
        os.waitpid(pid, 0)
        if isinstance(e, OSError):
            raise StartError(f"the pod sandbox could not be recorded in {req['pod_dir']}: {e.strerror or e}"
                             f"{disk_full_hint(e)}", "CreatePodSandboxError") from e
        raise
    return {"pid": pid, "start": start}


def disk_full_hint(e: OSError) -> str:
    return " (the disk is full: free space there; the pod is retried)" if e.errno == errno.ENOSPC else ""


def write_sandbox_trace(pod_dir: str, pid: int, start: int) -> None:
    """``<pod_dir>/sandbox``: "PID START" of the newest pause, written before the daemon hears of it. A daemon that
    dies before it records the sandbox leaves this trace, so the next daemon (or reset) can stop that pause."""
    tmp = f"{pod_dir}/.sandbox.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{pid} {start}\n")
        os.replace(tmp, f"{pod_dir}/sandbox")
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def op_spawn(req: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
    """A container's main process in the pod's namespaces, with its own mount namespace and /proc.

    With fds (from its relay: the pty slave with ``tty``, else stdin, stdout, stderr) they are its stdio."""
    pidfd = open_target(req["pause_pid"], req["pause_start"])
    if fds:
        req = dict(req, tty_fd=fds[0]) if req.get("tty") else dict(req, stdio_fds=fds[:3])
    return enter_and_fork(dict(req, mount_proc=True), pidfd, _sys.POD_NAMESPACES)


def op_exec(req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    """A command inside a running container: its NET, IPC, UTS, PID and mount namespaces."""
    pidfd = open_target(req["target_pid"], req["target_start"])
    if req.get("tty"):
        req = dict(req, tty_fd=fds[0])
    else:
        req = dict(req, stdio_fds=fds[:3])
    return enter_and_fork(req, pidfd, _sys.POD_NAMESPACES | _sys.CLONE_NEWNS)


def op_netconf(req: dict[str, Any]) -> dict[str, Any]:
    pidfd = open_target(req["pause_pid"], req["pause_start"])
    _sys.setns(pidfd, _sys.CLONE_NEWNET)
    netconf.configure_interface(req["ifname"], req["ip"], int(req["prefixlen"]), req["gateway"])
    return {}


def op_connect(req: dict[str, Any]) -> dict[str, Any]:
    """A TCP connection to localhost:PORT inside the pod's network namespace (kubectl port-forward), passed back.

    As containerd's PortForward: IPv4 first, then IPv6; the error names both attempts in Go's words."""
    pidfd = open_target(req["pause_pid"], req["pause_start"])
    _sys.setns(pidfd, _sys.CLONE_NEWNET)
    port, timeout = int(req["port"]), float(req.get("connect_timeout", 10))
    errors = []
    for family, host, net, shown in ((socket.AF_INET, "127.0.0.1", "tcp4", "127.0.0.1"),
                                     (socket.AF_INET6, "::1", "tcp6", "[::1]")):
        step = "socket"
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                step = "connect"
                s.settimeout(timeout)
                s.connect((host, port))
                return {"_fds": [s.detach()]}
        except OSError as e:
            text = "i/o timeout" if isinstance(e, TimeoutError) else os.strerror(e.errno) if e.errno else str(e)
            errors.append(f"dial {net} {shown}:{port}: {step}: {text[:1].lower()}{text[1:]}")
    raise StartError(f'failed to connect to localhost:{port} inside namespace "{req.get("sandbox_id", "")}", '
                     f"IPv4: {errors[0]} IPv6 {errors[1]} ", "PortForwardError")


def handle(sock: socket.socket, req: dict[str, Any], fds: list[int]) -> NoReturn:
    """In the forked child: run one request, answer, exit."""
    reply: dict[str, Any] = {"id": req.get("id")}
    try:
        op = req.get("op")
        if op == "sandbox":
            result = op_sandbox(req)
        elif op == "spawn":
            result = op_spawn(req, fds)
        elif op == "relay":
            result = relay.op_relay(req)
        elif op == "exec":
            result = op_exec(req, fds)
        elif op == "netconf":
            result = op_netconf(req)
        elif op == "connect":
            result = op_connect(req)
        elif op == "mount_tmpfs":
            result = hostmount.op_mount_tmpfs(req)
        elif op == "umount":
            result = hostmount.op_umount(req)
        elif op == "ping":
            result = {"pid": os.getpid()}
        else:
            raise StartError(f"unknown op {op!r}", "InternalError")
        reply.update(result, ok=True)
    except StartError as e:
        reply.update(ok=False, reason=e.reason, error=str(e))
    except OSError as e:
        reply.update(ok=False, reason="StartError", error=f"{e.strerror or e}")
    except BaseException as e:
        reply.update(ok=False, reason="InternalError", error=repr(e))
    try:
        passed = reply.pop("_fds", [])
        socket.send_fds(sock, [json.dumps(reply).encode()], passed) if passed else sock.send(json.dumps(reply).encode())
    finally:
        os._exit(0)


def reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def pause_factory(ctl: socket.socket, sock: socket.socket) -> NoReturn:
    """A quiescent process that only forks sandboxes (and so pause processes).

    Memory: a pause shares its pages with the process it was forked from until one of them writes. The zygote
    writes all the time (every request touches heap pages and reference counts), which turned each pause's copy
    private: 2.7 MB of PSS per pod. This factory runs only a few lines between forks, so pauses keep sharing it.
    """
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
    _sys.set_process_name("mk-pausefactory")
    gc.collect()
    gc.freeze()
    while True:
        data = ctl.recv(MAX_MESSAGE)
        if not data:
            os._exit(0)
        if os.fork() == 0:
            ctl.close()
            handle(sock, json.loads(data), [])
        reap_children()


def start_factory(sock: socket.socket, close_in_child: list[int]) -> socket.socket:
    """Fork the pause factory; returns the socket that hands it sandbox requests."""
    factory_ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        factory_ctl.close()
        for fd in close_in_child:
            os.close(fd)
        pause_factory(theirs, sock)
    theirs.close()
    return factory_ctl


def serve(sock: socket.socket) -> None:
    gc.collect()
    gc.freeze()
    # the factory only serves Python pauses: with the compiled pause (a request naming ``pause_bin``) the sandbox is
    # forked from here like any request, and the factory is started the first time a Python pause is asked for
    factory_ctl: socket.socket | None = None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 16)
                if not data:
                    return  # the daemon closed its end
                try:
                    req = json.loads(data)
                except ValueError:
                    continue
                if req.get("op") == "sandbox" and not req.get("pause_bin"):
                    if factory_ctl is None:
                        signal.set_wakeup_fd(-1)  # the child must not inherit it; set again below
                        factory_ctl = start_factory(sock, [wake_r, wake_w, sel.fileno()])
                        signal.set_wakeup_fd(wake_w)
                    factory_ctl.send(data)
                    continue
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    handle(sock, req, fds)
                for fd in fds:
                    os.close(fd)
            else:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                reap_children()


def main(argv: list[str]) -> None:
    sock_fd, parent = int(argv[0]), int(argv[1])
    _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(0)
    _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
    _sys.set_process_name("mk-zygote")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_inheritable(sock_fd, False)
    sock = socket.socket(fileno=sock_fd)  # blocking: select() says when to read, children send their replies
    serve(sock)


if __name__ == "__main__":
    main(sys.argv[1:])
