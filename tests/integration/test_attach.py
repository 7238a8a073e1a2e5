"""stdin and tty containers with the real kubectl: run -it, run --rm -i, attach -it with resize, across a daemon
restart (the relay, nsexec/relay.py, holds the terminal), and kubectl logs of what the container printed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import BUSYBOX, DaemonHarness, pod_yaml
from tests.integration.test_logs_exec import Kubectl, _pane, kubectl, tmux_session  # noqa: F401 - fixtures

pytestmark = pytest.mark.root

NODE_FS = "--annotations=minikubelet.io/node-filesystem=true"


def _tmux(session: str, script: Path) -> None:
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", "sh", str(script)],
                   check=True)


def _keys(session: str, text: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, text, "Enter"], check=True)


def _env(k8s: Kubectl) -> str:
    return " ".join(f"{k}={k8s.env[k]}" for k in ("KUBECONFIG", "KUBECACHEDIR"))


def test_run_it_then_attach_with_resize_across_a_restart(
    daemon: DaemonHarness, kubectl: Kubectl, tmux_session: str, tmp_path: Path  # noqa: F811
) -> None:
    script = tmp_path / "run.sh"
    script.write_text(f"{_env(kubectl)} {kubectl.binary} run -it bb {NODE_FS} --image=busybox --restart=Never "
                      f"--command -- {BUSYBOX} sh; echo RUN-EXIT=$?; sleep 600\n")
    _tmux(tmux_session, script)
    daemon.wait_for(lambda: "If you don't see a command prompt" in _pane(tmux_session), 30,
                    f"kubectl run -it attached\n{_pane(tmux_session)}")
    _keys(tmux_session, "echo hi-$((6*7)); echo SIZE=$(stty size)")
    daemon.wait_for(lambda: "hi-42" in _pane(tmux_session), 15, f"the shell's answer\n{_pane(tmux_session)}")
    daemon.wait_for(lambda: "SIZE=30 120" in _pane(tmux_session), 10, f"kubectl's size\n{_pane(tmux_session)}")
    _keys(tmux_session, "exit")
    daemon.wait_for(lambda: "RUN-EXIT=0" in _pane(tmux_session), 15, f"kubectl run ends\n{_pane(tmux_session)}")
    subprocess.run(["tmux", "kill-session", "-t", tmux_session], capture_output=True)
    assert "hi-42" in kubectl("logs", "bb").stdout


def test_attach_it_with_resize_across_a_restart(
    daemon: DaemonHarness, kubectl: Kubectl, tmux_session: str, tmp_path: Path  # noqa: F811
) -> None:
    manifest = tmp_path / "tty.yaml"
    manifest.write_text(pod_yaml("bb", [{"name": "bb", "image": "busybox", "command": [BUSYBOX, "sh"],
                                         "stdin": True, "tty": True}], restartPolicy="Never"))
    p = kubectl("apply", "-f", str(manifest))
    assert p.returncode == 0, p.stderr
    daemon.wait_running("bb", 30)
    script1 = tmp_path / "attach1.sh"
    script1.write_text(f"{_env(kubectl)} {kubectl.binary} attach -it bb; sleep 600\n")
    _tmux(tmux_session, script1)
    time.sleep(2)
    _keys(tmux_session, "echo hi-$((6*7))")
    daemon.wait_for(lambda: "hi-42" in _pane(tmux_session), 15, f"the shell's answer\n{_pane(tmux_session)}")
    subprocess.run(["tmux", "kill-session", "-t", tmux_session], capture_output=True)  # detach: sh keeps running

    daemon.stop()
    daemon.start()
    try:
        daemon.wait_running("bb", 30)
    except AssertionError:
        print(daemon.log()[-6000:])
        raise
    assert daemon.container("bb", "bb")["restartCount"] == 0, "the same shell, not a new instance"
    script2 = tmp_path / "attach.sh"
    script2.write_text(f"{_env(kubectl)} {kubectl.binary} attach -it bb; echo ATTACH-EXIT=$?; sleep 600\n")
    _tmux(tmux_session, script2)
    time.sleep(2)
    _keys(tmux_session, "echo again-$((5*5))")
    daemon.wait_for(lambda: "again-25" in _pane(tmux_session), 15, f"attach after restart\n{_pane(tmux_session)}")
    subprocess.run(["tmux", "resize-window", "-t", tmux_session, "-x", "100", "-y", "25"], check=True)
    time.sleep(0.5)
    _keys(tmux_session, "echo SIZE=$(stty size)")
    daemon.wait_for(lambda: "SIZE=25 100" in _pane(tmux_session), 10, f"the resized pty\n{_pane(tmux_session)}")
    _keys(tmux_session, "exit 3")
    daemon.wait_for(lambda: "ATTACH-EXIT=" in _pane(tmux_session), 15, f"attach ends\n{_pane(tmux_session)}")
    daemon.wait_for(lambda: (daemon.container("bb", "bb").get("state") or {}).get("terminated"), 15,
                    "the container's exit")
    logs = kubectl("logs", "bb").stdout
    assert "hi-42" in logs and "again-25" in logs
    assert "Traceback" not in daemon.log()


def test_run_rm_i_with_piped_stdin(daemon: DaemonHarness, kubectl: Kubectl) -> None:  # noqa: F811
    p = kubectl("run", "--rm", "-i", "--restart=Never", "cat1", NODE_FS, "--image=busybox", "--command", "--",
                BUSYBOX, "cat", input="piped-line-1\npiped-line-2\n", timeout=60)
    assert "piped-line-1\npiped-line-2" in p.stdout, (p.stdout, p.stderr)
    assert p.returncode == 0, (p.stdout, p.stderr)
    daemon.wait_gone("cat1")
    assert "Traceback" not in daemon.log()


def test_attach_to_a_container_without_stdin_or_tty_says_why(daemon: DaemonHarness, kubectl: Kubectl,  # noqa: F811
                                                             tmp_path: Path) -> None:
    manifest = tmp_path / "plain.yaml"
    manifest.write_text(pod_yaml("plain", [{"name": "plain", "image": "busybox", "command": [BUSYBOX, "sleep", "60"]}]))
    assert kubectl("apply", "-f", str(manifest)).returncode == 0
    daemon.wait_running("plain", 30)
    p = kubectl("attach", "plain", timeout=30)
    assert p.returncode != 0
    assert "has neither stdin nor tty" in p.stderr, p.stderr
    assert "kubectl logs -f plain" in p.stderr
