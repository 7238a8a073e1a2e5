"""Probes as a user sees them: /pods status, /events with the kubelet's reasons and messages, and the processes.

httpGet (status codes, timeout, refused, named port, HTTPS with a self-signed cert, redirect to another host),
tcpSocket, exec (success, failure, timeout with the command gone), startup gating, readiness flapping without
restarts, liveness recreating the whole pod with back-off, and a hanging target delaying nobody else
(kubelet-semantics.md §2, issue 3). Periods are 1 s and thresholds small, so the file runs in a few minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BUSYBOX, DaemonHarness, alive, events_of, find_events, http_get, pod_yaml, sh, wait_pod

pytestmark = pytest.mark.root

PYTHON = sys.executable


# ----- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture
def www() -> Iterator[Path]:
    """A world-readable directory served by busybox httpd, with index.html and a cgi-bin directory."""
    d = Path(tempfile.mkdtemp(prefix="mk-probes-", dir="/tmp"))
    os.chmod(d, 0o755)
    (d / "index.html").write_text("ok\n")
    (d / "cgi-bin").mkdir(mode=0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def cgi(www: Path, name: str, body: str) -> str:
    """A CGI shell script under www/cgi-bin; returns its URL path."""
    path = www / "cgi-bin" / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return f"/cgi-bin/{name}"


def web(www: Path, name: str = "web", **probes: Any) -> dict[str, Any]:
    """A busybox httpd container serving ``www`` on 8080 (port named ``http``), with the given probes."""
    return {
        "name": name,
        "image": "busybox",
        "command": [BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(www)],
        "ports": [{"name": "http", "containerPort": 8080}],
        **probes,
    }


def idle(name: str, **probes: Any) -> dict[str, Any]:
    return {**sh(name, "exec sleep 100000"), **probes}


def http_probe(path: str, port: int | str = 8080, scheme: str = "HTTP", **extra: Any) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port, "scheme": scheme}, "periodSeconds": 1, **extra}


def get_pod(daemon: DaemonHarness, name: str) -> dict[str, Any]:
    pod = daemon.pod(name)
    assert pod is not None, f"pod {name} is not listed"
    return pod


def status_of(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for c in pod["status"].get("containerStatuses", []):
        if c["name"] == container:
            return dict(c)
    raise AssertionError(f"container {container} not in pod {pod['metadata']['name']}: {pod['status']}")


def condition(pod: dict[str, Any], kind: str) -> str:
    for c in pod["status"].get("conditions", []):
        if c["type"] == kind:
            return str(c["status"])
    return ""


def wait_ready(daemon: DaemonHarness, name: str, container: str, ready: bool, timeout: float = 15) -> dict[str, Any]:
    try:
        return wait_pod(
            daemon,
            name,
            lambda p: status_of(p, container)["ready"] is ready,
            timeout,
            f"{name}/{container} ready={ready}",
        )
    except AssertionError as e:
        seen = [(x["reason"], x["message"]) for x in events_of(daemon, name)]
        raise AssertionError(f"{e}; status: {daemon.pod(name)}; events: {seen}") from None


def events(daemon: DaemonHarness, pod: str, reason: str, container: str | None = None) -> list[dict[str, Any]]:
    return find_events(daemon, pod, reason, container=container)


def wait_event(
    daemon: DaemonHarness,
    pod: str,
    reason: str,
    container: str | None = None,
    match: Callable[[str], bool] = lambda _m: True,
    timeout: float = 15,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = [e for e in events(daemon, pod, reason, container) if match(e["message"])]
        return found[0] if found else None

    try:
        result: dict[str, Any] = daemon.wait_for(probe, timeout, f"{reason} event of {pod}/{container}")
    except AssertionError as e:
        seen = [(x["reason"], x["message"]) for x in events_of(daemon, pod)]
        raise AssertionError(f"{e}; events: {seen}") from None
    return result


def pod_ip(daemon: DaemonHarness, name: str) -> str:
    ip: str = daemon.wait_for(lambda: get_pod(daemon, name)["status"].get("podIP", ""), 15, f"{name} podIP")
    return ip


def netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def pids_in_pidns(pause: int, argv: list[str]) -> list[int]:
    """Host pids of live processes with exactly this argv in the PID namespace of ``pause``."""
    ns = os.stat(f"/proc/{pause}/ns/pid").st_ino
    want = "\0".join(argv) + "\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "pid").st_ino != ns:
                continue
            if (entry / "cmdline").read_text() == want and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def watch_pause(
    daemon: DaemonHarness, name: str, changes: int, timeout: float, since: int | None = None
) -> list[tuple[float, int]]:
    """Poll the pod's pause pid until it has changed ``changes`` times: [(monotonic time seen, pid), ...].

    ``since`` is the pause pid the count starts from; pass it when the first change may already have happened
    (a recreation takes tens of milliseconds, so it can complete before the first poll)."""
    seen = [(time.monotonic(), daemon.pause_pid(name) if since is None else since)]
    deadline = time.monotonic() + timeout
    while len(seen) <= changes:
        assert time.monotonic() < deadline, f"pause of {name} changed {len(seen) - 1}/{changes} times: {seen}"
        try:
            pid = daemon.pause_pid(name)
        except (OSError, ValueError, KeyError, TypeError):
            pid = seen[-1][1]  # between sandboxes (no record or no sandbox in it)
        if pid != seen[-1][1]:
            seen.append((time.monotonic(), pid))
        time.sleep(0.02)
    return seen


# ----- httpGet ------------------------------------------------------------------------------------------------


def test_http_500_liveness_recreates_pod_and_backs_off(daemon: DaemonHarness, www: Path) -> None:
    path = cgi(www, "fail", "printf 'Status: 500 Internal Server Error\\r\\n\\r\\n'\n")
    daemon.write(
        "h500.yaml",
        pod_yaml(
            "h500", [web(www, livenessProbe=http_probe(path, failureThreshold=2))], terminationGracePeriodSeconds=2
        ),
    )
    daemon.wait_running("h500")
    first_pause = daemon.pause_pid("h500")
    seen = watch_pause(daemon, "h500", 2, 45, since=first_pause)
    unhealthy = events(daemon, "h500", "Unhealthy", "web")
    assert unhealthy and unhealthy[0]["type"] == "Warning"
    assert {e["message"] for e in unhealthy} == {"Liveness probe failed: HTTP probe failed with statuscode: 500"}
    killing = events(daemon, "h500", "Killing", "web")
    assert killing, events_of(daemon, "h500")
    assert killing[0]["message"] == "Container web failed liveness probe, pod will be killed and re-created"
    assert killing[0]["type"] == "Normal"
    # the first recreation is immediate, the second waits out a 10 s back-off
    assert seen[0][1] == first_pause
    assert seen[2][0] - seen[1][0] >= 9, f"second recreation {seen[2][0] - seen[1][0]:.1f}s after the first"
    backoff = events(daemon, "h500", "BackOff", "web")
    assert backoff and backoff[0]["type"] == "Warning", events_of(daemon, "h500")
    assert backoff[0]["message"].startswith("Back-off restarting failed container web in pod h500_default("), backoff
    st = wait_pod(daemon, "h500", lambda p: status_of(p, "web")["restartCount"] >= 2, 10, "restartCount 2")
    assert status_of(st, "web")["restartCount"] >= 2
    assert not alive(first_pause)


def test_http_timeout_is_a_failure(daemon: DaemonHarness, www: Path) -> None:
    path = cgi(www, "slow", "sleep 5\nprintf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'\n")
    daemon.write("hslow.yaml", pod_yaml("hslow", [web(www, readinessProbe=http_probe(path, timeoutSeconds=1))]))
    daemon.wait_running("hslow")
    ip = pod_ip(daemon, "hslow")
    t0 = time.monotonic()
    ev = wait_event(daemon, "hslow", "Unhealthy", "web")
    assert time.monotonic() - t0 < 4
    assert ev["message"] == (
        f'Readiness probe failed: Get "http://{ip}:8080{path}": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )
    pod = get_pod(daemon, "hslow")
    assert status_of(pod, "web")["ready"] is False
    assert condition(pod, "Ready") == "False" and condition(pod, "ContainersReady") == "False"


def test_http_connection_refused_and_named_port(daemon: DaemonHarness, www: Path) -> None:
    daemon.write(
        "hports.yaml",
        pod_yaml(
            "hports",
            [
                web(www, readinessProbe=http_probe("/index.html", port="http")),
                idle("refused", readinessProbe=http_probe("/", port=9999)),
            ],
        ),
    )
    ip = pod_ip(daemon, "hports")
    # the named port resolves to containerPort 8080 of the same container: ready
    wait_ready(daemon, "hports", "web", True)
    ev = wait_event(daemon, "hports", "Unhealthy", "refused")
    assert ev["message"] == (
        f'Readiness probe failed: Get "http://{ip}:9999/": dial tcp {ip}:9999: connect: connection refused'
    )
    pod = get_pod(daemon, "hports")
    assert status_of(pod, "refused")["ready"] is False
    assert condition(pod, "Ready") == "False"
    assert not events(daemon, "hports", "Unhealthy", "web")


_HTTPS_SERVER = """
import http.server, socketserver, ssl, sys
class S(http.server.HTTPServer):
    def server_bind(self):  # no getfqdn(): there is no DNS in the pod
        socketserver.TCPServer.server_bind(self)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[3], "a") as f:
            f.write(self.headers.get("User-Agent", "") + "\\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"secure")
    def log_message(self, *a):
        pass
srv = S(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""


def test_https_self_signed_cert_succeeds(daemon: DaemonHarness, www: Path) -> None:
    cert, key, agents = www / "cert.pem", www / "key.pem", www / "agents"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=self-signed",
        ],
        check=True,
        capture_output=True,
    )
    server = {
        "name": "tls",
        "image": "python",
        "command": [PYTHON, "-c", _HTTPS_SERVER, str(cert), str(key), str(agents)],
    }
    probe = http_probe("/healthz", port=8443, scheme="HTTPS", initialDelaySeconds=1)
    daemon.write("https.yaml", pod_yaml("https", [{**server, "readinessProbe": probe}]))
    pod = wait_ready(daemon, "https", "tls", True, 10)
    assert condition(pod, "Ready") == "True"
    # only refusals while the server was starting, never a certificate error
    early = [e["message"] for e in events(daemon, "https", "Unhealthy")]
    assert all(m.endswith("connect: connection refused") for m in early), early
    ua = agents.read_text().splitlines()
    assert ua and all(a.startswith("kube-probe/") for a in ua), ua


