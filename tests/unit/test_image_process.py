"""Pure rules of a container on an image: argv from command/args vs Entrypoint/Cmd, env order, cwd, files."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from minikubelet.images.content import ImageConfig
from minikubelet.pod.containers import stop_signal
from minikubelet.pod.process import argv_of, env_of, process_of
from minikubelet.pod.rootfs import hosts_file, instance_dirs, uses_node_filesystem
from minikubelet.pod.spec import Container, Pod, PodSpec

IMAGE = ImageConfig(entrypoint=("docker-entrypoint.sh",), cmd=("nginx", "-g", "daemon off;"),
                    env=("PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8"), working_dir="/srv", user="101:101")


def c(**kw: object) -> Container:
    return Container(name="web", image="nginx:1.14", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ((), (), ["docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
        (("sh",), (), ["sh"]),
        ((), ("nginx", "-T"), ["docker-entrypoint.sh", "nginx", "-T"]),
        (("sh", "-c"), ("echo $(GREETING)",), ["sh", "-c", "echo hi"]),
    ],
)
def test_argv_follows_kubernetes_rules(command: tuple[str, ...], args: tuple[str, ...], expected: list[str]) -> None:
    assert argv_of(c(command=command, args=args), IMAGE, {"GREETING": "hi"}) == expected


def test_empty_entrypoint_counts_as_unset() -> None:
    assert argv_of(c(), ImageConfig(entrypoint=("",), cmd=("sh",)), {}) == ["sh"]
    assert argv_of(c(), ImageConfig(), {}) == []


def test_env_is_hostname_then_image_then_container() -> None:
    env = env_of("web", IMAGE, {"LANG": "de_DE.UTF-8", "A": "1"})
    assert env == {"HOSTNAME": "web", "PATH": "/opt/bin:/usr/bin", "LANG": "de_DE.UTF-8", "A": "1"}
    assert env_of("web", ImageConfig(), {})["PATH"].startswith("/usr/local/sbin:")


def test_working_dir_and_user() -> None:
    p = process_of(c(), IMAGE, "web", {})
    assert (p.cwd, p.image_user) == ("/srv", "101:101")
    assert process_of(c(working_dir="/app"), IMAGE, "web", {}).cwd == "/app"
    assert process_of(c(), ImageConfig(), "web", {}).cwd == "/"


def test_stop_signal_from_the_image() -> None:
    assert stop_signal("SIGQUIT") is signal.SIGQUIT
    assert stop_signal("quit") is signal.SIGQUIT
    assert stop_signal("9") is signal.SIGKILL
    assert stop_signal(None) is signal.SIGTERM
    assert stop_signal("SIGNOPE") is signal.SIGTERM


def _pod(annotations: dict[str, str] | None = None) -> Pod:
    return Pod("default", "web", "u1", PodSpec(containers=(c(),)), "/m/web.yaml", annotations=annotations or {})


def test_hosts_file_as_the_kubelet_writes_it() -> None:
    text = hosts_file(_pod(), "10.244.0.5")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert text.endswith("fe00::2\tip6-allrouters\n10.244.0.5\tweb\n")


def test_node_filesystem_switch() -> None:
    assert not uses_node_filesystem(_pod())
    assert uses_node_filesystem(_pod({"minikubelet.io/node-filesystem": "true"}))
    assert not uses_node_filesystem(_pod({"minikubelet.io/node-filesystem": "false"}))


def test_instance_dirs_are_fresh_and_old_instances_go(tmp_path: Path) -> None:
    first = instance_dirs(tmp_path, "u1", "web", 0)
    (first["upper"] / "written").write_text("x")
    other = instance_dirs(tmp_path, "u1", "sidecar", 0)
    second = instance_dirs(tmp_path, "u1", "web", 1)
    assert not first["upper"].parent.exists()
    assert other["upper"].is_dir() and second["upper"].is_dir()
    assert not any(second["upper"].iterdir())
