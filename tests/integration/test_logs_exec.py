"""``kubectl logs`` and ``kubectl exec`` for real: the pip kubectl (through the daemon's own kubeconfig and bearer
token) against a real daemon running real pods; -it runs under tmux for a real terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import BUSYBOX, DaemonHarness, alive, pod_yaml, sh

pytestmark = pytest.mark.root


class Kubectl:
    def __init__(self, binary: Path, daemon: DaemonHarness, cache: Path) -> None:
        self.binary = binary
        self.daemon = daemon
        self.kubeconfig = daemon.data_dir / "kubeconfig"  # the daemon's own, with its bearer token
        self.env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=str(cache))

    def raw(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
        """(HTTP status, Content-Type, JSON body or {}) of a GET with the kubeconfig's token, if it has one."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        token = (config["users"][0].get("user") or {}).get("token")
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}{path}", headers=headers or {})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), {}
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), dict(json.loads(e.read()))

    def argv(self, *args: str) -> list[str]:
        return [str(self.binary), *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


@pytest.fixture
def kubectl(daemon: DaemonHarness, kubectl_bin: Path, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


def wait_log(daemon: DaemonHarness, pod: str, container: str, text: str) -> None:
    def check() -> bool:
        p = daemon.pod(pod)
        assert p is not None
        files = (daemon.log_dir / f"default_{pod}_{p['metadata']['uid']}" / container).glob("*.log")
        return any(text in f.read_text() for f in files)

    daemon.wait_for(check, 15, f"{text!r} in the log of {pod}/{container}")


# ----- logs ----------------------------------------------------------------------------------------------------


def test_logs_container_and_tail(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    daemon.write(
        "lp.yaml",
        pod_yaml(
            "lp",
            [
                sh("main", "echo one; echo two; echo three; exec sleep 1000"),
                sh("side", "echo side says hi; exec sleep 1000"),
            ],
        ),
    )
    daemon.wait_running("lp")
    wait_log(daemon, "lp", "main", "three")
    wait_log(daemon, "lp", "side", "side says hi")
    r = kubectl("logs", "lp")
    assert (r.returncode, r.stdout) == (0, "one\ntwo\nthree\n"), r.stderr
    assert 'Defaulted container "main" out of: main, side' in r.stderr
    r = kubectl("logs", "lp", "-c", "side")
    assert (r.returncode, r.stdout) == (0, "side says hi\n"), r.stderr
    r = kubectl("logs", "lp", "--tail=2")
    assert (r.returncode, r.stdout) == (0, "two\nthree\n"), r.stderr
    r = kubectl("logs", "lp", "-c", "main", "--limit-bytes=6")
    assert (r.returncode, r.stdout) == (0, "one\ntw"), r.stderr
    r = kubectl("logs", "lp", "-c", "bogus")
    assert r.returncode == 1 and "container bogus is not valid for pod lp" in r.stderr, r.stderr
    r = kubectl("logs", "nope")
    assert r.returncode == 1 and 'pods "nope" not found' in r.stderr, r.stderr
    r = kubectl("logs", "lp", "-c", "main", "--previous")
    assert r.returncode == 1, r.stdout
    assert 'previous terminated container "main" in pod "lp" not found' in r.stderr, r.stderr


def test_logs_follow_streams_lines_and_ends_when_the_container_exits(
    daemon: DaemonHarness, kubectl: Kubectl, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    daemon.write(
        "fp.yaml",
        pod_yaml(
            "fp",
            [
                sh(
                    "main",
                    f"echo ready; while [ ! -e {go} ]; do sleep 0.05; done; "
                    "for i in 1 2 3; do echo line$i; sleep 0.7; done",
                ),
            ],
            restartPolicy="Never",
        ),
    )
    daemon.wait_running("fp")
    wait_log(daemon, "fp", "main", "ready")
    with kubectl.popen("logs", "-f", "fp") as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            go.touch()
            assert proc.stdout.readline() == "line1\n"
            assert proc.poll() is None, "kubectl logs -f must keep following while the container runs"
            first = time.monotonic()
            assert proc.stdout.readline() == "line2\n"
            assert time.monotonic() - first > 0.3, "line2 must arrive as it is written, not at the end"
            assert proc.stdout.readline() == "line3\n"
            assert proc.wait(timeout=15) == 0
            assert proc.stdout.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()


def test_logs_follow_ends_when_the_pod_is_deleted(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    daemon.write(
        "dp.yaml", pod_yaml("dp", [sh("main", "echo started; exec sleep 1000")], terminationGracePeriodSeconds=1)
    )
    daemon.wait_running("dp")
    wait_log(daemon, "dp", "main", "started")
    with kubectl.popen("logs", "-f", "dp") as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "started\n"
            daemon.remove("dp.yaml")
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    daemon.wait_gone("dp")


def test_log_and_exec_errors_are_status_objects(kubectl: Kubectl, ex: str) -> None:
    base = "/api/v1/namespaces/default/pods"
    code, _, body = kubectl.raw(f"{base}/nope/log?container=main")
    assert (code, body["reason"], body["message"]) == (404, "NotFound", 'pods "nope" not found')
    code, _, body = kubectl.raw(f"{base}/{ex}/log?container=bogus")
    assert (code, body["reason"], body["message"]) == (400, "BadRequest", "container bogus is not valid for pod ex")
    code, _, body = kubectl.raw(f"{base}/{ex}/log?container=main&tailLines=-1")
    assert (code, body["reason"]) == (400, "BadRequest"), body
    code, ctype, _ = kubectl.raw(f"{base}/{ex}/log")  # no container: the first one
    assert (code, ctype.split(";")[0]) == (200, "text/plain")
    code, _, body = kubectl.raw(f"{base}/{ex}/exec?command=true&stdout=true")  # no websocket upgrade
    assert (code, body["kind"], body["reason"]) == (400, "Status", "BadRequest"), body
    assert "websocket" in body["message"]
    code, _, body = kubectl.raw(f"{base}/{ex}/exec?stdout=true", {"Connection": "Upgrade", "Upgrade": "websocket"})
    assert (code, body["message"]) == (400, "you must specify at least 1 command")
    code, _, body = kubectl.raw(f"{base}/nope/exec?command=true&stdout=true")
    assert (code, body["reason"]) == (404, "NotFound")


def test_logs_previous_after_a_restart(daemon: DaemonHarness, kubectl: Kubectl, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    daemon.write(
        "rp.yaml",
        pod_yaml(
            "rp",
            [
                sh(
                    "main",
                    f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo run $n; "
                    "[ $n -ge 2 ] && exec sleep 1000; exit 1",
                ),
            ],
        ),
    )
    daemon.wait_for(
        lambda: (
            daemon.container("rp", "main")["restartCount"] >= 1 and "running" in daemon.container("rp", "main")["state"]
        ),
        40,
        "a restart of rp/main",
    )
    wait_log(daemon, "rp", "main", "run 2")
    r = kubectl("logs", "rp", "--previous")
    assert (r.returncode, r.stdout) == (0, "run 1\n"), r.stderr
    r = kubectl("logs", "rp")
    assert (r.returncode, r.stdout) == (0, "run 2\n"), r.stderr


# ----- exec ----------------------------------------------------------------------------------------------------


@pytest.fixture
def ex(daemon: DaemonHarness) -> str:
    daemon.write("ex.yaml", pod_yaml("ex", [sh("main", "exec sleep 1000"), sh("side", "exec sleep 1000")]))
    daemon.wait_running("ex")
    return "ex"


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_exec_output_exit_codes_and_errors(daemon: DaemonHarness, kubectl: Kubectl, ex: str) -> None:
    assert daemon.proc is not None
    kubectl("exec", ex, "--", "true")
    fds = _fds(daemon.proc.pid)
    r = kubectl("exec", ex, "--", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    r = kubectl("exec", ex, "-c", "side", "--", "hostname")
    assert (r.returncode, r.stdout) == (0, "ex\n"), r.stderr
    r = kubectl("exec", ex, "-c", "main", "--", "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")
    r = kubectl("exec", ex, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr
    assert "command terminated with exit code 3" in r.stderr
    r = kubectl("exec", ex, "--", "no-such-command-here")
    assert r.returncode == 1, r.stderr
    missing = 'error: Internal error occurred: exec: "no-such-command-here": executable file not found in $PATH'
    assert missing in r.stderr
    r = kubectl("exec", ex, "-c", "bogus", "--", "true")
    assert r.returncode == 1 and "container bogus is not valid for pod ex" in r.stderr, r.stderr
    # the command runs in the container's PID namespace: pause is PID 1 there
    r = kubectl("exec", ex, "--", BUSYBOX, "ps", "-o", "pid,comm")
    assert r.returncode == 0 and r.stdout.splitlines()[1].split() == ["1", "pause"], r.stdout
    big = kubectl("exec", ex, "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x")
    assert big.returncode == 0 and big.stdout == "x" * 3_000_000
    log = daemon.log()
    assert "Exec started pod=default/ex container=side command=hostname" in log, log[-2000:]
    pid = daemon.proc.pid
    daemon.wait_for(lambda: _fds(pid) <= fds, 10, "exec must not leak file descriptors in the daemon")
    assert "Traceback" not in log, log[-3000:]


def test_exec_stdin(kubectl: Kubectl, ex: str) -> None:
    r = kubectl("exec", "-i", ex, "--", "cat", input="hello\n")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    data = "".join(f"{i:06d}\n" for i in range(100_000))  # 700 KB: more than any pipe buffer
    r = kubectl("exec", "-i", ex, "--", "wc", "-c", input=data)
    assert (r.returncode, r.stdout.strip()) == (0, str(len(data))), r.stderr


def test_exec_into_a_container_that_is_not_running(daemon: DaemonHarness, kubectl: Kubectl) -> None:
    daemon.write("cr.yaml", pod_yaml("cr", [sh("main", "exec sleep 1000"), sh("crash", "exit 1")]))
    daemon.wait_for(
        lambda: daemon.container("cr", "crash")["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff",
        30,
        "cr/crash in CrashLoopBackOff",
    )
    r = kubectl("exec", "cr", "-c", "crash", "--", "true")
    assert r.returncode == 1
    assert 'error: Internal error occurred: container "crash" in pod "cr" is not running' in r.stderr, r.stderr


def _procs_running(argv: list[str]) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode().split("\0")[:-1]
            except OSError:
                continue
            if cmd == argv and alive(int(d.name)):
                found.append(int(d.name))
    return found


def test_exec_client_disconnect_kills_the_command(daemon: DaemonHarness, kubectl: Kubectl, ex: str) -> None:
    with kubectl.popen("exec", ex, "--", "sleep", "4321") as proc:
        try:
            pids = daemon.wait_for(lambda: _procs_running(["sleep", "4321"]), 15, "the exec'd sleep")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    daemon.wait_for(lambda: not any(alive(p) for p in pids), 10, "the exec'd command killed")
    assert "Exec client went away; killing the command" in daemon.log()


def test_logs_follow_stops_when_the_client_goes(daemon: DaemonHarness, kubectl: Kubectl, ex: str) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    kubectl("logs", ex, "-c", "main")
    before = _fds(pid)
    with kubectl.popen("logs", "-f", ex, "-c", "main") as proc:
        try:
            daemon.wait_for(lambda: _fds(pid) >= before + 1, 30, "the follower's connection and log file")
        finally:
            proc.kill()
            proc.wait()
    daemon.wait_for(lambda: _fds(pid) <= before, 20, "the follower's connection and log file closed")


# ----- exec -it under a real terminal (tmux) --------------------------------------------------------------------


@pytest.fixture
def tmux_session(run_id: str) -> Iterator[str]:
    name = f"mk-{run_id}-{os.getpid()}"
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def _pane(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-J", "-t", session, "-S", "-100"], capture_output=True, text=True
    ).stdout


def test_exec_it_with_a_pty_and_resize(
    daemon: DaemonHarness, kubectl: Kubectl, ex: str, tmux_session: str, tmp_path: Path
) -> None:
    script = tmp_path / "run.sh"
    env = " ".join(f"{k}={kubectl.env[k]}" for k in ("KUBECONFIG", "KUBECACHEDIR"))
    script.write_text(
        f"{env} {kubectl.binary} exec -it {ex} -- sh -c 'echo FIRST=$(stty size)'\n"
        f"{env} {kubectl.binary} exec -it {ex} -- sh; echo KUBECTL-EXIT=$?; sleep 600\n"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", tmux_session, "-x", "120", "-y", "30", "sh", str(script)], check=True
    )

    def keys(text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", tmux_session, text, "Enter"], check=True)

    daemon.wait_for(lambda: "#" in _pane(tmux_session), 15, "the shell prompt")
    assert "FIRST=30 120" in _pane(tmux_session), "a command must start with kubectl's terminal size"
    keys("echo SIZE=$(stty size); tty")
    daemon.wait_for(lambda: "SIZE=30 120" in _pane(tmux_session), 10, "the pty size 30x120")
    assert "/dev/pts/" in _pane(tmux_session)
    assert "job control turned off" not in _pane(tmux_session)
    subprocess.run(["tmux", "resize-window", "-t", tmux_session, "-x", "100", "-y", "25"], check=True)
    time.sleep(0.5)
    keys("echo SIZE=$(stty size)")
    daemon.wait_for(lambda: "SIZE=25 100" in _pane(tmux_session), 10, f"the resized pty\n{_pane(tmux_session)}")
    keys("exit 7")
    daemon.wait_for(lambda: "KUBECTL-EXIT=7" in _pane(tmux_session), 15, f"kubectl's exit 7\n{_pane(tmux_session)}")
    assert "Traceback" not in daemon.log()
