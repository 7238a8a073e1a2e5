"""Volumes without root: validation messages (manifests/volumes.py), parsing, host path checks, subPath resolution,
binds order and the prepare/cleanup calls (pod/volumes.py) against a fake runtime; hostmount's argument checks."""

from __future__ import annotations

import copy
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from minikubelet.errors import ContainerStartError, ManifestError, VolumeError
from minikubelet.manifests.manifest import load_pods, pod_from_dict
from minikubelet.nsexec import hostmount
from minikubelet.pod import volumes as vol
from minikubelet.pod.spec import Pod

NODE = "node1"
SUPPORTED = "this node supports emptyDir and hostPath volumes only"


def pod_dict(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], **container: Any) -> dict[str, Any]:
    c = {"name": "c", "image": "busybox:1.36", "volumeMounts": mounts, **container}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"volumes": volumes, "containers": [c]}}


def problems(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(ManifestError) as info:
        pod_from_dict(obj, "request", NODE)
    return info.value.problems


def make_pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None, **container: Any) -> Pod:
    return pod_from_dict(pod_dict(volumes, mounts or [], **container), "request", NODE)


class FakeRuntime:
    def __init__(self) -> None:
        self.mounts: list[tuple[Path, int, str]] = []
        self.umounts: list[list[Path]] = []

    async def mount_tmpfs(self, target: Path, size: int, mode: str = "1777") -> None:
        self.mounts.append((target, size, mode))

    async def umount(self, targets: list[Path]) -> None:
        self.umounts.append(list(targets))


# --- validation ------------------------------------------------------------------------------------------------------