def test_redirect_to_another_host_is_not_followed(daemon: DaemonHarness, www: Path) -> None:
    hits = www / "hits"
    cgi(www, "target", f"echo hit >> {hits}\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhere\\n'\n")
    path = cgi(
        www,
        "redirect",
        "printf 'Status: 302 Found\\r\\nLocation: http://127.0.0.1:8080/cgi-bin/target\\r\\n\\r\\nmoved\\n'\n",
    )
    daemon.write(
        "redir.yaml",
        pod_yaml(
            "redir", [web(www, livenessProbe=http_probe(path, failureThreshold=1), readinessProbe=http_probe(path))]
        ),
    )
    wait_ready(daemon, "redir", "web", True)
    warn = wait_event(daemon, "redir", "ProbeWarning", "web")
    assert warn["type"] == "Warning"
    assert warn["message"].startswith("Liveness probe warning: Probe terminated redirects, Response body: ") or warn[
        "message"
    ].startswith("Readiness probe warning: Probe terminated redirects, Response body: "), warn
    time.sleep(2)
    pod = get_pod(daemon, "redir")
    assert status_of(pod, "web")["restartCount"] == 0 and status_of(pod, "web")["ready"] is True
    assert not events(daemon, "redir", "Unhealthy") and not events(daemon, "redir", "Killing")
    assert not hits.exists(), "the redirect to another host was followed"


