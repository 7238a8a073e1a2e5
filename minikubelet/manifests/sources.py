"""Static pod file source: turns changes in one manifest directory into PodUpdate events (kubelet-semantics §5).

Reacts to inotify events per file, with a full rescan every ``rescan_interval`` s as the safety net. Unlike the kubelet:
only root-owned, not group/other-writable ``*.yaml|*.yml|*.json`` files count; an invalid edit keeps the pods last
loaded (also across rescans); for a duplicate namespace/name the file that defined it first wins."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from minikubelet.errors import ManifestError
from minikubelet.manifests import inotify
from minikubelet.manifests.manifest import MAX_MANIFEST_BYTES, load_pods
from minikubelet.pod.spec import Pod

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
THREAD_THRESHOLD = 64 * 1024  # files larger than this are read and parsed in a worker thread
TRUSTED_UID = 0  # owner required for the directory, the files and symlink targets


class UpdateOp(StrEnum):
    ADD = "ADD"
    UPDATE = "UPDATE"  # same uid, new labels/annotations: no restart
    REMOVE = "REMOVE"


@dataclass(frozen=True, slots=True)
class PodUpdate:
    op: UpdateOp
    pod: Pod


def is_manifest_name(name: str) -> bool:
    """Whether a directory entry name is considered at all (dotfiles, backups and other suffixes are ignored)."""
    return not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES)


@dataclass(slots=True)
class _FileState:
    pods: dict[str, Pod] = field(default_factory=dict)  # key -> pod, last successful load (owned or refused dup)
    seq: dict[str, int] = field(default_factory=dict)  # key -> when this file first defined it (lower wins)
    digest: bytes | None = None  # sha256 of the last content read
    parse_error: str | None = None  # the error of that content, None if it loaded
    error: str | None = None  # the current error (parse or safety)


def _unsafe(what: str, path: str, st: os.stat_result) -> str | None:
    if st.st_uid != TRUSTED_UID:
        return f"{what} is owned by uid {st.st_uid}, not root; pods run as root, so run: chown root {path}"
    if (mode := stat.S_IMODE(st.st_mode)) & 0o022:
        return f"{what} is writable by group or others (mode {mode:04o}); pods run as root, so run: chmod go-w {path}"
    return None


def _open_checked(path: str) -> tuple[int, int] | None:
    """Open a candidate file that passes the safety checks: (fd, size); None means ignore it."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return None
    flags, what, real = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK, "the file", path
    if stat.S_ISLNK(lst.st_mode):
        try:
            target = os.stat(path)
        except OSError as exc:
            why = f"the symlink target {os.readlink(path)} does not exist" if exc.errno == errno.ENOENT else None
            why = why or ("the symlink is a loop" if exc.errno == errno.ELOOP else f"cannot follow it: {exc.strerror}")
            raise ManifestError(path, [f"refused: {why}; fix the link or remove it: rm {path}"]) from None
        real = os.path.realpath(path)
        what = f"the symlink target {real}"
        if not stat.S_ISREG(target.st_mode):
            raise ManifestError(path, [f"refused: {what} is not a regular file; fix the link or remove it: rm {path}"])
    elif stat.S_ISREG(lst.st_mode):
        flags |= os.O_NOFOLLOW
    else:
        return None  # directory, socket, fifo, device: not a manifest
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError(path, [f"refused: cannot open it ({exc.strerror}); check it with: ls -lL {path}"]) from None
    st = os.fstat(fd)
    problem = None if stat.S_ISREG(st.st_mode) else f"{what} is not a regular file; replace it with one"
    problem = problem or _unsafe(what, real, st)
    if problem is None and st.st_size > MAX_MANIFEST_BYTES:
        problem = f"{what} is {st.st_size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit; split it into smaller files"
    if problem is not None:
        os.close(fd)
        raise ManifestError(path, [f"refused: {problem}"])
    return fd, st.st_size


