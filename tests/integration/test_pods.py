"""A pod for real: pause as PID 1, containers joined by setns, localhost between containers, pod IP, reaping."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from minikubelet.network.neigh import FIX
from tests.integration.conftest import BUSYBOX, DaemonHarness, alive, http_get, httpd, pod_yaml, running_daemon, sh

pytestmark = pytest.mark.root


def ns_ids(pid: int) -> dict[str, str]:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("net", "ipc", "uts", "pid", "mnt")}


def zombie_children(pid: int) -> list[int]:
    """The children of ``pid`` that exited and were not reaped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_two_containers_share_localhost_and_namespaces(daemon: DaemonHarness, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from web\n")
    daemon.write(
        "web.yaml",
        pod_yaml(
            "web",
            [
                httpd("web", 8080, str(www)),
                sh("client", f"while ! {BUSYBOX} wget -q -O- http://127.0.0.1:8080/; do sleep 0.1; done; sleep 1000"),
            ],
        ),
    )
    pod = daemon.wait_running("web")
    pause = daemon.pause_pid("web")
    web, client = daemon.container_pid("web", "web"), daemon.container_pid("web", "client")
    # pause holds new namespaces; both containers joined them; each container has its own mount namespace
    host = ns_ids(os.getpid())
    p, w, c = ns_ids(pause), ns_ids(web), ns_ids(client)
    for n in ("net", "ipc", "uts", "pid"):
        assert p[n] != host[n], n
        assert w[n] == p[n] == c[n], n
    assert w["mnt"] != host["mnt"] and c["mnt"] != host["mnt"] and w["mnt"] != c["mnt"]
    # the client reached the web container over 127.0.0.1 inside the pod
    log = daemon.log_dir / f"default_web_{pod['metadata']['uid']}" / "client" / "0.log"
    daemon.wait_for(lambda: "hello from web" in log.read_text(), 10, "client output in its log file")
    # hostname is the pod name
    uts = subprocess.run(["nsenter", "-t", str(web), "-u", "hostname"], capture_output=True, text=True)
    assert uts.stdout.strip() == "web"


def test_ps_in_container_shows_only_the_pod_with_pause_as_pid_1(daemon: DaemonHarness) -> None:
    daemon.write(
        "ps.yaml",
        pod_yaml(
            "ps",
            [
                sh("a", f"{BUSYBOX} ps -o pid,comm; sleep 1000"),
                sh("b", "sleep 1000"),
            ],
        ),
    )
    pod = daemon.wait_running("ps")
    log = daemon.log_dir / f"default_ps_{pod['metadata']['uid']}" / "a" / "0.log"
    text = daemon.wait_for(lambda: log.read_text() if "pause" in log.read_text() else "", 10, "ps output")
    lines = [ln.split() for ln in text.strip().splitlines()[1:]]
    assert lines[0] == ["1", "pause"], text
    assert len(lines) <= 5, f"ps must list only the pod's processes:\n{text}"


def test_thousand_orphans_leave_no_zombies(daemon: DaemonHarness) -> None:
    script = "i=0; while [ $i -lt 1000 ]; do (sleep 0.01 &) ; i=$((i+1)); done; echo spawned; sleep 1000"
    daemon.write("orphans.yaml", pod_yaml("orphans", [sh("spawner", script)]))
    pod = daemon.wait_running("orphans")
    log = daemon.log_dir / f"default_orphans_{pod['metadata']['uid']}" / "spawner" / "0.log"
    daemon.wait_for(lambda: "spawned" in log.read_text(), 60, "1000 orphans spawned")
    pause = daemon.pause_pid("orphans")
    daemon.wait_for(lambda: not zombie_children(pause), 20, "no zombie children of pause")
    assert alive(pause)


def test_pod_ip_answers_from_the_host_and_from_other_pods(daemon: DaemonHarness, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("pod ip ok\n")
    daemon.write("a.yaml", pod_yaml("a", [httpd("web", 8080, str(www))]))
    ip = daemon.wait_running("a")["status"]["podIP"]
    assert ipaddress.IPv4Address(ip) in daemon.cidr
    body = daemon.wait_for(lambda: http_get(f"http://{ip}:8080/"), 10, "HTTP from the host")
    assert body == "pod ip ok\n"
    daemon.write("b.yaml", pod_yaml("b", [sh("client", f"{BUSYBOX} wget -q -O- http://{ip}:8080/; sleep 1000")]))
    pod_b = daemon.wait_running("b")
    assert pod_b["status"]["podIP"] != ip
    log = daemon.log_dir / f"default_b_{pod_b['metadata']['uid']}" / "client" / "0.log"
    daemon.wait_for(lambda: "pod ip ok" in log.read_text(), 10, "pod b reached pod a")


def test_remove_manifest_stops_pod_and_frees_network(daemon: DaemonHarness) -> None:
    daemon.write("gone.yaml", pod_yaml("gone", [sh("c", "sleep 1000")]))
    daemon.wait_running("gone")
    pause, c = daemon.pause_pid("gone"), daemon.container_pid("gone", "c")
    links_before = subprocess.run(
        ["ip", "-o", "link", "show", "master", daemon.bridge], capture_output=True, text=True
    ).stdout
    assert links_before.strip()
    t0 = time.monotonic()
    daemon.remove("gone.yaml")
    daemon.wait_gone("gone")
    daemon.wait_for(lambda: not alive(pause) and not alive(c), 10, "pod processes gone")
    assert time.monotonic() - t0 < 30
    links = subprocess.run(["ip", "-o", "link", "show", "master", daemon.bridge], capture_output=True, text=True)
    assert links.stdout.strip() == ""


def _pause_facts(daemon: DaemonHarness, name: str) -> tuple[str, str]:
    pause = daemon.pause_pid(name)
    return Path(f"/proc/{pause}/comm").read_text().strip(), os.readlink(f"/proc/{pause}/exe")


def test_the_compiled_pause_is_used_when_built(daemon: DaemonHarness) -> None:
    from minikubelet.runtime.pausebin import default_pause_path

    if not default_pause_path().exists():
        assert shutil.which("cc") is None, f"scripts/_setup.sh should have built {default_pause_path()}"
        pytest.skip("no C compiler: the Python pause is in use")
    daemon.write("cpause.yaml", pod_yaml("cpause", [sh("c", "sleep 1000")]))
    daemon.wait_running("cpause")
    assert _pause_facts(daemon, "cpause") == ("pause", str(default_pause_path()))
    assert "Using the compiled pause" in daemon.log()


def test_the_python_pause_still_works(run_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MINIKUBELET_PAUSE=python (or no compiled pause): the forked Python pause reaps orphans and records exits."""
    monkeypatch.setenv("MINIKUBELET_PAUSE", "python")
    with running_daemon(run_id, prefix="pypause") as daemon:
        script = "i=0; while [ $i -lt 200 ]; do (sleep 0.01 &) ; i=$((i+1)); done; sleep 0.5; exit 7"
        daemon.write("pyp.yaml", pod_yaml("pyp", [sh("c", script), sh("keep", "sleep 1000")], restartPolicy="Never"))
        daemon.wait_for(lambda: "terminated" in daemon.container("pyp", "c")["state"], 30, "the container's exit")
        assert daemon.container("pyp", "c")["state"]["terminated"]["exitCode"] == 7
        comm, exe = _pause_facts(daemon, "pyp")
        assert comm == "pause" and "python" in os.path.basename(exe)
        pause = daemon.pause_pid("pyp")
        daemon.wait_for(lambda: not zombie_children(pause), 10, "no zombie child of pause")
        assert "Using the Python pause" in daemon.log()


def test_daemon_warns_once_before_the_arp_table_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pod takes two entries of the kernel's one ARP table; the daemon warns, with the fix, near its limit.
    The limit is read from a file of ours holding 40 (room for 4 pods), so a handful of real pods reach it."""
    limit = tmp_path / "gc_thresh3"
    limit.write_text("40\n")
    monkeypatch.setenv("MINIKUBELET_GC_THRESH3_FILE", str(limit))
    with running_daemon("arp") as daemon:
        for i in range(5):
            daemon.write(f"a{i}.yaml", pod_yaml(f"a{i}", [sh("c", "sleep 600")]))
        for i in range(5):
            daemon.wait_running(f"a{i}", timeout=60)
        warnings = [line for line in daemon.log().splitlines() if "ARP table is nearly full" in line]
        assert len(warnings) == 1, warnings
        assert "gc_thresh3=40" in warnings[0] and "about 4 pods" in warnings[0] and warnings[0].endswith("pods=4")
        assert f"raise it with: {FIX} " in warnings[0]