# ----- tcpSocket ----------------------------------------------------------------------------------------------


def test_tcp_socket_open_and_closed_ports(daemon: DaemonHarness, www: Path) -> None:
    tcp = {"periodSeconds": 1, "timeoutSeconds": 1}
    daemon.write(
        "tcp.yaml",
        pod_yaml(
            "tcp",
            [
                web(www, readinessProbe={"tcpSocket": {"port": "http"}, **tcp}),
                idle("closed", readinessProbe={"tcpSocket": {"port": 9998}, **tcp}),
            ],
        ),
    )
    ip = pod_ip(daemon, "tcp")
    wait_ready(daemon, "tcp", "web", True)
    ev = wait_event(daemon, "tcp", "Unhealthy", "closed")
    assert ev["message"] == f"Readiness probe failed: dial tcp {ip}:9998: connect: connection refused"
    pod = get_pod(daemon, "tcp")
    assert status_of(pod, "closed")["ready"] is False and status_of(pod, "web")["ready"] is True
    assert condition(pod, "ContainersReady") == "False"


# ----- exec ---------------------------------------------------------------------------------------------------


def test_exec_success_then_failure(daemon: DaemonHarness, www: Path) -> None:
    data = www / "data"
    data.mkdir()
    (data / "file").write_text("x")
    probe = {"exec": {"command": ["ls", f"{data}/file"]}, "periodSeconds": 1, "failureThreshold": 1}
    daemon.write("exec.yaml", pod_yaml("exec", [idle("app", readinessProbe=probe)]))
    pod = wait_ready(daemon, "exec", "app", True)
    assert condition(pod, "Ready") == "True"
    pause = daemon.pause_pid("exec")
    (data / "file").unlink()
    ev = wait_event(daemon, "exec", "Unhealthy", "app")
    assert (
        ev["message"] == f"Readiness probe failed: ls: {data}/file: No such file or directory\n"
        or ev["message"] == f"Readiness probe failed: ls: cannot access '{data}/file': No such file or directory\n"
    ), ev
    pod = wait_ready(daemon, "exec", "app", False)
    assert condition(pod, "Ready") == "False"
    assert status_of(pod, "app")["restartCount"] == 0 and daemon.pause_pid("exec") == pause