def _read_and_parse(
    fd: int, path: str, node_name: str, known_digest: bytes | None
) -> tuple[bytes | None, dict[str, Pod] | None, str | None]:
    """Read <= limit+1 bytes from ``fd`` (closes it), parse unless unchanged: (sha256|None, pods|None, error|None)."""
    try:
        with open(fd, "rb", closefd=True) as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        return None, None, f"{path}: refused: cannot read it ({exc.strerror}); check it with: ls -lL {path}"
    if len(data) > MAX_MANIFEST_BYTES:
        return None, None, f"{path}: refused: the file grew past the {MAX_MANIFEST_BYTES}-byte limit; split it"
    digest = hashlib.sha256(data).digest()
    if digest == known_digest:
        return digest, None, None
    try:
        loaded = load_pods(path, data, node_name)
    except ManifestError as exc:
        return digest, None, str(exc)
    except Exception as exc:  # a parser bug must not stop the other files
        log.exception("Manifest parser failed file=%s", path)
        return digest, None, f"{path}: could not be parsed ({type(exc).__name__}: {exc}); check the file syntax"
    pods = {pod.key: pod for pod in loaded}
    if len(pods) < len(loaded):
        dup = next(key for key in pods if sum(pod.key == key for pod in loaded) > 1)
        return digest, None, f"{path}: pod {dup} is defined more than once; remove one of the copies"
    return digest, pods, None


