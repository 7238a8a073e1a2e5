"""LinuxRuntime: pod sandboxes (pause + network) and container processes, through the zygote and the bridge.

It owns the per-pod run directory ``<run-dir>/pods/<uid>/`` (``pids/`` and ``exits/`` shared with pause,
``record.json`` written by the pod worker) and the log layout ``<log-dir>/<ns>_<name>_<uid>/<container>/<n>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minikubelet.cgroups.pods import PodCgroups
from minikubelet.errors import ContainerStartError, NetworkError, SandboxError, VolumeError
from minikubelet.network.bridge import BridgeNetwork
from minikubelet.network.ipam import Ipam
from minikubelet.network.neigh import ArpCapacity
from minikubelet.pod.spec import Pod
from minikubelet.runtime.owned import owned_pauses
from minikubelet.runtime.proc import ProcessHandle, is_alive, open_pidfd
from minikubelet.runtime.zygote import Zygote, close_fds

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Sandbox:
    pid: int
    start: int
    created_at: float
    ip: str = ""
    veth: str = ""


@dataclass(slots=True)
class ExitStatus:
    exit_code: int
    signal: int
    finished_at: float
    oom_killed: bool = False  # the OOM killer killed in the instance's cgroup (its counter, not the exit code)


class LinuxRuntime:
    def __init__(
        self, run_dir: Path, log_dir: Path, zygote: Zygote, network: BridgeNetwork, ipam: Ipam,
        data_dir: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.data_dir = data_dir or run_dir  # <data-dir>/pods/<uid>/: overlay upper dirs and emptyDir volumes
        self.zygote = zygote
        self.pause_bin: str | None = None  # the compiled pause to exec (runtime.pausebin); None: the Python one
        self.network = network
        self.ipam = ipam
        self.arp = ArpCapacity()
        self.cgroups: PodCgroups | None = None  # set by the daemon when the host has cgroups

    def pod_dir(self, uid: str) -> Path:
        return self.run_dir / "pods" / uid

    def pod_log_dir(self, pod: Pod) -> Path:
        return self.log_dir / f"{pod.namespace}_{pod.name}_{pod.uid}"

    def container_log(self, pod: Pod, container: str, restart_count: int) -> Path:
        return self.pod_log_dir(pod) / container / f"{restart_count}.log"

    async def create_sandbox(self, pod: Pod) -> Sandbox:
        """Pause in new NET/IPC/UTS/PID namespaces, then veth + IP. On failure nothing is left behind."""
        pod_dir = self.pod_dir(pod.uid)
        try:
            for sub in ("pids", "exits"):
                (pod_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SandboxError(f"failed to create the pod's run directory {pod_dir}: {e.strerror or e}"
                               f"{disk_full_hint(e)}") from e
        try:
            reply = await self.zygote.request(
                "sandbox", hostname=pod.hostname, pod_dir=str(pod_dir), pause_bin=self.pause_bin
            )
        except ContainerStartError as e:
            raise SandboxError(f"failed to create the pod sandbox: {e}") from e
        sandbox = Sandbox(int(reply["pid"]), int(reply["start"]), time.time())
        try:
            await self.setup_network(pod.uid, sandbox)
        except BaseException:
            await self.kill_sandbox(pod.uid, sandbox, remove_state=False)
            raise
        return sandbox

    async def setup_network(self, uid: str, sandbox: Sandbox) -> None:
        ip = self.ipam.allocate(uid)
        sandbox.ip = str(ip)
        self.arp.check(self.ipam.leased())
        try:
            fd = os.open(f"/proc/{sandbox.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SandboxError(f"the pause process (pid {sandbox.pid}) went away during set-up: {e}") from e
        try:
            if not is_alive(sandbox.pid, sandbox.start):
                raise SandboxError(f"the pause process (pid {sandbox.pid}) went away during set-up")
            sandbox.veth = await self.network.attach(uid, fd, ip)
        finally:
            os.close(fd)
        try:
            await self.zygote.request(
                "netconf",
                pause_pid=sandbox.pid,
                pause_start=sandbox.start,
                ifname="eth0",
                ip=str(ip),
                prefixlen=self.ipam.cidr.prefixlen,
                gateway=str(self.ipam.gateway),
            )
        except ContainerStartError as e:
            raise NetworkError(f"failed to configure eth0 in the pod: {e}") from e

    async def start_process(
        self,
        pod: Pod,
        sandbox: Sandbox,
        record: str,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        uid: int | None,
        gid: int | None,
        log_path: Path,
        rootfs: dict[str, Any] | None = None,
        stdio_fds: tuple[int, ...] = (),
        tty: bool = False,
    ) -> tuple[int, int]:
        """Start a container's main process; returns (host pid, start time). Raises ContainerStartError.

        ``rootfs`` (pod/rootfs.py) runs it on its image's root filesystem; without it, on the node's.
        ``stdio_fds`` (from ``start_relay``: the pty slave with ``tty``, else stdin, stdout, stderr) replace
        /dev/null and the log file; the caller still owns and closes them."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.pod_dir(pod.uid) / "exits" / record).unlink()
        placement: dict[str, Any] = {}
        if self.cgroups is not None:
            try:
                where = self.cgroups.place(pod, record)
            except OSError as e:
                raise ContainerStartError(f"failed to create the container's cgroup: {e}", "StartError") from e
            placement = {"cgroup_procs": where.procs_files, "oom_score_adj": where.oom_score_adj}
        if rootfs is not None:
            placement["rootfs"] = rootfs
        if stdio_fds and tty:
            placement["tty"] = True
        reply = await self.zygote.request(
            "spawn",
            fds=stdio_fds,
            pause_pid=sandbox.pid,
            pause_start=sandbox.start,
            pod_dir=str(self.pod_dir(pod.uid)),
            record=record,
            argv=argv,
            env=env,
            cwd=cwd,
            uid=uid,
            gid=gid,
            log_path=str(log_path),
            **placement,
        )
        return int(reply["pid"]), int(reply["start"])

    def attach_socket(self, uid: str, record: str) -> Path:
        """The relay's socket of container instance ``record`` (``<name>.<instance>``)."""
        return self.pod_dir(uid) / "attach" / f"{record}.sock"

    async def start_relay(self, pod: Pod, record: str, log_path: Path, tty: bool, stdin_once: bool
                          ) -> tuple[int, ...]:
        """Start the stdin/terminal relay of a container instance (nsexec/relay.py) before the container; returns
        the container's side (the pty slave, or stdin, stdout, stderr) for ``start_process(stdio_fds=...)``: the
        caller closes them after the spawn. Raises ContainerStartError."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        reply = await self.zygote.request("relay", socket_path=str(self.attach_socket(pod.uid, record)),
                                          log_path=str(log_path), tty=tty, stdin_once=stdin_once)
        return tuple(reply.get("fds", ()))

    async def exec_process(
        self, uid: str, target_pid: int, target_start: int, record: str, argv: list[str], env: dict[str, str],
        cwd: str | None, user: int | None, group: int | None, fds: tuple[int, ...], tty: bool = False,
        image_user: str | None = None,
    ) -> tuple[int, int]:
        """Start ``argv`` inside a running container (its NET/IPC/UTS/PID and mount namespaces).

        ``fds`` are (stdin, stdout, stderr), or (pty slave,) with ``tty``; they are passed to the helper, which
        dups them. The process is re-parented to pause, which records its exit status under ``record``.
        Returns (host pid, start time); raises ContainerStartError (e.g. executable not found).
        """
        with contextlib.suppress(FileNotFoundError):
            (self.pod_dir(uid) / "exits" / record).unlink()
        joins: dict[str, Any] = {}
        if self.cgroups is not None:  # an exec'd command counts against its container's limits, as with runc
            joins = {"cgroup_procs": self.cgroups.tree.procs_files_of(target_pid)}
        if image_user is not None:  # on an image: the container's user, looked up in its own /etc/passwd
            joins["image_user"] = image_user
        reply = await self.zygote.request(
            "exec", **joins, fds=fds, target_pid=target_pid, target_start=target_start, pod_dir=str(self.pod_dir(uid)),
            record=record, argv=argv, env=env, cwd=cwd, uid=user, gid=group, tty=tty,
        )
        return int(reply["pid"]), int(reply["start"])

    async def connect_in_pod(self, uid: str, sandbox: Sandbox, port: int, timeout: float = 10) -> socket.socket:
        """A non-blocking TCP socket connected to localhost:``port`` inside the pod's network namespace.

        The zygote connects from a child that joined the pause's net namespace and passes the socket back, so the
        daemon never calls setns. Raises ContainerStartError with the kubelet's words (connection refused...)."""
        reply = await self.zygote.request("connect", timeout=timeout + 5, pause_pid=sandbox.pid,
                                          pause_start=sandbox.start, port=port, sandbox_id=uid,
                                          connect_timeout=timeout)
        fds: list[int] = reply.get("fds", [])
        if len(fds) != 1:
            close_fds(fds)
            raise ContainerStartError(f"the nsexec helper passed {len(fds)} sockets instead of 1", "InternalError")
        conn = socket.socket(fileno=fds[0])
        conn.setblocking(False)
        return conn

    async def exec_sync(
        self, uid: str, sandbox: Sandbox | None, target_pid: int, target_start: int, record: str, argv: list[str],
        env: dict[str, str], cwd: str | None, user: int | None, group: int | None, timeout: float,
        limit: int = 10 * 1024, image_user: str | None = None,
    ) -> tuple[int | None, bytes]:
        """Run a command in a container and wait: (exit code, stdout then stderr, each capped at ``limit``).

        On timeout the command is SIGKILLed, reaped by pause, and (None, output so far) is returned.
        """
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid, start = await self.exec_process(uid, target_pid, target_start, record, argv, env, cwd, user,
                                                 group, (null, out_w, err_w), image_user=image_user)
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        handle = ProcessHandle(pid, start)
        readers = [asyncio.create_task(_read_capped(loop, fd, limit)) for fd in (out_r, err_r)]
        deadline = loop.time() + timeout
        try:
            exited = await handle.wait(timeout)
            if not exited:
                _kill_group(handle)
                await handle.wait(5)
            # processes the command left behind may hold its pipes open: they get what is left of the timeout
            _, pending = await asyncio.wait(readers, timeout=max(deadline - loop.time(), 0.1))
            if pending:
                exited = False
                _kill_group(handle)
                await asyncio.wait(pending, timeout=5)
            outputs = [t.result() if t.done() and not t.cancelled() else b"" for t in readers]
        finally:
            if not handle.exited:  # cancelled (probe worker stopped): the command must not outlive us
                _kill_group(handle)
            handle.close()
            for task in readers:
                task.cancel()
        status = await self.wait_exit_record(uid, record, sandbox)
        with contextlib.suppress(FileNotFoundError):
            (self.pod_dir(uid) / "exits" / record).unlink()
        if not exited:
            return None, b"".join(outputs)
        return (status.exit_code if status else None), b"".join(outputs)

    def read_exit(self, uid: str, record: str) -> ExitStatus | None:
        try:
            text = (self.pod_dir(uid) / "exits" / record).read_text()
        except OSError:
            return None
        code, sig, finished = text.split()
        return ExitStatus(int(code), int(sig), int(finished) / 1e9)

    async def wait_exit_record(self, uid: str, record: str, sandbox: Sandbox | None) -> ExitStatus | None:
        """After a container process is gone: wait (briefly) for pause to have reaped it and written its status."""
        delay = 0.001
        deadline = time.monotonic() + 2.0
        while True:
            status = self.read_exit(uid, record)
            if status is not None:
                return await self._classify(uid, record, status)
            if time.monotonic() > deadline or sandbox is None or not is_alive(sandbox.pid, sandbox.start):
                status = self.read_exit(uid, record)
                return None if status is None else await self._classify(uid, record, status)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _classify(self, uid: str, record: str, status: ExitStatus) -> ExitStatus:
        if self.cgroups is not None and await self.cgroups.finished(uid, record):
            status.oom_killed = True
        return status

    def kill_unrecorded_pause(self, uid: str, recorded: Sandbox | None) -> bool:
        """Kill the pause that ``<pod_dir>/sandbox`` names if it lives and is not the ``recorded`` sandbox: a previous
        daemon died between creating it and recording it, so nothing else would ever stop it. Its PID namespace, its
        processes and its veth go with it. True if one was killed."""
        try:
            pid_text, start_text = (self.pod_dir(uid) / "sandbox").read_text().split()
            pid, start = int(pid_text), int(start_text)
        except (OSError, ValueError):
            return False
        if recorded is not None and (recorded.pid, recorded.start) == (pid, start):
            return False
        fd = open_pidfd(pid, start)
        if fd is None:
            return False
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)
        log.warning("Killed a pod sandbox a previous daemon started but never recorded uid=%s pause_pid=%d", uid, pid)
        return True

    def kill_unknown_pauses(self, known: set[tuple[int, int]]) -> int:
        """Kill every pause this daemon's run dir marks (runtime.owned) that is not one of ``known`` (pid, start):
        one whose start failed after the fork, or whose trace and record were never written (a full disk, a daemon
        killed at the wrong moment). Its PID namespace, processes and veth go with it. Returns how many."""
        killed = 0
        for pid, start in owned_pauses(self.run_dir):
            if (pid, start) in known:
                continue
            fd = open_pidfd(pid, start)
            if fd is None:
                continue
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                continue
            finally:
                os.close(fd)
            killed += 1
            log.warning("Killed a pod sandbox this daemon's run dir marks but nothing records pause_pid=%d run=%s",
                        pid, self.run_dir)
        return killed

    async def kill_sandbox(self, uid: str, sandbox: Sandbox | None, *, remove_state: bool = True) -> None:
        """Stop pause (which SIGKILLs whatever is left in the pod's PID namespace), remove veth and lease."""
        if sandbox is not None:
            handle = ProcessHandle(sandbox.pid, sandbox.start)
            if not handle.exited:
                handle.send(signal.SIGKILL)
                if not await handle.wait(10):
                    log.warning("Pause did not exit after SIGKILL pid=%d uid=%s", sandbox.pid, uid)
            handle.close()
        await self.release_network(uid, sandbox.veth if sandbox else "")
        if remove_state:
            shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
            if self.cgroups is not None:
                await self.cgroups.remove_pod(uid)

    async def release_network(self, uid: str, veth: str = "") -> None:
        try:
            await self.network.detach(veth or self.network.veth_name(uid))
        except NetworkError as e:
            log.warning("Could not delete the pod's veth uid=%s error=%s", uid, e)
        self.ipam.release(uid)

    async def mount_tmpfs(self, target: Path, size: int, mode: str = "1777") -> None:
        """A tmpfs (nosuid, nodev, ``size`` bytes, 0 for the kernel's default of half the RAM) on the existing
        directory ``target`` in the HOST mount namespace, made by a zygote child (the daemon never mounts).
        Not idempotent: callers check ``os.path.ismount`` first. Raises VolumeError naming the target."""
        try:
            await self.zygote.request("mount_tmpfs", target=str(target), size=size, mode=mode)
        except ContainerStartError as e:
            raise VolumeError(str(e)) from e

    async def umount(self, targets: list[Path]) -> None:
        """Detach (MNT_DETACH) every mount on each of ``targets`` in the host mount namespace; a target that is
        not mounted, or gone, is skipped. Raises VolumeError."""
        if not targets:
            return
        try:
            await self.zygote.request("umount", targets=[str(t) for t in targets])
        except ContainerStartError as e:
            raise VolumeError(str(e)) from e


def disk_full_hint(e: OSError) -> str:
    """What to do, for an error that says the disk is full."""
    return " (the disk is full: free space there; the pod is retried)" if e.errno == errno.ENOSPC else ""


def _kill_group(handle: ProcessHandle) -> None:
    """SIGKILL an exec'd command and every process it started: it is a session leader (setsid), so they share its
    process group unless they left it. The group id stays reserved while any member lives, so it names no stranger."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(handle.pid, signal.SIGKILL)
    handle.send(signal.SIGKILL)


async def _read_capped(loop: asyncio.AbstractEventLoop, fd: int, limit: int) -> bytes:
    """Read a pipe to EOF without blocking the loop; keep the first ``limit`` bytes. Closes ``fd``."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        nonlocal size
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            if not done.done():
                done.set_result(None)
            return
        if size < limit:
            chunks.append(data[: limit - size])
            size += len(chunks[-1])

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)
        os.close(fd)
    return b"".join(chunks)