V0 = "spec.volumes[0]"
M0 = "spec.containers[0].volumeMounts[0]"
CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]] = {
    "config-map": ([{"name": "v", "configMap": {"name": "x"}}], [],
                   [f"{V0}.configMap: Forbidden: {SUPPORTED}"]),
    "secret-mounted": ([{"name": "v", "secret": {"secretName": "s"}}], [{"name": "v", "mountPath": "/s"}],
                       [f"{V0}.secret: Forbidden: {SUPPORTED}", f'{M0}.name: Not found: "v"']),
    "pvc-and-nfs": ([{"name": "v", "persistentVolumeClaim": {"claimName": "c"}, "nfs": {"server": "s", "path": "/"}}],
                    [], [f"{V0}.nfs: Forbidden: {SUPPORTED}", f"{V0}.persistentVolumeClaim: Forbidden: {SUPPORTED}"]),
    "two-sources": ([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}], [],
                    [f"{V0}.hostPath: Forbidden: may not specify more than 1 volume type"]),
    "bad-name": ([{"name": "V_1", "emptyDir": {}}], [],
                 [f'{V0}.name: Invalid value: "V_1": a lowercase RFC 1123 label must consist of']),
    "no-name": ([{"emptyDir": {}}], [], [f"{V0}.name: Required value"]),
    "duplicate-name": ([{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}], [],
                       ['spec.volumes[1].name: Duplicate value: "v"']),
    "medium": ([{"name": "v", "emptyDir": {"medium": "HugePages"}}], [],
               [f'{V0}.emptyDir.medium: Unsupported value: "HugePages": supported values: "", "Memory"']),
    "size-limit-garbage": ([{"name": "v", "emptyDir": {"sizeLimit": "lots"}}], [],
                           [f'{V0}.emptyDir.sizeLimit: Invalid value: "lots": quantities must match the regular']),
    "size-limit-negative": ([{"name": "v", "emptyDir": {"sizeLimit": "-1Mi"}}], [],
                            [f"{V0}.emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity"]),
    "host-path-missing": ([{"name": "v", "hostPath": {}}], [], [f"{V0}.hostPath.path: Required value"]),
    "host-path-relative": ([{"name": "v", "hostPath": {"path": "srv/data"}}], [],
                           [f'{V0}.hostPath.path: Invalid value: "srv/data": must be an absolute path']),
    "host-path-backsteps": ([{"name": "v", "hostPath": {"path": "/srv/../../etc"}}], [],
                            [f"{V0}.hostPath.path: Invalid value: \"/srv/../../etc\": must not contain '..'"]),
    "host-path-type": ([{"name": "v", "hostPath": {"path": "/srv", "type": "Dir"}}], [],
                       [f'{V0}.hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", '
                        '"CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"']),
    "mount-unknown": ([{"name": "v", "emptyDir": {}}], [{"name": "x", "mountPath": "/x"}],
                      [f'{M0}.name: Not found: "x"']),
    "mount-no-name": ([], [{"mountPath": "/x"}], [f"{M0}.name: Required value", f'{M0}.name: Not found: ""']),
    "mount-no-path": ([{"name": "v", "emptyDir": {}}], [{"name": "v"}], [f"{M0}.mountPath: Required value"]),
    "mount-relative": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "data"}],
                       [f'{M0}.mountPath: Invalid value: "data": must be an absolute path']),
    "mount-backsteps": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/a/../b"}],
                        [f"{M0}.mountPath: Invalid value: \"/a/../b\": must not contain '..'"]),
    "mount-twice": ([{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}],
                    [{"name": "v", "mountPath": "/d"}, {"name": "w", "mountPath": "/d/"}],
                    ['spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d/": must be unique']),
    "sub-path-absolute": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/d", "subPath": "/etc"}],
                          [f'{M0}.subPath: Invalid value: "/etc": must be a relative path']),
    "sub-path-backsteps": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/d", "subPath": "a/../.."}],
                           [f"{M0}.subPath: Invalid value: \"a/../..\": must not contain '..'"]),
    "propagation-host": ([{"name": "v", "emptyDir": {}}],
                         [{"name": "v", "mountPath": "/d", "mountPropagation": "HostToContainer"}],
                         [f"{M0}.mountPropagation: Forbidden: this node mounts volumes private to the container"]),
    "propagation-bad": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/d", "mountPropagation": "x"}],
                        [f'{M0}.mountPropagation: Unsupported value: "x": supported values: "Bidirectional", '
                         '"HostToContainer", "None"']),
    "sub-path-expr": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/d", "subPathExpr": "$(X)"}],
                      [f"{M0}.subPathExpr: Forbidden: subPathExpr is not supported by minikubelet yet; use subPath"]),
    "read-only-type": ([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/d", "readOnly": "yes"}],
                       [f'{M0}.readOnly: Invalid value: "yes": must be a boolean (true or false)']),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_refused(case: str) -> None:
    volumes, mounts, expected = CASES[case]
    found = problems(pod_dict(volumes, mounts))
    assert len(found) == len(expected), found
    for got, want in zip(sorted(found), sorted(expected), strict=True):
        assert got.startswith(want), (got, want)


def test_volume_devices_still_refused() -> None:
    obj = pod_dict([], [], volumeDevices=[{"name": "v", "devicePath": "/dev/xvda"}])
    assert problems(obj) == ["spec.containers[0].volumeDevices: Forbidden: volumeDevices (raw block devices) is not "
                             "supported by minikubelet yet; use volumeMounts"]


def test_init_container_mounts_are_checked() -> None:
    obj = pod_dict([], [])
    obj["spec"]["initContainers"] = [{"name": "i", "image": "busybox:1.36",
                                      "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]
    assert problems(obj) == ['spec.initContainers[0].volumeMounts[0].name: Not found: "nope"']


def test_manifest_file_errors_carry_the_line() -> None:
    text = b"""apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  volumes:
  - name: conf
    configMap:
      name: x
  containers:
  - name: c
    image: busybox:1.36
"""
    with pytest.raises(ManifestError) as info:
        load_pods("/m/p.yaml", text, NODE)
    assert info.value.problems == [f"line 8: spec.volumes[0].configMap: Forbidden: {SUPPORTED}"]


def test_accepted_and_defaulted_as_the_api_server() -> None:
    obj = pod_dict([{"name": "scratch"}, {"name": "logs", "hostPath": {"path": "/var/log"}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
                   [{"name": "scratch", "mountPath": "/scratch", "mountPropagation": "None"},
                    {"name": "logs", "mountPath": "/logs", "readOnly": True, "subPath": "app"}])
    before = copy.deepcopy(obj)
    pod = pod_from_dict(obj, "request", NODE)
    assert obj == before
    spec = pod.manifest["spec"]
    assert spec["volumes"][0] == {"name": "scratch", "emptyDir": {}}  # SetDefaults_Volume
    assert spec["volumes"][1]["hostPath"] == {"path": "/var/log", "type": ""}
    assert vol.volumes_of(pod.manifest) == [
        vol.Volume("scratch", "emptyDir"),
        vol.Volume("logs", "hostPath", path="/var/log"),
        vol.Volume("mem", "emptyDir", medium="Memory", size_limit=64 * 1024 * 1024),
    ]
    assert vol.mounts_of(pod.manifest, "c") == [vol.VolumeMount("scratch", "/scratch"),
                                                vol.VolumeMount("logs", "/logs", "app", True)]
    assert vol.mounts_of(pod.manifest, "other") == []


# --- tmpfs size ------------------------------------------------------------------------------------------------------


def test_memory_size_is_the_smaller_of_size_limit_and_pod_limit() -> None:
    mem = {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    limited: dict[str, Any] = {"resources": {"limits": {"memory": "32Mi"}}}
    unlimited = make_pod([mem])
    assert vol.memory_size(vol.volumes_of(unlimited.manifest)[0], unlimited) == 64 << 20
    small = make_pod([mem], None, **limited)
    assert vol.memory_size(vol.volumes_of(small.manifest)[0], small) == 32 << 20
    no_limit = make_pod([{"name": "m", "emptyDir": {"medium": "Memory"}}])
    assert vol.memory_size(vol.volumes_of(no_limit.manifest)[0], no_limit) == 0  # the kernel's default


# --- prepare ---------------------------------------------------------------------------------------------------------


async def test_prepare_makes_empty_dirs_and_mounts_memory_once(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pod = make_pod([{"name": "disk", "emptyDir": {}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}])
    rt = FakeRuntime()
    old = os.umask(0o077)
    try:
        await vol.prepare(pod, rt, tmp_path)
    finally:
        os.umask(old)
    disk = vol.volume_dir(tmp_path, pod.uid, "disk")
    mem = vol.volume_dir(tmp_path, pod.uid, "mem")
    assert disk == tmp_path / "pods" / pod.uid / "volumes" / "disk"
    assert vol.data_pod_dir(tmp_path, pod.uid) == tmp_path / "pods" / pod.uid
    assert stat.S_IMODE(disk.stat().st_mode) == 0o777 and stat.S_IMODE(mem.stat().st_mode) == 0o777
    assert rt.mounts == [(mem, 1 << 20, "1777")]
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mem)
    await vol.prepare(pod, rt, tmp_path)
    assert len(rt.mounts) == 1, "a mounted tmpfs is not mounted again"


async def test_prepare_shm(tmp_path: Path) -> None:
    rt = FakeRuntime()
    shm = await vol.prepare_shm(rt, tmp_path / "run-pod")
    assert shm == tmp_path / "run-pod" / "shm" and shm.is_dir()
    assert rt.mounts == [(shm, 64 * 1024 * 1024, "1777")]


def host_pod(path: Path, host_type: str) -> Pod:
    return make_pod([{"name": "h", "hostPath": {"path": str(path), "type": host_type}}])


async def failure(pod: Pod, tmp_path: Path) -> VolumeError:
    with pytest.raises(VolumeError) as info:
        await vol.prepare(pod, FakeRuntime(), tmp_path)
    return info.value


@pytest.mark.parametrize(("host_type", "what"), [("Directory", "a directory"), ("File", "a file"),
                                                  ("Socket", "a socket file"), ("CharDevice", "a character device"),
                                                  ("BlockDevice", "a block device")])
async def test_host_path_type_checks(tmp_path: Path, host_type: str, what: str) -> None:
    missing = tmp_path / "missing"
    e = await failure(host_pod(missing, host_type), tmp_path)
    assert e.volume == "h"
    assert e.message == f"hostPath type check failed: {missing} is not {what}"
    assert e.setup_failed() == f'MountVolume.SetUp failed for volume "h" : {e.message}'


async def test_host_path_types_that_match(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")  # stat follows symlinks, as the kubelet's does
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "s"))
        for name, host_type in [("f", "File"), ("d", "Directory"), ("link", "Directory"), ("s", "Socket"),
                                ("f", ""), ("f", "FileOrCreate"), ("d", "DirectoryOrCreate")]:
            await vol.prepare(host_pod(tmp_path / name, host_type), FakeRuntime(), tmp_path)
    await vol.prepare(host_pod(Path("/dev/null"), "CharDevice"), FakeRuntime(), tmp_path)
    e = await failure(host_pod(tmp_path / "f", "Directory"), tmp_path)
    assert e.message == f"hostPath type check failed: {tmp_path / 'f'} is not a directory"
    e = await failure(host_pod(tmp_path / "d", "FileOrCreate"), tmp_path)
    assert e.message == f"hostPath type check failed: {tmp_path / 'd'} is not a file"


async def test_host_path_or_create(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        await vol.prepare(host_pod(tmp_path / "a" / "b", "DirectoryOrCreate"), FakeRuntime(), tmp_path)
        await vol.prepare(host_pod(tmp_path / "a" / "f", "FileOrCreate"), FakeRuntime(), tmp_path)
        await vol.prepare(host_pod(tmp_path / "c", ""), FakeRuntime(), tmp_path)  # containerd makes it
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    f = tmp_path / "a" / "f"
    assert f.is_file() and f.read_bytes() == b"" and stat.S_IMODE(f.stat().st_mode) == 0o644
    assert (tmp_path / "c").is_dir()
    e = await failure(host_pod(tmp_path / "nodir" / "f", "FileOrCreate"), tmp_path)
    assert e.message == f"open {tmp_path / 'nodir' / 'f'}: no such file or directory"  # Go's OpenFile error


# --- binds and subPath -----------------------------------------------------------------------------------------------


def test_binds_in_spec_order_sorted_by_depth(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    pod = make_pod([{"name": "a", "emptyDir": {}}, {"name": "h", "hostPath": {"path": str(host)}}],
                   [{"name": "a", "mountPath": "/data/cache/x"}, {"name": "h", "mountPath": "/data", "readOnly": True},
                    {"name": "a", "mountPath": "/data/cache/y"}, {"name": "h", "mountPath": "/srv"}])
    a = str(vol.volume_dir(tmp_path, pod.uid, "a"))
    assert vol.binds_for(pod, "c", tmp_path) == [
        {"source": str(host), "target": "/data", "readonly": True},
        {"source": str(host), "target": "/srv", "readonly": False},
        {"source": a, "target": "/data/cache/x", "readonly": False},
        {"source": a, "target": "/data/cache/y", "readonly": False},
    ]
    assert vol.binds_for(pod, "not-there", tmp_path) == []


def test_sub_path_is_made_with_the_volume_mode(tmp_path: Path) -> None:
    pod = make_pod([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/conf", "subPath": "x/y"},
                                                       {"name": "a", "mountPath": "/f", "subPath": "file"}])
    root = vol.volume_dir(tmp_path, pod.uid, "a")
    root.mkdir(parents=True)
    os.chmod(root, 0o777)
    (root / "file").write_text("f")
    binds = vol.binds_for(pod, "c", tmp_path)
    assert binds[0]["source"] == str(root / "x" / "y") and binds[1]["source"] == str(root / "file")
    assert stat.S_IMODE((root / "x").stat().st_mode) == 0o777
    assert stat.S_IMODE((root / "x" / "y").stat().st_mode) == 0o777


def test_sub_path_symlinks_inside_are_followed(tmp_path: Path) -> None:
    pod = make_pod([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/d", "subPath": "link/new"}])
    root = vol.volume_dir(tmp_path, pod.uid, "a")
    (root / "real").mkdir(parents=True)
    (root / "link").symlink_to("real")
    assert vol.binds_for(pod, "c", tmp_path)[0]["source"] == str(root / "real" / "new")
    assert (root / "real" / "new").is_dir()


@pytest.mark.parametrize("sub", ["out", "out/deeper", "abs"])
def test_sub_path_escaping_the_volume_is_refused(tmp_path: Path, sub: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    pod = make_pod([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/d", "subPath": sub}])
    root = vol.volume_dir(tmp_path, pod.uid, "a")
    root.mkdir(parents=True)
    (root / "out").symlink_to("../../../../outside")
    (root / "abs").symlink_to(outside)
    with pytest.raises(ContainerStartError) as info:
        vol.binds_for(pod, "c", tmp_path)
    assert info.value.reason == "CreateContainerConfigError"
    assert str(info.value) in ('failed to prepare subPath for volumeMount "a" of container "c"',
                               'failed to create subPath directory for volumeMount "a" of container "c"')
    assert str(tmp_path) not in str(info.value), "host paths stay out of user messages, as the kubelet's"
    assert list(outside.iterdir()) == [], "nothing was made outside the volume"


# --- mountinfo and cleanup -------------------------------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /data/pods/u1/volumes/mem rw,nosuid,nodev shared:20 - tmpfs tmpfs rw,size=1024k
41 22 0:51 / /data/pods/u1/volumes/with\\040space rw shared:21 - tmpfs tmpfs rw
42 40 0:52 / /data/pods/u1/volumes/mem/inner rw shared:22 - tmpfs tmpfs rw
43 22 0:53 / /data/pods/u10/volumes/mem rw shared:23 - tmpfs tmpfs rw
44 22 0:54 / /run/pods/u1/shm rw shared:24 - tmpfs tmpfs rw,size=65536k
"""


def test_mounts_under_parses_mountinfo(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert vol.mount_points(str(info))[1] == ("/data/pods/u1/volumes/mem", "tmpfs")
    found = vol.mounts_under([Path("/data/pods/u1"), Path("/run/pods/u1/shm")], str(info))
    assert found == [Path("/data/pods/u1/volumes/mem/inner"), Path("/data/pods/u1/volumes/mem"),
                     Path("/data/pods/u1/volumes/with space"), Path("/run/pods/u1/shm")]  # deepest first, not u10
    (tmp_path / "run").symlink_to("/run")  # as /var/run -> /run: mountinfo lists the real path
    assert vol.mounts_under([tmp_path / "run" / "pods" / "u1"], str(info)) == [Path("/run/pods/u1/shm")]


async def test_cleanup_removes_the_data_pod_dir(tmp_path: Path) -> None:
    pod = make_pod([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/d", "subPath": "s"}])
    rt = FakeRuntime()
    await vol.prepare(pod, rt, tmp_path)
    vol.binds_for(pod, "c", tmp_path)
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "precious").write_text("x")
    (vol.volume_dir(tmp_path, pod.uid, "a") / "s" / "link").symlink_to(outside)
    await vol.cleanup(pod.uid, rt, tmp_path, tmp_path / "run" / pod.uid)
    assert not vol.data_pod_dir(tmp_path, pod.uid).exists()
    assert (outside / "precious").exists(), "a symlink in a volume is removed, never followed"
    assert rt.umounts == [], "nothing was mounted here, so nothing to unmount"
    await vol.cleanup(pod.uid, rt, tmp_path, tmp_path / "run" / pod.uid)  # idempotent


async def test_cleanup_keeps_everything_when_a_mount_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pod_dir = vol.data_pod_dir(tmp_path, "u1")
    (pod_dir / "volumes" / "mem").mkdir(parents=True)
    monkeypatch.setattr(vol, "mounts_under", lambda roots, mountinfo="": [pod_dir / "volumes" / "mem"])
    rt = FakeRuntime()
    with pytest.raises(VolumeError, match="still mounted after umount"):
        await vol.cleanup("u1", rt, tmp_path, tmp_path / "run" / "u1")
    assert rt.umounts == [[pod_dir / "volumes" / "mem"]]
    assert pod_dir.exists()


# --- hostmount (no syscall reached) ----------------------------------------------------------------------------------


def test_tmpfs_options() -> None:
    assert hostmount.tmpfs_options(0, "1777") == "mode=1777"
    assert hostmount.tmpfs_options(65536, "0755") == "mode=0755,size=65536"


@pytest.mark.parametrize(("target", "size", "mode", "what"), [
    ("rel/dir", 0, "1777", "absolute"), ("/", -1, "1777", "size"), ("/", True, "1777", "size"),
    ("/", 0, "rwx", "mode"), ("/", 0, "17777", "mode"), ("/nonexistent-mk-dir", 0, "1777", "not a directory"),
])
def test_mount_tmpfs_refuses_bad_requests(target: str, size: Any, mode: str, what: str) -> None:
    with pytest.raises(OSError, match=what) as info:
        hostmount.mount_tmpfs(target, size, mode)
    assert target in str(info.value)
