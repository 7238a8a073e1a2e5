"""A full disk under the run and data directories (issue 9, point 1): no pause leaks, every failure is a clear error
and a retry, and everything recovers once space returns, with nothing lost.

Each test mounts a small tmpfs (2 MB) on the daemon's run and data directories before it starts, fills it to ENOSPC
with one file, and frees it by removing that file. Teardown frees the space, resets the daemon, checks that nothing
is left and unmounts (also on failure).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minikubelet.runtime.owned import owned_pauses
from tests.harness import DaemonHarness, alive, find_events, pod_yaml, running_daemon, sh

pytestmark = pytest.mark.root

SLEEPER = [sh("c", "trap 'exit 0' TERM; while :; do sleep 1; done")]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Disk:
    """A 2 MB tmpfs on each of ``dirs``; ``fill()`` takes all its space, ``free()`` gives it back."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self.mounted: list[Path] = []

    def mount(self) -> None:
        for d in self.dirs:
            d.mkdir(mode=0o700)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(d)], check=True)
            self.mounted.append(d)

    def fill(self) -> None:
        for d in self.mounted:
            fd = os.open(d / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                for size in (65536, 1):  # then the last bytes, one at a time
                    with contextlib.suppress(OSError):
                        while True:
                            os.write(fd, b"\0" * size)
            finally:
                os.close(fd)
            with pytest.raises(OSError) as e:
                (d / ".probe").write_bytes(b"x")
            assert e.value.errno == errno.ENOSPC
            with contextlib.suppress(OSError):
                (d / ".probe").unlink()

    def free(self) -> None:
        for d in self.mounted:
            with contextlib.suppress(FileNotFoundError):
                (d / ".filler").unlink()

    def unmount(self) -> None:
        for d in reversed(self.mounted):
            if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(d)], capture_output=True)
        self.mounted.clear()