class FileSource:
    """Owns the desired pods of one manifest directory and queues PodUpdate events when they change."""

    def __init__(
        self, directory: Path, node_name: str, updates: asyncio.Queue[PodUpdate], *, rescan_interval: float = 20.0
    ) -> None:
        self.directory = Path(directory).absolute()
        self.node_name = node_name
        self.rescan_interval = rescan_interval
        self._dir = str(self.directory)
        self._updates = updates  # must be unbounded: the source never waits on its consumer
        self._files: dict[str, _FileState] = {}
        self._owners: dict[str, str] = {}  # pod key -> file that owns it
        self._pods: dict[str, Pod] = {}  # uid -> accepted pod
        self._dir_error: str | None = None
        self._errors: dict[str, str] = {}  # as last published
        self._seq = 0
        self._lock = asyncio.Lock()  # one pass at a time
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._pending: dict[str, int] = {}  # entry name -> OR of its inotify masks
        self._full = False  # a full rescan was requested (overflow, watch re-created, directory event)
        self._watcher: inotify.InotifyWatcher | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # called (path, message) when a file is newly refused or its refusal changes (the daemon makes it an event)
        self.on_refused: Callable[[str, str], None] | None = None

    async def start(self) -> None:
        """Create the directory if missing, watch it, queue the updates of a full scan, then keep watching."""
        if self._tasks:
            return
        if not os.path.lexists(self._dir):
            try:
                os.makedirs(self._dir, mode=0o755)
                os.chmod(self._dir, 0o755)  # makedirs is subject to the umask
                log.info("Manifest directory created directory=%s mode=0755", self._dir)
            except OSError as exc:
                log.warning("Cannot create the manifest directory directory=%s error=%s", self._dir, exc)
        self._start_watch(warn=True)
        await self.rescan()
        task = asyncio.create_task(self._run(), name=f"file-source:{self._dir}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in (tasks := list(self._tasks)):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    async def rescan(self) -> None:
        """Full pass over the directory now; produces no updates when nothing changed."""
        async with self._lock:
            self._pending.clear()
            self._full = False
            await self._pass(None)

    def errors(self) -> dict[str, str]:
        """Current error per file path (the directory path for a directory-wide refusal)."""
        return dict(self._errors)

    def pods(self) -> dict[str, Pod]:
        """Current desired pods by uid."""
        return dict(self._pods)

    def pod_by_key(self, key: str) -> Pod | None:
        return self._files[owner].pods[key] if (owner := self._owners.get(key)) is not None else None

    async def wait_for_change(self) -> None:
        """Return after the next pass that changed pods or errors (wrap in asyncio.timeout: it may never come)."""
        await self._changed.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_rescan = loop.time() + self.rescan_interval
        failures = 0
        while True:
            try:
                if not self._wake.is_set() and (delay := next_rescan - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can swallow a cancel
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                self._wake.clear()
                if self._watcher is None and self._start_watch(warn=False):
                    self._full = True  # events were missed while there was no watch
                if self._full or loop.time() >= next_rescan:
                    await self.rescan()
                    next_rescan = loop.time() + self.rescan_interval
                elif self._pending:
                    async with self._lock:
                        pending, self._pending = self._pending, {}
                        await self._pass(pending)
                failures = 0
            except Exception:
                failures += 1
                log.exception("Manifest source pass failed, rescanning soon directory=%s", self._dir)
                await asyncio.sleep(min(self.rescan_interval, 2.0 ** min(failures, 6)))
                next_rescan = loop.time()

    def _on_event(self, name: str, mask: int) -> None:
        if mask & (inotify.IN_Q_OVERFLOW | inotify.WATCH_GONE) or not name:
            self._full = True  # overflow, or an event on the directory itself (chmod, deleted, moved)
            if mask & inotify.WATCH_GONE and self._watcher is not None:
                self._watcher.close()  # re-created by _run once the directory is back
                self._watcher = None
        elif is_manifest_name(name):
            self._pending[name] = self._pending.get(name, 0) | mask
        else:
            return
        self._wake.set()

    def _start_watch(self, *, warn: bool) -> bool:
        if not os.path.isdir(self._dir):
            return False
        watcher = inotify.InotifyWatcher(self._dir, self._on_event)
        try:
            watcher.start()
        except OSError as exc:
            level = logging.WARNING if warn else logging.DEBUG
            log.log(level, "Cannot watch the manifest dir, relying on rescans directory=%s error=%s", self._dir, exc)
            return False
        self._watcher = watcher
        return True

    def _check_dir(self) -> tuple[str | None, bool]:
        """(problem, missing): a directory-wide error, and whether the directory is absent."""
        d = self._dir
        try:
            st = os.stat(d)
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError)
            fix = f"create it: mkdir -m 0755 {d}" if missing else f"check it with: ls -ld {d}"
            return f"{d}: cannot use the manifest directory ({exc.strerror}); {fix}", missing
        if not stat.S_ISDIR(st.st_mode):
            return f"{d}: the manifest path is not a directory; replace it with one: mkdir -m 0755 {d}", False
        problem = _unsafe("the directory", d, st)
        return (f"{d}: refused all manifests in this directory: {problem}" if problem else None), False

    async def _pass(self, pending: dict[str, int] | None) -> None:
        """One pass: a full scan when ``pending`` is None, else only the entries named by inotify events."""
        self._dir_error, missing = self._check_dir()
        names = pending or {}
        if self._dir_error is None and pending is None:
            try:
                with os.scandir(self._dir) as it:
                    names = {e.name: 0 for e in it if is_manifest_name(e.name) and not e.is_dir(follow_symlinks=False)}
            except OSError as exc:
                self._dir_error = f"{self._dir}: cannot list the manifest directory ({exc.strerror})"
        if self._dir_error is not None and (pending is not None or not missing):
            self._full = self._full or missing  # a vanished directory removes its pods, in a full pass
            self._wake.set()
            self._publish([])  # unsafe or unreadable: refuse everything, keep the pods we have
            return
        # every file's updates, in order, published once at the end: errors are computed once per pass, not once
        # per file (500 files made a rescan quadratic)
        updates: list[PodUpdate] = []
        if pending is None:
            for path in sorted(set(self._files) - {os.path.join(self._dir, name) for name in names}):
                updates += self._remove(path)
        for name, mask in sorted(names.items()):
            path = os.path.join(self._dir, name)
            try:
                updates += await self._refresh(path, mask)
            except Exception:  # one bad file must not stop the others
                log.exception("Manifest file processing failed file=%s", path)
        self._publish(updates)

    async def _refresh(self, path: str, mask: int) -> list[PodUpdate]:
        """Re-read one file; returns its updates (the caller publishes them)."""
        if mask & ~inotify.IN_ISDIR == inotify.IN_CREATE:
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                    return []  # still being written: wait for IN_CLOSE_WRITE (a new hard link is read now)
        try:
            opened = _open_checked(path)
        except ManifestError as exc:
            self._files.setdefault(path, _FileState()).error = str(exc)
            return []
        if opened is None:
            return self._remove(path) if path in self._files else []
        fd, size = opened
        known = self._files[path].digest if path in self._files else None
        if size > THREAD_THRESHOLD:
            digest, pods, error = await asyncio.to_thread(_read_and_parse, fd, path, self.node_name, known)
        else:
            digest, pods, error = _read_and_parse(fd, path, self.node_name, known)
        state = self._files.setdefault(path, _FileState())
        updates: list[PodUpdate] = []
        if pods is not None:
            state.digest, state.parse_error, state.error = digest, None, None
            updates = self._apply(path, pods)
            log.info("Manifest loaded file=%s pods=%d updates=%d", path, len(pods), len(updates))
        elif error is None:
            state.error = state.parse_error  # identical content: only a safety error can clear
        elif digest is not None:
            state.digest, state.parse_error, state.error = digest, error, error
        else:
            state.error = error  # not fully read: the last content read stays as it was
        return updates

    def _remove(self, path: str) -> list[PodUpdate]:
        updates = self._apply(path, {})
        del self._files[path]
        log.info("Manifest removed file=%s updates=%d", path, len(updates))
        return updates

    def _apply(self, path: str, new: dict[str, Pod]) -> list[PodUpdate]:
        """Make ``new`` the pods of ``path``; returns the updates (REMOVEs before ADDs, hand-overs last)."""
        state = self._files[path]
        old, state.pods = state.pods, dict(new)
        for key in new.keys() - state.seq.keys():
            self._seq += 1
            state.seq[key] = self._seq
        state.seq = {key: state.seq[key] for key in new}
        updates: list[PodUpdate] = []
        released: list[str] = []
        for key, pod in old.items():
            if key not in new and self._owners.get(key) == path:
                updates.append(PodUpdate(UpdateOp.REMOVE, pod))
                del self._owners[key], self._pods[pod.uid]
                released.append(key)
        for key, pod in new.items():
            owner = self._owners.get(key)
            if owner is None:
                self._owners[key], self._pods[pod.uid] = path, pod
                updates.append(PodUpdate(UpdateOp.ADD, pod))
            elif owner == path:
                if old[key].uid != pod.uid:  # spec edit: a new pod
                    updates += [PodUpdate(UpdateOp.REMOVE, old[key]), PodUpdate(UpdateOp.ADD, pod)]
                    del self._pods[old[key].uid]
                elif old[key] != pod:  # labels/annotations only
                    updates.append(PodUpdate(UpdateOp.UPDATE, pod))
                self._pods[pod.uid] = pod
        for key in released:  # the earliest other file that defines the key inherits it
            waiting = [(st.seq[key], p) for p, st in self._files.items() if key in st.pods]
            if waiting:
                heir = min(waiting)[1]
                self._owners[key], pod = heir, self._files[heir].pods[key]
                self._pods[pod.uid] = pod
                updates.append(PodUpdate(UpdateOp.ADD, pod))
        return updates

    def _compute_errors(self) -> dict[str, str]:
        out = {self._dir: self._dir_error} if self._dir_error is not None else {}
        for path, state in sorted(self._files.items()):
            messages = [state.error] if state.error else []
            for key in state.pods:
                if (owner := self._owners.get(key)) not in (None, path):
                    messages.append(f"pod {key} is already defined in {owner}; refusing the copy in {path}")
            if messages:
                out[path] = "; ".join(messages)
        return out

    def _publish(self, updates: list[PodUpdate]) -> None:
        """Queue updates, log error changes, and wake wait_for_change() callers if anything changed."""
        for update in updates:
            self._updates.put_nowait(update)
            pod = update.pod
            log.info("Pod update queued op=%s pod=%s uid=%s file=%s", update.op, pod.key, pod.uid, pod.source)
        errors = self._compute_errors()
        for path, message in errors.items():
            if self._errors.get(path) != message:
                log.warning("Manifest not applied file=%s error=%s", path, message)
                if self.on_refused is not None:
                    self.on_refused(path, message)
        for path in self._errors.keys() - errors.keys():
            log.info("Manifest error cleared file=%s", path)
        changed = bool(updates) or errors != self._errors
        self._errors = errors
        if changed:
            self._changed.set()
            self._changed = asyncio.Event()