@pytest.mark.parametrize("command", [["sleep", "10"], ["sh", "-c", "sleep 10; true"]], ids=["direct", "in-a-shell"])
def test_exec_timeout_kills_the_command(daemon: DaemonHarness, command: list[str]) -> None:
    # period 4: between a timeout (~1 s) and the next probe there is room to look for the command
    probe = {"exec": {"command": command}, "periodSeconds": 4, "timeoutSeconds": 1}
    daemon.write("exect.yaml", pod_yaml("exect", [idle("app", readinessProbe=probe)]))
    daemon.wait_running("exect")
    pause = daemon.pause_pid("exect")
    sleep = ["sleep", "10"]  # the shell forks it (not exec: a command follows) with argv[0] as written
    # it runs inside the pod's PID namespace...
    daemon.wait_for(lambda: pids_in_pidns(pause, sleep), 10, "the probe's sleep 10 in the pod")
    ev = wait_event(daemon, "exect", "Unhealthy", "app", timeout=5)
    assert ev["message"] == f'Readiness probe failed: command "{" ".join(command)}" timed out'
    # ... and is gone once the timeout is reported (the next probe is ~3 s away), with the shell's children
    daemon.wait_for(lambda: not pids_in_pidns(pause, sleep), 1.5, "the timed-out sleep 10 gone")
    pod = get_pod(daemon, "exect")
    assert status_of(pod, "app")["ready"] is False and status_of(pod, "app")["restartCount"] == 0


# ----- startup ------------------------------------------------------------------------------------------------


def test_startup_gates_liveness_then_liveness_runs(daemon: DaemonHarness, www: Path) -> None:
    started, ran = www / "started", www / "liveness-ran"
    startup = {"exec": {"command": ["ls", str(started)]}, "periodSeconds": 1, "failureThreshold": 30}
    liveness = {"exec": {"command": [BUSYBOX, "touch", str(ran)]}, "periodSeconds": 1}
    readiness = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    daemon.write(
        "gate.yaml",
        pod_yaml("gate", [idle("app", startupProbe=startup, livenessProbe=liveness, readinessProbe=readiness)]),
    )
    daemon.wait_running("gate")
    time.sleep(3)
    pod = get_pod(daemon, "gate")
    st = status_of(pod, "app")
    assert st["started"] is False and st["ready"] is False, st
    assert not ran.exists(), "liveness ran before the startup probe succeeded"
    assert {e["message"] for e in events(daemon, "gate", "Unhealthy", "app")} <= {
        f"Startup probe failed: ls: {started}: No such file or directory\n",
        f"Startup probe failed: ls: cannot access '{started}': No such file or directory\n",
    }
    started.write_text("")
    pod = wait_pod(daemon, "gate", lambda p: status_of(p, "app")["started"] is True, 5, "started")
    daemon.wait_for(ran.exists, 5, "liveness running after startup")
    wait_ready(daemon, "gate", "app", True, 5)
    assert status_of(get_pod(daemon, "gate"), "app")["restartCount"] == 0


