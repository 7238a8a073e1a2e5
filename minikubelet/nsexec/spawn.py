"""Entering a pod: start a container or an exec'd command inside the pause's namespaces.

Runs in a fresh child forked from the zygote (single-threaded), never in the daemon. The sequence follows crun's
``join_process``: open a pidfd of the target, check it is the same process (start time), ``setns`` with the pidfd
for all namespaces at once, then fork, because a PID namespace applies to children only. The forked process
registers its in-namespace PID with pause (see pause.py), then this helper exits, so the process is re-parented to
the pod's PID 1, which reaps it and records its exit status.
"""

from __future__ import annotations

import os
import signal
import stat
from typing import Any, NoReturn

from minikubelet.nsexec import _sys, users
from minikubelet.nsexec import rootfs as mounts

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class StartError(Exception):
    """The target could not be entered or the command could not be started; ``reason`` is the kubelet's."""

    def __init__(self, message: str, reason: str = "StartError") -> None:
        self.reason = reason
        super().__init__(message)


def open_target(pid: int, start: int) -> int:
    """A pidfd for ``pid`` if it is still the process that started at ``start`` (never trust a PID alone)."""
    try:
        pidfd = os.pidfd_open(pid)
        if _sys.start_time(pid) != start:
            raise ProcessLookupError
    except (ProcessLookupError, FileNotFoundError) as e:
        raise StartError(f"the pod sandbox (pid {pid}) is gone", "SandboxGone") from e
    return pidfd


def resolve(executable: str, env: dict[str, str]) -> str:
    if "/" in executable:
        if not os.path.exists(executable):
            raise StartError(f'exec: "{executable}": stat {executable}: no such file or directory')
        return executable
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        candidate = os.path.join(d or ".", executable)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise StartError(f'exec: "{executable}": executable file not found in $PATH')


def _reset_signals() -> None:
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _join_cgroups(req: dict[str, Any]) -> None:
    """Enter the container's cgroup (fds opened on the host before setns) and set oom_score_adj: before any exec."""
    for fd in req.get("_cgroup_fds") or []:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise StartError(f"failed to join the container's cgroup: {e.strerror or e}") from e
        os.close(fd)
    adj = req.get("oom_score_adj")
    if adj is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(int(adj)))
        except OSError:  # lowering it needs CAP_SYS_RESOURCE, which some hosts withhold: keep the inherited value
            pass


def non_root_check(rootfs: dict[str, Any], uid: int | None) -> None:
    """The kubelet's runAsNonRoot verdict (``verifyRunAsNonRoot``), before anything is mounted."""
    if not rootfs.get("run_as_non_root"):
        return
    where = f'(pod: "{rootfs.get("pod_id", "")}", container: {rootfs.get("container", "")})'
    if uid is not None:
        if int(uid) == 0:
            raise StartError(f"container's runAsUser breaks non-root policy {where}", "CreateContainerConfigError")
        return
    user = str(rootfs.get("image_user") or "").partition(":")[0]
    if not user or user.isdigit() and int(user) == 0:
        raise StartError(f"container has runAsNonRoot and image will run as root {where}", "CreateContainerConfigError")
    if not user.isdigit():
        raise StartError(f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is "
                         f"non-root {where}", "CreateContainerConfigError")


def _identity(image_user: str, uid: int | None, gid: int | None, env: dict[str, str]) -> users.Identity:
    """The user of the image's /etc/passwd and /etc/group (we are inside its root now); HOME from it if unset."""
    try:
        ident = users.resolve(image_user, None if uid is None else int(uid), None if gid is None else int(gid))
    except (users.UserError, OSError) as e:
        raise StartError(str(e)) from e
    env.setdefault("HOME", ident.home)
    return ident