def compiled_pauses(run_dir: Path) -> list[int]:
    """The compiled pauses whose pod directory (their argv[1]) is under ``run_dir``: found without the daemon's
    own marker, so a leak shows whatever minikubelet believes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[0] == b"pause" and argv[1].startswith(f"{run_dir}/".encode()) \
                and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


@contextlib.contextmanager
def daemon_on_small_disk(run_id: str) -> Iterator[tuple[DaemonHarness, Disk]]:
    root = Path(tempfile.mkdtemp(prefix=f"mk-{run_id}-disk-"))
    harness = DaemonHarness(root, run_id)
    disk = Disk([harness.run_dir, harness.data_dir])
    pauses: list[int] = []
    try:
        disk.mount()
        harness.start()
        yield harness, disk
    finally:
        pauses = [pid for pid, _ in owned_pauses(harness.run_dir)] + harness.pod_processes()
        disk.free()
        with contextlib.suppress(subprocess.TimeoutExpired):
            harness.stop()
        if harness.proc is not None and harness.proc.poll() is None:
            harness.proc.kill()
            harness.proc.wait()
        result = harness.reset()
        left = harness.leftovers(pauses) + [f"marked pause {pid}" for pid, _ in owned_pauses(harness.run_dir)]
        disk.unmount()
        shutil.rmtree(root, ignore_errors=True)
        if result.returncode != 0 or left:
            pytest.fail(f"cleanup failed: reset rc={result.returncode} left={left}\n{result.stderr[-2000:]}")


@pytest.fixture
def small_disk(run_id: str) -> Iterator[tuple[DaemonHarness, Disk]]:
    with daemon_on_small_disk(run_id) as pair:
        yield pair


def api(daemon: DaemonHarness, method: str, path: str, body: Any = None,
        content_type: str = "application/merge-patch+json") -> tuple[int, dict[str, str], dict[str, Any]]:
    token = (daemon.data_dir / "token").read_text().strip()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", content_type)
    try:
        with _DIRECT.open(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_sandbox_start_on_a_full_run_dir_leaks_no_pause_and_recovers(small_disk: tuple[DaemonHarness, Disk]) -> None:
    daemon, disk = small_disk
    disk.fill()
    names = [f"full-{i}" for i in range(3)]
    for name in names:
        daemon.write(f"{name}.yaml", pod_yaml(name, SLEEPER))
    daemon.wait_for(lambda: all(find_events(daemon, n, "FailedCreatePodSandBox") for n in names), 20,
                    "a FailedCreatePodSandBox event for every pod")
    assert "Using the compiled pause" in daemon.log(), "scripts/test builds it"
    assert compiled_pauses(daemon.run_dir) == [], "every pause forked for a failed start is killed and reaped"
    assert owned_pauses(daemon.run_dir) == []
    message = find_events(daemon, names[0], "FailedCreatePodSandBox")[0]["message"]
    assert "the disk is full" in message, message
    for name in names:
        pod = daemon.pod(name)
        assert pod is not None and pod["status"]["phase"] == "Pending", pod

    disk.free()
    for name in names:
        daemon.wait_running(name, timeout=40)  # the sandbox back-off retries within 10 s
    pauses = owned_pauses(daemon.run_dir)
    assert sorted(pid for pid, _ in pauses) == sorted(daemon.pause_pid(n) for n in names), "one pause per pod"
    assert compiled_pauses(daemon.run_dir) == sorted(pid for pid, _ in pauses)


def test_reset_and_restart_find_a_pause_nothing_records(run_id: str) -> None:
    with running_daemon(run_id, "own-") as daemon, running_daemon(run_id, "other-") as other:
        daemon.write("lost.yaml", pod_yaml("lost", SLEEPER))
        daemon.write("lost2.yaml", pod_yaml("lost2", SLEEPER))
        other.write("kept.yaml", pod_yaml("kept", SLEEPER))
        pod = daemon.wait_running("lost")
        daemon.wait_running("lost2")
        other.wait_running("kept")
        lost, lost2, kept = daemon.pause_pid("lost"), daemon.pause_pid("lost2"), other.pause_pid("kept")
        daemon.stop(signal.SIGKILL)
        # as if the helper had died before it wrote anything: no trace, no record
        pod_dir = daemon.run_dir / "pods" / pod["metadata"]["uid"]
        for name in ("sandbox", "record.json"):
            (pod_dir / name).unlink()

        daemon.start()  # a restart kills the pause it cannot account for, and keeps the recorded one
        daemon.wait_for(lambda: not alive(lost), 10, "the unrecorded pause killed at start")
        assert "Killed a pod sandbox this daemon's run dir marks but nothing records" in daemon.log()
        daemon.wait_running("lost", timeout=30)  # its manifest is still there: it starts again, once
        assert daemon.pause_pid("lost") != lost and alive(lost2)

        daemon.stop(signal.SIGKILL)
        for d in (daemon.run_dir / "pods").iterdir():
            shutil.rmtree(d)  # nothing at all left to say what ran
        result = daemon.reset()
        assert result.returncode == 0, result.stderr[-2000:]
        assert owned_pauses(daemon.run_dir) == [], "reset finds every pause by its mark"
        assert not alive(lost2)
        assert alive(kept) and other.wait_running("kept"), "another daemon's pods are never touched"


def test_label_node_on_a_full_disk_is_a_clear_507_and_kubectl_retries(
        small_disk: tuple[DaemonHarness, Disk], kubectl_bin: Path, kubecachedir: Path) -> None:
    daemon, disk = small_disk
    disk.fill()
    code, headers, body = api(daemon, "PATCH", f"/api/v1/nodes/{daemon.node_name}",
                              {"metadata": {"labels": {"disk": "full"}}})
    assert code == 507, body
    assert body["kind"] == "Status" and body["reason"] == "InsufficientStorage", body
    assert "the disk is full" in body["message"] and "free space in" in body["message"], body
    assert headers.get("Retry-After") == "1"
    code, _, node = api(daemon, "GET", f"/api/v1/nodes/{daemon.node_name}")
    assert code == 200 and "disk" not in node["metadata"]["labels"], "nothing changed"

    env = dict(os.environ, KUBECONFIG=str(daemon.data_dir / "kubeconfig"), KUBECACHEDIR=str(kubecachedir))
    kubectl = [str(kubectl_bin), "label", "node", daemon.node_name]
    t0 = time.monotonic()
    failed = subprocess.run([*kubectl, "disk=full"], capture_output=True, text=True, env=env, timeout=60)
    assert failed.returncode != 0 and time.monotonic() - t0 >= 5, "kubectl retries while the disk stays full"
    assert "Error from server (InsufficientStorage)" in failed.stderr and "the disk is full" in failed.stderr, \
        failed.stderr

    freeing = threading.Timer(2.0, disk.free)
    freeing.start()
    try:
        ok = subprocess.run([*kubectl, "disk=free"], capture_output=True, text=True, env=env, timeout=60)
    finally:
        freeing.join()
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"node/{daemon.node_name} labeled"
    saved = json.loads((daemon.data_dir / "node-labels.json").read_text())
    assert saved["labels"] == {"disk": "free"}


def test_pod_deleted_on_a_full_disk_is_cleaned_up_once_space_returns(small_disk: tuple[DaemonHarness, Disk]) -> None:
    daemon, disk = small_disk
    daemon.write("gone.yaml", pod_yaml("gone", SLEEPER, terminationGracePeriodSeconds=2))
    daemon.write("stays.yaml", pod_yaml("stays", SLEEPER))
    pod = daemon.wait_running("gone")
    daemon.wait_running("stays")
    uid, pause = pod["metadata"]["uid"], daemon.pause_pid("gone")
    disk.fill()
    daemon.remove("gone.yaml")
    daemon.wait_for(lambda: not alive(pause), 20, "the deleted pod's processes stopped")
    daemon.wait_for(lambda: "Could not finish removing a deleted pod; retrying" in daemon.log(), 20,
                    "the clean-up retried")
    leases = json.loads((daemon.data_dir / "ipam.json").read_text())["leases"]
    assert uid in leases, "the lease is kept while it cannot be released"

    disk.free()
    daemon.wait_gone("gone", timeout=30)
    leases = json.loads((daemon.data_dir / "ipam.json").read_text())["leases"]
    assert uid not in leases and not (daemon.run_dir / "pods" / uid).exists(), "released without a restart"
    assert daemon.wait_running("stays")
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]


def test_restart_on_a_full_disk_keeps_the_old_kubeconfig_and_rewrites_it_later(
        small_disk: tuple[DaemonHarness, Disk]) -> None:
    daemon, disk = small_disk
    daemon.write("web.yaml", pod_yaml("web", SLEEPER))
    daemon.wait_running("web")
    pause = daemon.pause_pid("web")
    kubeconfig = daemon.data_dir / "kubeconfig"
    written = kubeconfig.read_text()
    kubeconfig.write_text(written.replace("current-context: minikubelet", "current-context: edited"))
    old = kubeconfig.read_text()
    daemon.stop(signal.SIGKILL)
    disk.fill()

    daemon.start()  # healthy, despite the full disk
    daemon.wait_running("web")
    assert daemon.pause_pid("web") == pause, "re-adopted, not restarted"
    log = daemon.log()
    assert "Could not write the kubeconfig; the old one is kept" in log and "free space on its disk" in log, log
    assert "Traceback" not in log, log[-3000:]
    assert kubeconfig.read_text() == old

    disk.free()
    daemon.wait_for(lambda: kubeconfig.read_text() == written, 15, "the kubeconfig rewritten once space returned")
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