def test_startup_failure_recreates_the_pod(daemon: DaemonHarness) -> None:
    startup = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
    daemon.write("sfail.yaml", pod_yaml("sfail", [idle("app", startupProbe=startup)], terminationGracePeriodSeconds=2))
    daemon.wait_running("sfail")
    seen = watch_pause(daemon, "sfail", 1, 40, since=daemon.pause_pid("sfail"))
    ev = wait_event(daemon, "sfail", "Killing", "app")
    assert ev["message"] == "Container app failed startup probe, pod will be killed and re-created"
    assert {e["message"] for e in events(daemon, "sfail", "Unhealthy", "app")} == {"Startup probe failed: "}
    assert not alive(seen[0][1])
    wait_pod(daemon, "sfail", lambda p: status_of(p, "app")["restartCount"] >= 1, 10, "restartCount 1")


# ----- readiness ----------------------------------------------------------------------------------------------


def test_readiness_flaps_without_restarts(daemon: DaemonHarness, www: Path) -> None:
    flag = www / "ready"
    flag.write_text("yes\n")
    probe = http_probe("/ready", failureThreshold=1)
    daemon.write("flap.yaml", pod_yaml("flap", [web(www, readinessProbe=probe)]))
    pod = wait_ready(daemon, "flap", "web", True)
    pause, ip = daemon.pause_pid("flap"), pod["status"]["podIP"]
    transitions = set()
    for _ in range(2):
        flag.unlink()
        pod = wait_ready(daemon, "flap", "web", False, 5)
        assert condition(pod, "Ready") == "False" and condition(pod, "ContainersReady") == "False"
        transitions.add(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"))
        flag.write_text("yes\n")
        pod = wait_ready(daemon, "flap", "web", True, 5)
        assert condition(pod, "Ready") == "True" and condition(pod, "ContainersReady") == "True"
        assert status_of(pod, "web")["restartCount"] == 0
        time.sleep(1.1)  # lastTransitionTime has whole seconds
    assert len(transitions) == 2, transitions
    assert daemon.pause_pid("flap") == pause and pod["status"]["podIP"] == ip
    assert http_get(f"http://{ip}:8080/index.html") == "ok\n"
    assert not events(daemon, "flap", "Killing")
    assert {e["message"] for e in events(daemon, "flap", "Unhealthy", "web")} == {
        "Readiness probe failed: HTTP probe failed with statuscode: 404"
    }
    # the prober's figures (scripts/bench probes reads them)
    stats = json.loads(daemon.get_text("/debug/probes"))
    assert stats["probes_run"] >= 6 and stats["workers"] == 1, stats
    assert 0 <= stats["lateness_p50_ms"] <= stats["lateness_p99_ms"] <= stats["lateness_max_ms"], stats


# ----- liveness recreates the whole pod -----------------------------------------------------------------------


def test_liveness_failure_recreates_the_pod_which_serves_again(daemon: DaemonHarness, www: Path) -> None:
    alive_file = www / "alive"
    alive_file.write_text("yes\n")
    probe = http_probe("/alive", failureThreshold=2, initialDelaySeconds=1)
    daemon.write("reborn.yaml", pod_yaml("reborn", [web(www, livenessProbe=probe)], terminationGracePeriodSeconds=2))
    pod = daemon.wait_running("reborn")
    ip0 = pod_ip(daemon, "reborn")
    assert http_get(f"http://{ip0}:8080/index.html") == "ok\n"
    pause0, app0 = daemon.pause_pid("reborn"), daemon.container_pid("reborn", "web")
    net0 = netns_inode(pause0)
    time.sleep(2)
    assert daemon.pause_pid("reborn") == pause0, "recreated while healthy"
    alive_file.unlink()
    killing = wait_event(daemon, "reborn", "Killing", "web", timeout=10)
    alive_file.write_text("yes\n")
    assert killing["message"] == "Container web failed liveness probe, pod will be killed and re-created"
    unhealthy = events(daemon, "reborn", "Unhealthy", "web")
    assert {e["message"] for e in unhealthy} == {"Liveness probe failed: HTTP probe failed with statuscode: 404"}
    assert unhealthy[0]["count"] >= 2 if "count" in unhealthy[0] else len(unhealthy) >= 1
    pause1 = watch_pause(daemon, "reborn", 1, 40, since=pause0)[1][1]
    assert pause1 != pause0
    assert netns_inode(pause1) != net0, "the recreated pod kept its network namespace"
    pod = wait_pod(
        daemon,
        "reborn",
        lambda p: status_of(p, "web")["restartCount"] == 1 and "running" in status_of(p, "web")["state"],
        10,
        "web running again",
    )
    ip1 = pod["status"]["podIP"]
    daemon.wait_for(lambda: http_get(f"http://{ip1}:8080/index.html", timeout=1) == "ok\n", 10, "serving again")
    assert not alive(pause0) and not alive(app0)
    assert daemon.container_pid("reborn", "web") != app0
    # healthy now: it stays up
    time.sleep(3)
    assert daemon.pause_pid("reborn") == pause1
    assert status_of(get_pod(daemon, "reborn"), "web")["restartCount"] == 1


# ----- isolation ----------------------------------------------------------------------------------------------


def ready_is(want: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: condition(p, "Ready") == want


def test_hanging_target_does_not_delay_other_pods(daemon: DaemonHarness, www: Path) -> None:
    hang = cgi(www, "hang", "sleep 30\nprintf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'\n")
    stuck: dict[str, Any] = {"timeoutSeconds": 1, "failureThreshold": 1000}
    daemon.write(
        "hang.yaml",
        pod_yaml(
            "hang",
            [
                web(www, livenessProbe=http_probe(hang, **stuck), readinessProbe=http_probe(hang, **stuck)),
                idle("tcp", readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1, "timeoutSeconds": 1}),
            ],
        ),
    )
    other = www / "other"
    other.mkdir(mode=0o755)
    (other / "ready").write_text("yes\n")
    daemon.write("quick.yaml", pod_yaml("quick", [web(other, readinessProbe=http_probe("/ready", failureThreshold=1))]))
    wait_event(daemon, "hang", "Unhealthy", "web")
    wait_ready(daemon, "quick", "web", True)
    delays = []
    for state in (False, True, False, True):
        if state:
            (other / "ready").write_text("yes\n")
        else:
            (other / "ready").unlink()
        t0 = time.monotonic()
        wait_pod(daemon, "quick", ready_is("True" if state else "False"), 5, f"quick Ready={state}")
        delays.append(time.monotonic() - t0)
    assert max(delays) <= 2.2, delays
    assert status_of(get_pod(daemon, "hang"), "web")["restartCount"] == 0


def test_readiness_is_probed_when_the_container_starts_not_a_period_later(daemon: DaemonHarness, www: Path) -> None:
    """The kubelet's manual readiness trigger: with periodSeconds 300 a pod still turns Ready within seconds of its
    container starting, and of its startup probe succeeding."""
    slow = http_probe("/index.html", periodSeconds=300)
    daemon.write("rtrig.yaml", pod_yaml("rtrig", [web(www, readinessProbe=slow)]))
    startup = http_probe("/index.html", failureThreshold=30)
    daemon.write("strig.yaml", pod_yaml("strig", [web(www, startupProbe=startup, readinessProbe=slow)]))
    for name in ("rtrig", "strig"):
        pod = wait_ready(daemon, name, "web", True, timeout=15)
        assert condition(pod, "Ready") == "True"


def test_metrics_probes_counts_real_probes_and_drops_a_deleted_pods_series(daemon: DaemonHarness, www: Path) -> None:
    """GET /metrics/probes: the kubelet's prober_probe_total and prober_probe_duration_seconds, in Prometheus text."""
    daemon.write("mgood.yaml", pod_yaml("mgood", [web(www, livenessProbe=http_probe("/index.html"))]))
    daemon.write("mbad.yaml", pod_yaml("mbad", [web(www, readinessProbe=http_probe("/missing"))]))
    uid = {n: get_pod_when(daemon, n)["metadata"]["uid"] for n in ("mgood", "mbad")}
    good = f'container="web",namespace="default",pod="mgood",pod_uid="{uid["mgood"]}",probe_type="Liveness"'
    bad = f'container="web",namespace="default",pod="mbad",pod_uid="{uid["mbad"]}",probe_type="Readiness"'

    def counts() -> dict[str, float]:
        found = {}
        for line in daemon.get_text("/metrics/probes").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    daemon.wait_for(
        lambda: (
            counts().get(f'prober_probe_total{{{good},result="successful"}}', 0) >= 2
            and counts().get(f'prober_probe_total{{{bad},result="failed"}}', 0) >= 2
        ),
        20,
        "probe counts",
    )
    found = counts()
    h = 'container="web",namespace="default",pod="mgood",probe_type="Liveness"'
    assert found[f'prober_probe_duration_seconds_bucket{{{h},le="+Inf"}}'] >= 2
    assert 0 < found[f"prober_probe_duration_seconds_sum{{{h}}}"] < found[f"prober_probe_duration_seconds_count{{{h}}}"]
    assert not any("mbad" in k and "duration" in k for k in found)  # failures are counted, not timed
    assert found["process_start_time_seconds"] > 1.7e9
    daemon.remove("mbad.yaml")
    daemon.wait_for(lambda: not any("mbad" in k for k in counts()), 30, "the deleted pod's series gone")
    assert any("mgood" in k for k in counts())


def get_pod_when(daemon: DaemonHarness, name: str, timeout: float = 15) -> dict[str, Any]:
    return dict(daemon.wait_for(lambda: daemon.pod(name), timeout, f"pod {name} listed"))


def test_probing_resumes_after_a_daemon_restart_without_recreating_or_unreadying(
    daemon: DaemonHarness, www: Path
) -> None:
    """Issue 3, point 6: after re-adoption probing resumes, the initial delay already served is not served again,
    healthy pods are not recreated, and a Ready pod stays Ready throughout (the kubelet's restart grace)."""
    liveness = http_probe("/index.html", initialDelaySeconds=5)
    daemon.write("keep.yaml", pod_yaml("keep", [web(www, livenessProbe=liveness, readinessProbe=http_probe("/"))]))
    wait_ready(daemon, "keep", "web", True)
    pause, uid = daemon.pause_pid("keep"), get_pod(daemon, "keep")["metadata"]["uid"]
    live = f'container="web",namespace="default",pod="keep",pod_uid="{uid}",probe_type="Liveness"'
    total = f'prober_probe_total{{{live},result="successful"}}'

    def liveness_probes() -> int:
        lines = daemon.get_text("/metrics/probes").splitlines()
        return next((int(float(line.rsplit(" ", 1)[1])) for line in lines if line.startswith(total + " ")), 0)

    daemon.wait_for(lambda: liveness_probes() >= 1, 15, "the first liveness probe after the initial delay")
    time.sleep(10.5)  # older than the 10 s restart grace
    since = ready_since(get_pod(daemon, "keep"))
    daemon.stop()
    daemon.start()
    restarted = time.monotonic()
    readiness_seen, first_liveness = set(), None
    while time.monotonic() - restarted < 6 and (first_liveness is None or time.monotonic() - restarted < 3):
        pod = daemon.pod("keep")
        if pod is not None and pod["status"].get("containerStatuses"):
            readiness_seen.add(status_of(pod, "web")["ready"])
        if first_liveness is None and liveness_probes() >= 1:
            first_liveness = time.monotonic() - restarted
        time.sleep(0.05)
    assert readiness_seen == {True}, "the pod went NotReady across the daemon restart"
    assert ready_since(get_pod(daemon, "keep")) == since, "Ready changed (lastTransitionTime) across the restart"
    # jitter below one period (1 s), then at once: the 5 s initial delay is not served again
    assert first_liveness is not None and first_liveness < 3, first_liveness
    pod = get_pod(daemon, "keep")
    assert daemon.pause_pid("keep") == pause and status_of(pod, "web")["restartCount"] == 0
    assert not events(daemon, "keep", "Killing")


def ready_since(pod: dict[str, Any]) -> str:
    return str(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"))