def _stdio(req: dict[str, Any]) -> None:
    stdio = req.get("stdio_fds")
    if stdio:
        for target, fd in enumerate(stdio):
            os.dup2(int(fd), target)
    elif not req.get("tty"):
        null = os.open("/dev/null", os.O_RDONLY)
        if req.get("rootfs"):  # runc verifyDevNull: stdin must be the real null device
            st = os.fstat(null)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                raise StartError("/dev/null on the host is not the null device (char 1:3)")
        os.dup2(null, 0)
        log = os.open(req["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.dup2(log, 1)
        os.dup2(log, 2)


def _child(req: dict[str, Any], proc_fd: int, pids_fd: int, info_w: int, go_r: int, err_w: int) -> NoReturn:
    """The forked process inside the pod's PID namespace: set up, register with pause, exec.

    With ``rootfs`` the host paths it needs (log file, /dev/null, the pids dir as ``pids_fd``) are opened before
    the mount plan, then everything else (PATH lookup, cwd, user) happens inside the image's root."""
    try:
        os.write(info_w, os.readlink("self", dir_fd=proc_fd).encode())  # the host's procfs: our host PID
        os.close(proc_fd)
        os.close(info_w)
        os.read(go_r, 1)
        os.close(go_r)
        _join_cgroups(req)
        _reset_signals()
        env: dict[str, str] = dict(req.get("env") or {})
        env.setdefault("PATH", DEFAULT_PATH)
        argv: list[str] = list(req["argv"])
        if not argv:
            raise StartError("no command specified", "CreateContainerConfigError")
        rootfs: dict[str, Any] | None = req.get("rootfs")
        gid, uid = req.get("gid"), req.get("uid")
        cwd = req.get("cwd") or "/"
        if rootfs is not None:
            non_root_check(rootfs, uid)
        else:
            path = resolve(argv[0], env)
        if req.get("tty"):
            os.login_tty(int(req["tty_fd"]))
        else:
            os.setsid()
        if rootfs is None:
            register(pids_fd, req["record"])
        if req.get("mount_proc") and rootfs is None:
            _sys.unshare(_sys.CLONE_NEWNS)
            _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
            _sys.mount("proc", "/proc", "proc", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC)
        _stdio(req)
        ident: users.Identity | None = None
        if rootfs is not None:
            path, ident = _enter_image(rootfs, argv[0], cwd, uid, gid, env)
            register(pids_fd, req["record"])
        else:
            if "image_user" in req:  # exec into a container on an image root: its user, from its files
                ident = _identity(str(req["image_user"] or ""), uid, gid, env)
            _chdir(cwd)
        if ident is not None:
            os.setgroups(ident.groups)
            os.setgid(ident.gid)
            os.setuid(ident.uid)
        elif uid is not None or gid is not None:
            os.setgroups([])
            os.setgid(int(gid) if gid is not None else 0)  # no image /etc/passwd: the group defaults to 0
            if uid is not None:
                os.setuid(int(uid))
        os.execve(path, argv, env)
    except StartError as e:
        os.write(err_w, f"{e.reason}\0{e}".encode())
    except OSError as e:
        os.write(err_w, f"StartError\0{e.strerror or e}".encode())
    except BaseException as e:  # never return into the zygote's code in a forked child
        os.write(err_w, f"StartError\0{e!r}".encode())
    os._exit(127)


def _enter_image(rootfs: dict[str, Any], executable: str, cwd: str, uid: int | None, gid: int | None,
                 env: dict[str, str]) -> tuple[str, users.Identity]:
    """Mount the image's root and pivot into it; then, inside: the user, HOME, cwd and the executable's path."""
    try:
        mounts.enter(rootfs, cwd)
    except mounts.MountError as e:
        raise StartError(str(e)) from e
    ident = _identity(str(rootfs.get("image_user") or ""), uid, gid, env)
    _chdir(cwd)
    return resolve(executable, env), ident  # as runc: after the chdir, so a relative ./name is found in cwd


def _chdir(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise StartError(f'chdir to cwd ("{cwd}") set in config.json failed: {why}') from e


def register(pids_fd: int, record: str) -> None:
    """``<pod_dir>/pids/<our pid>`` = the record name: pause records our exit status under it (pause.py)."""
    fd = os.open(str(os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666, dir_fd=pids_fd)
    with open(fd, "w") as f:
        f.write(record)
    os.close(pids_fd)


def enter_and_fork(req: dict[str, Any], pidfd: int, nstypes: int) -> dict[str, Any]:
    """setns into ``pidfd``'s namespaces, start the process described by ``req`` and wait until it has exec'd.

    A double fork: the intermediate child lives in the pod's PID namespace, so when it exits the kernel re-parents
    the final process to that namespace's init (pause), not to a subreaper of ours (the reaper is chosen by the
    *exiting parent's* namespace). The final process reports its host PID (``/proc/self`` of the host's procfs)
    and waits for a go-ahead, so its start time is read while it certainly runs.
    Returns ``{"pid": host pid, "start": start time}`` or raises StartError with the message of the failed step.
    """
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the host's, before any setns
    pids_fd = os.open(f"{req['pod_dir']}/pids", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in req.get("cgroup_procs") or []]
    req = dict(req, _cgroup_fds=cgroup_fds)
    _sys.setns(pidfd, nstypes)
    os.close(pidfd)
    info_r, info_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:
        try:
            if os.fork() == 0:
                os.close(info_r)
                os.close(go_w)
                os.close(err_r)
                _child(req, proc_fd, pids_fd, info_w, go_r, err_w)
        finally:
            os._exit(0)
    for fd in (info_w, go_r, err_w, *cgroup_fds):
        os.close(fd)
    os.waitpid(middle, 0)
    raw = os.read(info_r, 64)
    os.close(info_r)
    if not raw:
        raise StartError("the container process died before it could start")
    pid = int(raw)
    start = _sys.start_time(pid, proc_fd)  # it waits on go_r, so it cannot have exited yet
    os.close(proc_fd)
    os.close(pids_fd)
    os.write(go_w, b"1")
    os.close(go_w)
    chunks = []
    while chunk := os.read(err_r, 65536):
        chunks.append(chunk)
    os.close(err_r)
    if chunks:
        reason, _, message = b"".join(chunks).decode(errors="replace").partition("\0")
        raise StartError(message, reason)
    return {"pid": pid, "start": start}
