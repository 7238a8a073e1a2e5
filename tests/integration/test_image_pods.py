"""Pods on their images (issue 10): busybox and its variants from the session registry (tests/testimages.py),
mirrored as docker.io, pulled by the daemon; the image config -> process rules, pull failures and back-off, the
security context on images, volumes, and nothing left behind after a delete."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonHarness, events_of, find_events, http_get, wait_pod
from tests.integration.test_kubectl import Kubectl
from tests.testimages import (
    INDEX_HTML,
    PASSWD,
    ImageRegistry,
    image_daemon,
    image_pod,
    image_registry,  # noqa: F401 - the session fixture
    restart_registry,
    serving_registry,
)

pytestmark = pytest.mark.root

SHOW_ID = "id; echo $HOME; sleep 3600"
PULL_TIMEOUT = 60  # a pull from loopback takes a second; generous for a loaded machine


@pytest.fixture
def daemon(run_id: str, image_registry: ImageRegistry, tmp_path: Path) -> Iterator[DaemonHarness]:  # noqa: F811
    with image_daemon(run_id, image_registry, tmp_path) as harness:
        yield harness


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def waiting(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for c in pod["status"].get("containerStatuses", []):
        if c["name"] == container:
            return dict(c["state"].get("waiting") or {})
    return {}


def wait_waiting(
    daemon: DaemonHarness, pod: str, container: str, reason: str, timeout: float = PULL_TIMEOUT
) -> dict[str, Any]:
    p = wait_pod(daemon, pod, lambda p: waiting(p, container).get("reason") == reason, timeout, f"{pod} {reason}")
    return waiting(p, container)


def messages(daemon: DaemonHarness, pod: str, reason: str) -> list[str]:
    return [e["message"] for e in find_events(daemon, pod, reason)]


def uid_of(daemon: DaemonHarness, name: str) -> str:
    p = daemon.pod(name)
    assert p is not None
    return str(p["metadata"]["uid"])


def overlay_mounts(daemon: DaemonHarness) -> list[str]:
    """Mount lines of the host naming this daemon's data or run dir (overlays, tmpfs volumes, the pods' shm)."""
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(daemon.data_dir) in line or str(daemon.run_dir) in line]


def assert_released(daemon: DaemonHarness, uid: str) -> None:
    """A deleted pod leaves no mount mentioning the data dir and no <data-dir>/pods/<uid>."""
    daemon.wait_for(lambda: not (daemon.data_dir / "pods" / uid).exists(), 30, f"data-dir pods/{uid} removed")
    daemon.wait_for(lambda: not [m for m in overlay_mounts(daemon) if uid in m], 30, "no mounts of the pod")
    assert not (daemon.run_dir / "pods" / uid).exists()


def test_kubectl_run_busybox_runs_on_the_image_root(
    kubectl: Kubectl,
    daemon: DaemonHarness,
    image_registry: ImageRegistry,  # noqa: F811
) -> None:
    out = kubectl("run", "bb", "--image=busybox", "--", "sleep", "3600")
    assert out.strip() == "pod/bb created"
    pod = daemon.wait_running("bb", timeout=PULL_TIMEOUT)
    status = pod["status"]["containerStatuses"][0]
    assert status["image"] == "docker.io/library/busybox:latest"
    assert status["imageID"] == image_registry.image_id("library/busybox:latest")
    assert re.fullmatch(r"docker\.io/library/busybox@sha256:[0-9a-f]{64}", status["imageID"])
    assert kubectl.pod("bb")["spec"]["containers"][0]["imagePullPolicy"] == "Always"  # :latest, as the API server
    assert messages(daemon, "bb", "Pulling") == ['Pulling image "busybox"']
    assert re.fullmatch(
        r'Successfully pulled image "busybox" in \S+ \(\S+ including waiting\)\. Image size: \d+ bytes\.',
        messages(daemon, "bb", "Pulled")[0],
    )

    # the image's files, not the host's
    assert kubectl("exec", "bb", "--", "cat", "/etc/passwd") == PASSWD
    assert Path("/etc/passwd").read_text() != PASSWD
    top = set(kubectl("exec", "bb", "--", "ls", "/").split())
    assert {"bin", "etc", "www", "proc", "dev", "sys", "tmp"} <= top
    assert "work" not in top and "usr" not in top  # host directories the busybox image lacks
    assert kubectl("exec", "bb", "--", "cat", "/etc/hostname").strip() == "bb"
    assert "\tbb\n" in kubectl("exec", "bb", "--", "cat", "/etc/hosts")
    # the container's own environment (its main process): PATH default, HOME from passwd, HOSTNAME
    environ = kubectl("exec", "bb", "--", "sh", "-c", "tr '\\0' '\\n' < /proc/$(pidof sleep)/environ")
    env = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env
    assert env["HOME"] == "/root" and env["HOSTNAME"] == "bb", env
    # the container's writes land in its own upper dir, never on the host
    kubectl("exec", "bb", "--", "sh", "-c", "echo mine > /etc/only-in-bb")
    assert not Path("/etc/only-in-bb").exists()
    uid = uid_of(daemon, "bb")
    assert list((daemon.data_dir / "pods" / uid / "containers").glob("bb.*/upper/etc/only-in-bb"))

    assert kubectl("delete", "pod", "bb", "--grace-period=1").strip().startswith('pod "bb" deleted')
    daemon.wait_gone("bb")
    assert_released(daemon, uid)


def test_busybox_httpd_serves_from_the_image(daemon: DaemonHarness) -> None:
    web = {"name": "web", "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}
    daemon.write("web.yaml", image_pod("web", [web]))
    pod = daemon.wait_running("web", timeout=PULL_TIMEOUT)
    ip = pod["status"]["podIP"]
    assert daemon.wait_for(lambda: http_get(f"http://{ip}:8080/") == INDEX_HTML, 20, "httpd answers /")
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"

    # a second pod of the same image: no pull, the kubelet's "already present"
    daemon.write("web2.yaml", image_pod("web2", [dict(web, name="web2")]))
    daemon.wait_running("web2", timeout=PULL_TIMEOUT)
    assert messages(daemon, "web2", "Pulled") == ['Container image "busybox:1.36" already present on machine']
    assert not messages(daemon, "web2", "Pulling")


def test_image_entrypoint_cmd_env_workingdir(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """library/bbentry:1 has Entrypoint [sh, -c], Cmd [echo image-cmd ...], Env IMGVAR, WorkingDir /work/dir."""
    img = "bbentry:1"
    containers = [
        {"name": "image", "image": img},  # Entrypoint + Cmd
        {
            "name": "args",
            "image": img,
            "args": ['echo "args $IMGVAR $SHARED"; sleep 3600'],
            "env": [{"name": "SHARED", "value": "pod"}],
        },  # Entrypoint + args
        {"name": "command", "image": img, "command": ["sh", "-c", 'echo "command $(pwd) $0"; sleep 3600']},
        {
            "name": "both",
            "image": img,
            "command": ["echo"],
            "args": ["both", "$(SHARED)"],
            "workingDir": "/srv",
            "env": [{"name": "SHARED", "value": "expanded"}],
        },
    ]
    daemon.write("entry.yaml", image_pod("entry", containers, restartPolicy="Never"))

    def logs(c: str) -> str:  # "" while the container has not started
        out = kubectl.run("logs", "entry", "-c", c, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    daemon.wait_for(
        lambda: logs("image") and logs("args") and logs("command") and logs("both"),
        PULL_TIMEOUT,
        "every container printed",
    )
    assert logs("image") == "image-cmd from-image in /work/dir"  # WorkingDir created in the image root
    assert logs("args") == "args from-image pod"  # args replace Cmd, not the Entrypoint; env: image, then pod
    assert logs("command") == "command /work/dir sh"  # command replaces Entrypoint and Cmd
    assert logs("both") == "both expanded"
    env = dict(
        line.split("=", 1) for line in kubectl("exec", "entry", "-c", "args", "--", "env").splitlines() if "=" in line
    )
    assert env["IMGVAR"] == "from-image" and env["SHARED"] == "pod" and env["HOSTNAME"] == "entry"
    assert kubectl("exec", "entry", "-c", "args", "--", "pwd").strip() == "/work/dir"


def test_missing_image_and_pull_policy_never(daemon: DaemonHarness, run_id: str) -> None:
    missing = f"busybox-nope-{run_id}:1"
    daemon.write("nope.yaml", image_pod("nope", [{"name": "main", "image": missing, "command": ["sleep", "9"]}]))
    w = wait_waiting(daemon, "nope", "main", "ErrImagePull")
    assert f'failed to pull and unpack image "docker.io/library/{missing}"' in w["message"]
    assert "not found" in w["message"]
    assert messages(daemon, "nope", "Pulling") == [f'Pulling image "{missing}"']
    failed = messages(daemon, "nope", "Failed")
    assert f'Failed to pull image "{missing}": {w["message"]}' in failed
    assert "Error: ErrImagePull" in failed
    w = wait_waiting(daemon, "nope", "main", "ImagePullBackOff", timeout=40)
    assert w["message"].startswith(f'Back-off pulling image "{missing}": ErrImagePull: ')
    assert f'Back-off pulling image "{missing}"' in messages(daemon, "nope", "BackOff")

    never = f"busybox:never-{run_id}"
    spec = {"name": "main", "image": never, "imagePullPolicy": "Never", "command": ["sleep", "9"]}
    daemon.write("never.yaml", image_pod("never", [spec]))
    w = wait_waiting(daemon, "never", "main", "ErrImageNeverPull")
    text = f'Container image "{never}" is not present with pull policy of Never'
    assert w["message"] == text
    assert text in messages(daemon, "never", "ErrImageNeverPull")
    assert not messages(daemon, "never", "Pulling")


def test_registry_down_then_back(run_id: str, tmp_path: Path) -> None:
    with serving_registry(debian=False) as served, image_daemon(run_id, served, tmp_path, prefix="down") as daemon:
        served.registry.stop()
        daemon.write(
            "down.yaml", image_pod("down", [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}])
        )
        w = wait_waiting(daemon, "down", "main", "ErrImagePull")
        assert served.host in w["message"], w  # the error names the mirror it could not reach
        assert messages(daemon, "down", "Pulling")[0] == 'Pulling image "busybox:1.36"'
        failed = messages(daemon, "down", "Failed")
        assert any(m.startswith('Failed to pull image "busybox:1.36": ') for m in failed), failed
        w = wait_waiting(daemon, "down", "main", "ImagePullBackOff", timeout=40)
        assert w["message"].startswith('Back-off pulling image "busybox:1.36": ErrImagePull: ')
        assert 'Back-off pulling image "busybox:1.36"' in messages(daemon, "down", "BackOff")
        assert "Error: ImagePullBackOff" in messages(daemon, "down", "Failed")
        restart_registry(served.registry)
        pod = daemon.wait_running("down", timeout=120)  # the next try of the back-off (10 s, 20 s, 40 s ...)
        assert pod["status"]["containerStatuses"][0]["imageID"] == served.image_id("library/busybox:1.36")
        assert any(m.startswith('Successfully pulled image "busybox:1.36"') for m in messages(daemon, "down", "Pulled"))


def test_run_as_non_root_against_the_image_user(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    nonroot = {"runAsNonRoot": True}
    containers = [
        {"name": "root", "image": "busybox:1.36", "command": ["sleep", "3600"], "securityContext": nonroot},
        {"name": "named", "image": "bbuser:app", "command": ["sleep", "3600"], "securityContext": nonroot},
        {"name": "numeric", "image": "bbuser:1000", "command": ["sh", "-c", SHOW_ID], "securityContext": nonroot},
        {
            "name": "given",
            "image": "busybox:1.36",
            "command": ["sh", "-c", "id -u; echo $HOME; sleep 3600"],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
        },
    ]
    daemon.write("nonroot.yaml", image_pod("nonroot", containers))
    uid = daemon.wait_for(lambda: uid_of(daemon, "nonroot"), 20, "the pod")
    pod_id = f'"nonroot_default({uid})"'
    w = wait_waiting(daemon, "nonroot", "root", "CreateContainerConfigError")
    assert w["message"] == f"container has runAsNonRoot and image will run as root (pod: {pod_id}, container: root)"
    w = wait_waiting(daemon, "nonroot", "named", "CreateContainerConfigError")
    assert w["message"] == (
        f"container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root "
        f"(pod: {pod_id}, container: named)"
    )
    assert f"Error: {w['message']}" in messages(daemon, "nonroot", "Failed")

    def running(p: dict[str, Any], name: str) -> bool:
        return any(c["name"] == name and "running" in c["state"] for c in p["status"]["containerStatuses"])

    wait_pod(daemon, "nonroot", lambda p: running(p, "numeric") and running(p, "given"), PULL_TIMEOUT, "non-root ran")
    numeric = kubectl("logs", "nonroot", "-c", "numeric").splitlines()
    assert numeric[0].startswith("uid=1000(app) gid=1000(app)"), numeric  # the image's User, its passwd entry
    assert numeric[1] == "/home/app"  # HOME from the image's passwd entry
    assert kubectl("logs", "nonroot", "-c", "given").splitlines() == ["65534", "/home"]  # nobody's passwd entry


def test_read_only_root_filesystem(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    spec = {
        "name": "ro",
        "image": "busybox:1.36",
        "command": ["sleep", "3600"],
        "securityContext": {"readOnlyRootFilesystem": True},
    }
    daemon.write("ro.yaml", image_pod("ro", [spec]))
    daemon.wait_running("ro", timeout=PULL_TIMEOUT)
    touched = kubectl.run("exec", "ro", "--", "touch", "/x", check=False)
    assert touched.returncode != 0
    assert "Read-only file system" in touched.stderr + touched.stdout
    assert kubectl.run("exec", "ro", "--", "touch", "/etc/x", check=False).returncode != 0
    assert not Path("/x").exists()
    assert kubectl("exec", "ro", "--", "cat", "/www/index.html") == INDEX_HTML  # reading works


def test_empty_dir_shared_and_memory(kubectl: Kubectl, daemon: DaemonHarness, run_id: str) -> None:
    mounts = [{"name": "shared", "mountPath": "/shared"}, {"name": "mem", "mountPath": "/mem"}]
    containers = [
        {
            "name": "writer",
            "image": "busybox:1.36",
            "volumeMounts": mounts,
            "command": ["sh", "-c", f"echo hello-{run_id} > /shared/msg; echo in-memory > /mem/f; sleep 3600"],
        },
        {
            "name": "reader",
            "image": "busybox:1.36",
            "volumeMounts": mounts,
            "command": ["sh", "-c", "until [ -s /shared/msg ]; do sleep 0.1; done; cat /shared/msg; sleep 3600"],
        },
    ]
    volumes = [
        {"name": "shared", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    daemon.write("vols.yaml", image_pod("vols", containers, volumes=volumes))
    daemon.wait_running("vols", timeout=PULL_TIMEOUT)
    daemon.wait_for(lambda: kubectl("logs", "vols", "-c", "reader").strip() == f"hello-{run_id}", 20, "reader read")
    uid = uid_of(daemon, "vols")
    host_dir = daemon.data_dir / "pods" / uid / "volumes"
    assert (host_dir / "shared" / "msg").read_text() == f"hello-{run_id}\n"
    proc_mounts = kubectl("exec", "vols", "-c", "reader", "--", "cat", "/proc/mounts").splitlines()
    mem = [m.split() for m in proc_mounts if m.split()[1:2] == ["/mem"]]
    assert mem and mem[-1][2] == "tmpfs", proc_mounts
    assert "size=16384k" in mem[-1][3]
    assert kubectl("exec", "vols", "-c", "reader", "--", "cat", "/mem/f").strip() == "in-memory"
    assert any(str(host_dir / "mem") in m and " - tmpfs " in m for m in overlay_mounts(daemon))
    # POSIX shm is shared by the pod's containers (one tmpfs per sandbox)
    kubectl("exec", "vols", "-c", "writer", "--", "sh", "-c", "echo shm > /dev/shm/s")
    assert kubectl("exec", "vols", "-c", "reader", "--", "cat", "/dev/shm/s").strip() == "shm"

    kubectl("delete", "pod", "vols", "--grace-period=1")
    daemon.wait_gone("vols")
    assert_released(daemon, uid)


def test_host_path_directory_missing_is_failed_mount(daemon: DaemonHarness, run_id: str) -> None:
    missing = f"/nonexistent-mk-{run_id}"
    spec = {
        "name": "main",
        "image": "busybox:1.36",
        "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    volumes = [{"name": "data", "hostPath": {"path": missing, "type": "Directory"}}]
    daemon.write("hp.yaml", image_pod("hp", [spec], volumes=volumes))
    found = daemon.wait_for(lambda: messages(daemon, "hp", "FailedMount"), PULL_TIMEOUT, "FailedMount event")
    assert any('"data"' in m and missing in m for m in found), found
    assert [e["type"] for e in events_of(daemon, "hp") if e["reason"] == "FailedMount"][0] == "Warning"
    pod = daemon.pod("hp")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert waiting(pod, "main").get("reason") == "ContainerCreating"
    assert not Path(missing).exists()  # type Directory never creates it


def test_deleted_pods_leave_nothing(daemon: DaemonHarness) -> None:
    """Several pods, a restart of one container (a fresh upper dir, the old one removed), then delete all."""
    spec = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo x > /f; sleep 1; exit 1"]}
    daemon.write("restarts.yaml", image_pod("restarts", [spec]))
    daemon.write(
        "sleeper.yaml", image_pod("sleeper", [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}])
    )
    daemon.wait_running("sleeper", timeout=PULL_TIMEOUT)
    wait_pod(daemon, "restarts", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1, 60, "a restart")
    uids = [uid_of(daemon, "restarts"), uid_of(daemon, "sleeper")]
    instances = daemon.wait_for(
        lambda: [p.name for p in (daemon.data_dir / "pods" / uids[0] / "containers").iterdir()], 10, "instances"
    )
    assert len(instances) == 1, instances  # older instances' upper dirs are removed
    assert json.loads(daemon.get_text("/pods"))["items"]
    daemon.remove("restarts.yaml")
    daemon.remove("sleeper.yaml")
    daemon.wait_gone("restarts")
    daemon.wait_gone("sleeper")
    for uid in uids:
        assert_released(daemon, uid)
    assert overlay_mounts(daemon) == []
