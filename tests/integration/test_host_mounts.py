"""Host tmpfs mounts through the real zygote (ops ``mount_tmpfs`` and ``umount``), the volumes' prepare/cleanup on
real mounts, and ``minikubelet reset`` removing leftover mounts and ``<data-dir>/pods/``.

Every mount is made under a fresh temp dir and unmounted (and the dir removed) on teardown, also on failure."""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from minikubelet.errors import VolumeError
from minikubelet.manifests.manifest import pod_from_dict
from minikubelet.network.bridge import BridgeNetwork
from minikubelet.network.ipam import Ipam
from minikubelet.nsexec import hostmount
from minikubelet.pod import volumes
from minikubelet.runtime.linux import LinuxRuntime
from minikubelet.runtime.zygote import Zygote
from tests.harness import DaemonHarness

pytestmark = pytest.mark.root

MiB = 1024 * 1024


def mounts_below(root: Path) -> list[tuple[str, str, str, str]]:
    """(mount point, fs type, mount options, super options) of every mount at or below ``root``, from mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, sup = left.split(), right.split()
            point = fields[4]
            if point == str(root) or point.startswith(f"{root}/"):
                found.append((point, sup[0], fields[5], sup[2] if len(sup) > 2 else ""))
    return found


@pytest.fixture
def scratch(run_id: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=f"mk-{run_id}-mounts-"))
    try:
        yield root
    finally:
        for point, *_ in sorted(mounts_below(root), key=lambda m: -m[0].count("/")):
            hostmount.umount(point)
        left = mounts_below(root)
        shutil.rmtree(root, ignore_errors=True)
        assert left == [], f"mounts left under {root}: {left}"


@pytest.fixture
async def runtime(scratch: Path) -> AsyncIterator[LinuxRuntime]:
    zygote = Zygote()
    await zygote.start()
    cidr = ipaddress.IPv4Network("10.254.254.0/24")  # never opened: these tests need no network
    rt = LinuxRuntime(scratch / "run", scratch / "logs", zygote, BridgeNetwork("mkt-unused", cidr),
                      Ipam(cidr, scratch / "ipam.json"))
    try:
        yield rt
    finally:
        await zygote.stop()


async def test_tmpfs_size_limit_mode_and_umount(runtime: LinuxRuntime, scratch: Path) -> None:
    target = scratch / "mem"
    target.mkdir()
    await runtime.mount_tmpfs(target, 1 * MiB, "1777")
    [(point, fstype, opts, sup)] = mounts_below(target)
    assert (point, fstype) == (str(target), "tmpfs")
    assert {"nosuid", "nodev"} <= set(opts.split(",")), opts
    assert "size=1024k" in sup.split(","), sup
    assert stat.S_IMODE(target.stat().st_mode) == 0o1777
    with pytest.raises(OSError) as info, open(target / "big", "wb") as f:  # noqa: PT012 - the write and its flush
        for _ in range(4):
            f.write(b"\0" * MiB)
            f.flush()
    assert info.value.errno == errno.ENOSPC
    await runtime.umount([target])
    assert mounts_below(target) == []
    assert not (target / "big").exists(), "the tmpfs's file went with it"
    await runtime.umount([target, scratch / "never-made"])  # not mounted, and missing: both ignored


async def test_zero_size_is_the_kernel_default_and_stacked_mounts_all_go(runtime: LinuxRuntime,
                                                                          scratch: Path) -> None:
    target = scratch / "stacked"
    target.mkdir()
    await runtime.mount_tmpfs(target, 0, "0755")
    await runtime.mount_tmpfs(target, 2 * MiB)
    found = mounts_below(target)
    assert len(found) == 2 and all(m[1] == "tmpfs" for m in found)
    assert stat.S_IMODE(target.stat().st_mode) == 0o1777  # the top one
    await runtime.umount([target])
    assert mounts_below(target) == []


async def test_mount_errors_name_the_target(runtime: LinuxRuntime, scratch: Path) -> None:
    with pytest.raises(VolumeError, match=f"mount tmpfs on {scratch / 'missing'}: the target is not a directory"):
        await runtime.mount_tmpfs(scratch / "missing", MiB)
    (scratch / "file").write_text("x")
    with pytest.raises(VolumeError, match="is not a directory"):
        await runtime.mount_tmpfs(scratch / "file", MiB)
    assert mounts_below(scratch) == []


async def test_prepare_shm_and_cleanup_on_real_mounts(runtime: LinuxRuntime, scratch: Path) -> None:
    data_dir = scratch / "data"
    pod = pod_from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols"},
        "spec": {
            "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        {"name": "disk", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "busybox:1.36",
                            "volumeMounts": [{"name": "mem", "mountPath": "/mem", "subPath": "sub"},
                                             {"name": "disk", "mountPath": "/disk"}]}],
        },
    }, "request", "node1")
    run_pod_dir = runtime.pod_dir(pod.uid)
    await volumes.prepare(pod, runtime, data_dir)
    await volumes.prepare(pod, runtime, data_dir)  # the worker's next sync: no second mount
    shm = await volumes.prepare_shm(runtime, run_pod_dir)
    assert shm == await volumes.prepare_shm(runtime, run_pod_dir)
    mem = volumes.volume_dir(data_dir, pod.uid, "mem")
    found = {m[0]: m for m in mounts_below(scratch)}
    assert sorted(found) == sorted([str(mem), str(shm)])
    assert "size=1024k" in found[str(mem)][3] and "size=65536k" in found[str(shm)][3]
    binds = volumes.binds_for(pod, "c", data_dir)
    assert binds[0]["source"] == str(mem / "sub") and os.path.isdir(mem / "sub")  # made inside the tmpfs
    (volumes.volume_dir(data_dir, pod.uid, "disk") / "f").write_text("x")

    await volumes.cleanup(pod.uid, runtime, data_dir, run_pod_dir)
    assert mounts_below(scratch) == []
    assert not volumes.data_pod_dir(data_dir, pod.uid).exists()
    await volumes.cleanup(pod.uid, runtime, data_dir, run_pod_dir)  # idempotent


def test_reset_unmounts_leftovers_and_removes_data_pods(run_id: str, scratch: Path) -> None:
    harness = DaemonHarness(scratch, run_id)  # never started: what a killed daemon left behind
    uid = "0123456789abcdef0123456789abcdef"
    mem = harness.data_dir / "pods" / uid / "volumes" / "mem"
    shm = harness.run_dir / "pods" / uid / "shm"
    upper = harness.data_dir / "pods" / uid / "containers" / "c.0" / "upper"
    for d in (mem, shm, upper):
        d.mkdir(parents=True)
    (upper / "file").write_text("x")
    hostmount.mount_tmpfs(str(mem), MiB)
    hostmount.mount_tmpfs(str(shm), 64 * MiB)
    (mem / "in-tmpfs").write_text("x")
    assert len(mounts_below(scratch)) == 2

    result = harness.reset()
    assert result.returncode == 0, result.stderr[-3000:]
    assert mounts_below(scratch) == [], result.stderr[-3000:]
    assert not (harness.data_dir / "pods").exists()
    assert not (harness.run_dir / "pods").exists()
    assert "Unmounted host mounts count=2" in result.stderr, result.stderr[-3000:]
