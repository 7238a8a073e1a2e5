"""The pod's pause process: PID 1 of the pod's PID namespace.

It holds the pod's NET, IPC, UTS and PID namespaces, reaps every child that is re-parented to it (orphans of the
containers, container main processes, exec'd commands) and records the exit status of the processes the helper
registered, so exit codes survive a daemon that is down. SIGTERM or SIGINT end it with status 0, as the real pause.

Registration: a process started by nsexec writes its in-namespace PID to ``<pod_dir>/pids/<nspid>`` (content: the
record name) before it execs. When pause reaps that PID it writes ``<pod_dir>/exits/<record>`` atomically as
``"<exit code> <signal> <finished unix ns>"`` and removes the pids file. Stdlib only; runs forked from the zygote,
so it costs only the pages it dirties.
"""

from __future__ import annotations

import os
import signal
import time
from typing import NoReturn

WAITED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def record_exit(pod_dir: str, pid: int, status: int) -> None:
    marker = f"{pod_dir}/pids/{pid}"
    try:
        with open(marker) as f:
            record = f.read().strip()
    except OSError:
        return  # an unregistered orphan: reaped, nothing to record
    code = os.waitstatus_to_exitcode(status)
    sig = -code if code < 0 else 0
    exit_code = 128 + sig if sig else code
    tmp = f"{pod_dir}/exits/.{record}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{exit_code} {sig} {time.time_ns()}\n")
        os.replace(tmp, f"{pod_dir}/exits/{record}")
        os.unlink(marker)
    except OSError:
        pass


def reap_all(pod_dir: str) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        record_exit(pod_dir, pid, status)


def run(pod_dir: str, ready_fd: int) -> NoReturn:
    """Become the pause process (never returns). Signals are blocked and taken with sigwaitinfo, so nothing is lost
    between a wake-up and the next wait, and the kernel does not drop them for lack of a handler (PID 1 rule)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    for sig in (signal.SIGHUP, signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    os.setsid()
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, ready_fd)
    os.closerange(ready_fd + 1, 1 << 20)
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    while True:
        info = signal.sigwaitinfo(WAITED)
        if info.si_signo != signal.SIGCHLD:
            os._exit(0)
        reap_all(pod_dir)
