"""Containers on an image root filesystem, for real: a zygote, a pod sandbox and spawn requests with ``rootfs``.

The image is a tiny root built from the host's static busybox (two layers, so overlay stacking is seen); what the
container sees is read from its log file. No daemon: the request is the contract (tools/contract.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from minikubelet.errors import ContainerStartError
from minikubelet.runtime.zygote import Zygote
from tests.harness import BUSYBOX, REPO

pytestmark = pytest.mark.root

APPLETS = ("sh", "ls", "cat", "id", "httpd", "sleep", "touch", "stat", "grep", "echo", "readlink", "mount", "wc",
           "test", "env", "pwd", "mkdir", "head", "tr")
PASSWD = ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
          "app:x:1000:1000:app user:/home/app:/bin/sh\n")
GROUP = ("root:x:0:\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:root\n"
         "audio:x:29:app\n")


def busybox_layer(root: Path) -> Path:
    """The bottom layer: /bin/busybox and its applets, /etc/passwd, /etc/group, /etc/os-release; no /proc, /dev."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "etc" / "os-release").write_text('ID=bottom\nNAME="bottom layer"\n')
    (root / "etc" / "only-bottom").write_text("bottom\n")
    (root / "root").mkdir(mode=0o700)
    return root


def top_layer(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=minitest\nNAME="rootfs test image"\n')
    (root / "top-marker").write_text("from the top layer\n")
    return root


class Pod:
    """A pod sandbox started through a real zygote; ``run()`` starts containers on the test image."""

    def __init__(self, base: Path, zygote: Zygote) -> None:
        self.base = base
        self.zygote = zygote
        self.pod_dir = base / "run" / "pods" / "uid1"
        for sub in ("pids", "exits"):
            (self.pod_dir / sub).mkdir(parents=True)
        self.layers = [top_layer(base / "layers" / "top"), busybox_layer(base / "layers" / "bottom")]
        self.pause_pid = 0
        self.pause_start = 0
        self.instances = 0
        self.hosts = base / "run" / "etc-hosts"
        self.hosts.write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.5\tweb\n")

    async def start(self) -> None:
        reply = await self.zygote.request("sandbox", hostname="web", pod_dir=str(self.pod_dir), pause_bin=None)
        self.pause_pid, self.pause_start = int(reply["pid"]), int(reply["start"])

    def rootfs(self, **overrides: Any) -> dict[str, Any]:
        self.instances += 1
        box = self.base / "data" / f"c.{self.instances}"
        for part in ("upper", "work", "merged"):
            (box / part).mkdir(parents=True)
        spec: dict[str, Any] = {
            "lowerdirs": [str(p) for p in self.layers], "upper": str(box / "upper"), "work": str(box / "work"),
            "merged": str(box / "merged"), "readonly": False, "shm": "",
            "binds": [{"source": str(self.hosts), "target": "/etc/hosts", "readonly": False}],
            "image_user": "", "run_as_non_root": False, "pod_id": "web_default(uid1)", "container": "c",
        }
        spec.update(overrides)
        return spec

    async def spawn(self, argv: list[str], rootfs: dict[str, Any], uid: int | None = None, gid: int | None = None,
                    cwd: str | None = None, env: dict[str, str] | None = None) -> tuple[int, int, str, Path]:
        record = f"c.{self.instances}"
        log = self.base / "logs" / f"{record}.log"
        log.parent.mkdir(exist_ok=True)
        reply = await self.zygote.request(
            "spawn", pause_pid=self.pause_pid, pause_start=self.pause_start, pod_dir=str(self.pod_dir),
            record=record, argv=argv, env=env or {}, cwd=cwd, uid=uid, gid=gid, log_path=str(log), rootfs=rootfs,
        )
        return int(reply["pid"]), int(reply["start"]), record, log

    async def wait_exit(self, record: str, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        path = self.pod_dir / "exits" / record
        while not path.exists():
            assert time.monotonic() < deadline, f"{record} did not exit"
            await asyncio.sleep(0.02)
        return int(path.read_text().split()[0])

    async def run(self, script: str, uid: int | None = None, gid: int | None = None, cwd: str | None = None,
                  env: dict[str, str] | None = None, **overrides: Any) -> tuple[int, str]:
        """(exit code, output) of ``sh -c script`` in a fresh container on the image."""
        _, _, record, log = await self.spawn(["sh", "-c", script], self.rootfs(**overrides), uid, gid, cwd, env)
        code = await self.wait_exit(record)
        return code, log.read_text()

    async def stop(self) -> None:
        if not self.pause_pid:
            return
        with contextlib.suppress(ProcessLookupError):
            fd = os.pidfd_open(self.pause_pid)
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{self.pause_pid}") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def host_mounts_of(base: Path) -> list[str]:
    """The host's mounts that mention ``base`` (as mount point, source or overlay option): there must be none.

    Only ours: other tests on this machine may mount and unmount elsewhere meanwhile."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(base) in line]


@pytest.fixture
async def pod() -> AsyncIterator[Pod]:
    base = Path(tempfile.mkdtemp(prefix="mk-rootfs-"))
    zygote = Zygote()
    p = Pod(base, zygote)
    try:
        await zygote.start()
        await p.start()
        yield p
    finally:
        try:
            await p.stop()
            await zygote.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    assert host_mounts_of(base) == []
    assert not base.exists()


async def test_root_is_the_image_with_the_pods_proc(pod: Pod) -> None:
    code, out = await pod.run("cat /etc/os-release /etc/only-bottom /top-marker; echo; ls /; echo; ls /proc | "
                              "grep -E '^[0-9]+$' | tr '\\n' ' '; echo; cat /proc/1/comm; pwd")
    assert code == 0, out
    assert 'ID=minitest' in out and "bottom layer" not in out  # the top layer shadows the bottom
    assert "bottom\n" in out and "from the top layer" in out  # both layers are there
    listing = out.split("\n\n")[1].split()
    assert {"bin", "etc", "proc", "dev", "sys", "top-marker"} <= set(listing)
    assert "work" not in listing and "tmp" not in listing  # not the host's /
    pids = out.split("\n\n")[2].splitlines()[0].split()
    assert "1" in pids and len(pids) <= 5, pids  # pause, sh and the pipeline: the pod's PID namespace only
    assert "pause\n/\n" in out


async def test_dev_sys_and_masked_paths(pod: Pod) -> None:
    script = (
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done; "
        "for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; "
        "test -e /dev/core && echo core; stat -c '%a' /dev; "
        "grep -E ' /dev/(pts|shm|mqueue) | /sys | /proc/sys | /dev ' /proc/mounts; "
        "touch /sys/x 2>&1; echo kernel > /proc/sys/kernel/hostname 2>&1; "
        "echo keys=$(wc -c < /proc/keys) timer=$(wc -c < /proc/timer_list); ls -A /sys/firmware | wc -l; "
        "touch /sys/firmware/x 2>&1; echo hi > /dev/null && head -c 3 /dev/zero | wc -c"
    )
    code, out = await pod.run(script)
    assert code == 0, out
    for name, dev in (("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"),
                      ("tty", "5:0")):
        assert f"/dev/{name} character special file {dev} 666" in out, out
    for line in ("fd=/proc/self/fd", "stdin=/proc/self/fd/0", "stdout=/proc/self/fd/1", "stderr=/proc/self/fd/2",
                 "ptmx=pts/ptmx"):
        assert line in out
    assert ("core\n" in out) == os.path.exists("/proc/kcore")
    mounts = {line.split()[1]: line.split() for line in out.splitlines() if line.count(" ") >= 5}
    assert mounts["/dev"][2] == "tmpfs" and "755\n" in out
    assert mounts["/dev/pts"][2] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][3]
    assert mounts["/dev/shm"][2] == "tmpfs" and mounts["/dev/mqueue"][2] == "mqueue"
    assert mounts["/sys"][2] == "sysfs" and mounts["/sys"][3].startswith("ro,")
    assert mounts["/proc/sys"][3].startswith("ro,")
    assert out.count("Read-only file system") == 3, out  # /sys, /proc/sys and the masked /sys/firmware
    assert "keys=0 timer=0" in out and "\n0\n" in out  # /dev/null over files, an empty tmpfs over directories
    assert out.rstrip().endswith("3")


async def test_binds_readonly_root_and_upper_dir(pod: Pod) -> None:
    rw, ro, single = pod.base / "rw-vol", pod.base / "ro-vol", pod.base / "single-file"
    rw.mkdir()
    ro.mkdir()
    (ro / "data").write_text("read only data\n")
    single.write_text("one file\n")
    binds = [
        {"source": str(pod.hosts), "target": "/etc/hosts", "readonly": True},
        {"source": str(rw), "target": "/data/rw", "readonly": False},
        {"source": str(ro), "target": "/data/ro", "readonly": True},
        {"source": str(single), "target": "/etc/deep/new/file.conf", "readonly": False},
    ]
    script = ("cat /etc/hosts /data/ro/data /etc/deep/new/file.conf; touch /x 2>&1; echo new > /data/rw/made; "
              "echo no > /data/ro/no 2>&1; echo hosts >> /etc/hosts 2>&1; mkdir -p /tmp 2>&1; echo done")
    code, out = await pod.run(script, readonly=True, binds=binds)
    assert code == 0, out
    assert "10.244.0.5\tweb" in out and "read only data" in out and "one file" in out
    assert out.count("Read-only file system") == 4, out  # /x, the ro volume, ro /etc/hosts, /tmp
    assert (rw / "made").read_text() == "new\n" and not (ro / "no").exists()
    assert out.endswith("done\n")
    # a writable root: the container's writes land in its upper dir, not in the image's layers
    code, out = await pod.run("echo written > /etc/os-release; mkdir -p /var/www; echo hi > /var/www/index; "
                              "cat /etc/os-release")
    assert (code, out) == (0, "written\n")
    upper = pod.base / "data" / f"c.{pod.instances}" / "upper"
    assert (upper / "etc" / "os-release").read_text() == "written\n"
    assert (upper / "var" / "www" / "index").read_text() == "hi\n"
    assert "ID=minitest" in (pod.layers[0] / "etc" / "os-release").read_text()
    assert not any((upper.parent / "merged").iterdir())  # nothing mounted on the host


async def test_shm_bind_is_shared_and_cwd_made(pod: Pod) -> None:
    shm = pod.base / "shm"
    shm.mkdir()
    code, out = await pod.run("echo shared > /dev/shm/seg; pwd; ls -d /srv/app", shm=str(shm), cwd="/srv/app")
    assert code == 0, out
    assert (shm / "seg").read_text() == "shared\n"
    assert out == "/srv/app\n/srv/app\n"


@pytest.mark.parametrize(
    ("image_user", "uid", "gid", "expected", "home"),
    [
        ("", None, None, "uid=0(root) gid=0(root) groups=10(wheel)", "/root"),
        ("nobody", None, None, "uid=65534(nobody) gid=65534(nogroup)", "/nonexistent"),
        ("app", None, None, "uid=1000(app) gid=1000(app) groups=29(audio),50(staff)", "/home/app"),
        ("1000", None, None, "uid=1000(app) gid=1000(app) groups=29(audio),50(staff)", "/home/app"),
        ("app:staff", None, None, "uid=1000(app) gid=50(staff)", "/home/app"),
        ("1000:29", None, None, "uid=1000(app) gid=29(audio)", "/home/app"),
        ("4242", None, None, "uid=4242 gid=0(root)", "/"),
        ("4242:4343", None, None, "uid=4242 gid=4343", "/"),
        ("app", 65534, None, "uid=65534(nobody) gid=65534(nogroup)", "/nonexistent"),
        ("app", None, 50, "uid=1000(app) gid=50(staff)", "/home/app"),
    ],
    ids=["root", "name", "name-groups", "uid-groups", "user:group", "uid:gid", "unknown-uid", "unknown-uid:gid",
         "runAsUser", "runAsGroup"],
)
async def test_user_from_the_image(pod: Pod, image_user: str, uid: int | None, gid: int | None, expected: str,
                                   home: str) -> None:
    code, out = await pod.run("id; echo HOME=$HOME", uid=uid, gid=gid, image_user=image_user)
    assert (code, out) == (0, f"{expected}\nHOME={home}\n")


async def test_relative_executable_is_found_in_cwd(pod: Pod) -> None:
    _, _, record, log = await pod.spawn(["./busybox", "echo", "relative"], pod.rootfs(), cwd="/bin")
    assert await pod.wait_exit(record) == 0
    assert log.read_text() == "relative\n"


async def test_home_from_env_wins(pod: Pod) -> None:
    code, out = await pod.run("echo $HOME", env={"HOME": "/mine"}, image_user="app")
    assert (code, out) == (0, "/mine\n")


@pytest.mark.parametrize(
    ("image_user", "uid", "message"),
    [
        ("", None, 'container has runAsNonRoot and image will run as root (pod: "web_default(uid1)", container: c)'),
        ("0:0", None, "container has runAsNonRoot and image will run as root"),
        ("app", None, "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is "
                      'non-root (pod: "web_default(uid1)", container: c)'),
        ("1000", 0, "container's runAsUser breaks non-root policy"),
    ],
    ids=["no-user", "root-uid", "name", "runAsUser-0"],
)
async def test_run_as_non_root_refusals(pod: Pod, image_user: str, uid: int | None, message: str) -> None:
    with pytest.raises(ContainerStartError) as e:
        await pod.spawn(["id"], pod.rootfs(image_user=image_user, run_as_non_root=True), uid=uid)
    assert e.value.reason == "CreateContainerConfigError"
    assert message in str(e.value)


async def test_run_as_non_root_allows_a_numeric_user(pod: Pod) -> None:
    code, out = await pod.run("id -u", image_user="1000", run_as_non_root=True)
    assert (code, out) == (0, "1000\n")


@pytest.mark.parametrize(
    ("argv", "image_user", "message"),
    [
        (["id"], "ghost", "unable to find user ghost: no matching entries in passwd file"),
        (["id"], "app:ghosts", "unable to find group ghosts: no matching entries in group file"),
        (["id"], "4294967296", "uids and gids must be in range 0-2147483647"),
        (["nginx", "-g", "daemon off;"], "", 'exec: "nginx": executable file not found in $PATH'),
        (["/usr/sbin/nginx"], "", 'exec: "/usr/sbin/nginx": stat /usr/sbin/nginx: no such file or directory'),
    ],
    ids=["unknown-user", "unknown-group", "id-range", "not-in-path", "absent-path"],
)
async def test_start_errors(pod: Pod, argv: list[str], image_user: str, message: str) -> None:
    with pytest.raises(ContainerStartError) as e:
        await pod.spawn(argv, pod.rootfs(image_user=image_user))
    assert e.value.reason == "StartError"
    assert message in str(e.value)


async def test_host_programs_are_not_found_inside(pod: Pod) -> None:
    assert os.path.exists("/usr/bin/env")
    with pytest.raises(ContainerStartError, match='stat /usr/bin/env: no such file or directory'):
        await pod.spawn(["/usr/bin/env"], pod.rootfs())


async def test_mount_failure_names_the_target(pod: Pod) -> None:
    binds = [{"source": str(pod.base / "absent"), "target": "/data", "readonly": False}]
    with pytest.raises(ContainerStartError, match=f'error mounting "{pod.base}/absent" to rootfs at "/data"'):
        await pod.spawn(["id"], pod.rootfs(binds=binds))


async def test_image_symlinks_stay_inside_the_root(pod: Pod) -> None:
    """An image whose /etc/hosts and /data point at host paths: the binds land inside the root all the same."""
    evil = pod.base / "layers" / "evil"
    (evil / "etc").mkdir(parents=True)
    outside, elsewhere = pod.base / "outside", pod.base / "elsewhere"
    outside.mkdir()
    elsewhere.mkdir()
    (evil / "etc" / "hosts").symlink_to(outside / "hosts")
    (evil / "data").symlink_to("../../../../../../../../" + str(elsewhere))
    pod.layers.insert(0, evil)
    vol = pod.base / "vol"
    vol.mkdir()
    (vol / "v").write_text("volume\n")
    binds = [{"source": str(pod.hosts), "target": "/etc/hosts", "readonly": False},
             {"source": str(vol), "target": "/data", "readonly": False}]
    code, out = await pod.run("cat /etc/hosts /data/v", binds=binds)
    assert code == 0, out
    assert "10.244.0.5\tweb" in out and "volume" in out
    assert list(outside.iterdir()) == list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("where", ["proc", "sys", "dev"])
async def test_proc_sys_dev_never_through_a_symlink(pod: Pod, where: str) -> None:
    evil = pod.base / "layers" / "evil"
    evil.mkdir(parents=True)
    (evil / where).symlink_to("/")
    pod.layers.insert(0, evil)
    fstype = {"proc": "proc", "sys": "sysfs", "dev": "tmpfs"}[where]
    with pytest.raises(ContainerStartError, match=f'filesystem "{fstype}" must be mounted on ordinary directory'):
        await pod.spawn(["id"], pod.rootfs())


async def test_many_layers_use_relative_lowerdirs(pod: Pod) -> None:
    """Past a page of mount options the lowerdirs are given relative to their common parent (containerd)."""
    bottom = pod.layers[-1]
    many = []
    for i in range(45):
        layer = pod.base / "layers" / f"layer-{i:03d}-{'x' * 60}"
        layer.mkdir()
        (layer / f"f{i}").write_text(f"{i}\n")
        many.append(layer)
    pod.layers = [*reversed(many), bottom]
    assert len(":".join(str(p) for p in pod.layers)) > 4096
    code, out = await pod.run("cat /f0 /f44; ls / | grep -c '^f'")
    assert (code, out) == (0, "0\n44\n45\n")


async def test_exec_lands_in_the_image_root(pod: Pod) -> None:
    pid, start, record, _ = await pod.spawn(["sleep", "60"], pod.rootfs(image_user="app"))
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        await pod.zygote.request(
            "exec", fds=(null, out_w, out_w), target_pid=pid, target_start=start, pod_dir=str(pod.pod_dir),
            record="exec.1", argv=["sh", "-c", "cat /etc/os-release; id -un; echo $HOME; ls /proc | grep -c ."],
            env={"PATH": "/bin"}, cwd=None, uid=None, gid=None, tty=False, image_user="app",
        )
    finally:
        os.close(out_w)
        os.close(null)
    assert await pod.wait_exit("exec.1") == 0
    with open(out_r, "rb") as f:
        out = f.read().decode()
    assert out.startswith('ID=minitest\nNAME="rootfs test image"\napp\n/home/app\n'), out
    assert host_mounts_of(pod.base) == []  # the container's mounts are its own, even while it runs
    fd = os.pidfd_open(pid)
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    os.close(fd)
    assert await pod.wait_exit(record) == 137


SHARED_ROOT = """
import asyncio, sys
from pathlib import Path
from minikubelet.runtime.zygote import Zygote
from tests.integration.test_rootfs import Pod, host_mounts_of

async def main(base: Path) -> None:
    zygote = Zygote()
    pod = Pod(base, zygote)
    try:
        await zygote.start()
        await pod.start()
        _, _, record, log = await pod.spawn(["sh", "-c", "echo up; sleep 60"], pod.rootfs())
        for _ in range(500):
            if log.exists() and log.read_text() == "up\\n":
                break
            await asyncio.sleep(0.01)
        with open("/proc/self/mountinfo") as f:
            root = next(line for line in f if line.split()[4] == "/")
        print("shared" if "shared:" in root else "not shared", len(host_mounts_of(base)), log.read_text().strip())
    finally:
        await pod.stop()
        await zygote.stop()

asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_shared_host_root_sees_no_container_mount() -> None:
    """On systemd hosts ``/`` is shared: the container's mounts must still not propagate back (MS_PRIVATE first)."""
    base = Path(tempfile.mkdtemp(prefix="mk-rootfs-shared-"))
    try:
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "shared", sys.executable, "-c", SHARED_ROOT, str(base)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "shared 0 up\n", proc.stdout + proc.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert host_mounts_of(base) == []
