"""Container lifecycle as a user sees it through /pods, /events and the log files.

Restart policies, CrashLoopBackOff with real timing, init containers, graceful termination, start errors,
env/args/workingDir/runAsUser, and the normal start events (kubelet-semantics.md §3 and §4).
"""

from __future__ import annotations

import calendar
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BUSYBOX, DaemonHarness, alive, events_of, find_events, pod_yaml, sh, wait_pod

pytestmark = pytest.mark.root


# ----- helpers ------------------------------------------------------------------------------------------------


def get_pod(daemon: DaemonHarness, name: str) -> dict[str, Any]:
    pod = daemon.pod(name)
    assert pod is not None, f"pod {name} is not listed"
    return pod


def status_of(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for c in (*pod["status"].get("initContainerStatuses", []), *pod["status"].get("containerStatuses", [])):
        if c["name"] == container:
            return dict(c)
    raise AssertionError(f"container {container} not in pod {pod['metadata']['name']}: {pod['status']}")


def log_file(daemon: DaemonHarness, pod: dict[str, Any], container: str, instance: int = 0) -> Path:
    meta = pod["metadata"]
    return daemon.log_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / container / f"{instance}.log"


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def full_name(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta['uid']})"


def wait_log(daemon: DaemonHarness, path: Path, marker: str, timeout: float = 10) -> str:
    """The log file's text once ``marker`` appears in it."""

    def probe() -> str:
        text = read(path)
        return text if marker in text else ""

    result: str = daemon.wait_for(probe, timeout, f"{marker!r} in {path}")
    return result


def parse_time(ts: str) -> float:
    return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))


def bridge_links(daemon: DaemonHarness) -> str:
    out = subprocess.run(["ip", "-o", "link", "show", "master", daemon.bridge], capture_output=True, text=True)
    return out.stdout.strip()


def wait_container(
    daemon: DaemonHarness,
    pod: str,
    container: str,
    check: Callable[[dict[str, Any], dict[str, Any]], Any],
    timeout: float = 20,
    what: str = "",
) -> dict[str, Any]:
    """Poll until ``check(container_status, pod)`` is true; returns that container status."""

    def probe() -> dict[str, Any] | None:
        p = daemon.pod(pod)
        if p is None:
            return None
        try:
            st = status_of(p, container)
        except AssertionError:
            return None
        return st if check(st, p) else None

    result: dict[str, Any] = daemon.wait_for(probe, timeout, what or f"{pod}/{container} condition")
    return result


def wait_phase(daemon: DaemonHarness, name: str, phase: str, timeout: float = 20) -> dict[str, Any]:
    return wait_pod(daemon, name, lambda p: bool(p["status"]["phase"] == phase), timeout, f"pod {name} phase {phase}")


def assert_terminated(term: dict[str, Any], exit_code: int, reason: str) -> None:
    assert term["exitCode"] == exit_code, term
    assert term["reason"] == reason, term
    assert term.get("startedAt"), term
    assert term.get("finishedAt"), term
    assert parse_time(term["finishedAt"]) >= parse_time(term["startedAt"]), term
    assert term.get("containerID", "").startswith("minikubelet://"), term


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-readable temp dir (tmp_path's parents are 0700, so a runAsUser container could not enter it)."""
    d = Path(tempfile.mkdtemp(prefix="mk-lifecycle-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----- 1. restartPolicy Always --------------------------------------------------------------------------------


def test_always_restarts_containers_that_exit_0_and_1(daemon: DaemonHarness) -> None:
    daemon.write(
        "always.yaml",
        pod_yaml(
            "always",
            [
                sh("ok", "echo ok; exit 0"),
                sh("bad", "echo bad; exit 1"),
            ],
        ),
    )
    phases: set[str] = set()

    def both_restarted() -> dict[str, Any] | None:
        p = daemon.pod("always")
        if p is None:
            return None
        if p["status"].get("containerStatuses") and any(
            c["restartCount"] > 0 or c["lastState"] for c in p["status"]["containerStatuses"]
        ):
            phases.add(p["status"]["phase"])
        ok, bad = status_of(p, "ok"), status_of(p, "bad")
        return (
            p if ok["restartCount"] >= 1 and bad["restartCount"] >= 1 and ok["lastState"] and bad["lastState"] else None
        )

    pod = daemon.wait_for(both_restarted, 20, "both containers restarted")
    assert_terminated(status_of(pod, "ok")["lastState"]["terminated"], 0, "Completed")
    assert_terminated(status_of(pod, "bad")["lastState"]["terminated"], 1, "Error")
    # the pod never left Running while its containers came and went
    assert phases == {"Running"}, phases
    assert pod["status"]["phase"] == "Running"
    # both instances wrote their own log file
    for name in ("ok", "bad"):
        assert wait_log(daemon, log_file(daemon, pod, name, 1), name).strip() == name
        assert read(log_file(daemon, pod, name, 0)).strip() == name
    # still Running a little later (the containers are backing off, not done)
    time.sleep(1)
    assert get_pod(daemon, "always")["status"]["phase"] == "Running"


# ----- 2. restartPolicy OnFailure ------------------------------------------------------------------------------


def test_on_failure_does_not_restart_success_and_pod_succeeds(daemon: DaemonHarness) -> None:
    daemon.write("onf-ok.yaml", pod_yaml("onf-ok", [sh("job", "echo done; exit 0")], restartPolicy="OnFailure"))
    pod = wait_phase(daemon, "onf-ok", "Succeeded")
    st = status_of(pod, "job")
    assert_terminated(st["state"]["terminated"], 0, "Completed")
    assert st["restartCount"] == 0
    assert st["lastState"] == {}
    # let time pass: no restart happens, the pod stays Succeeded and listed
    time.sleep(2)
    pod = get_pod(daemon, "onf-ok")
    assert pod["status"]["phase"] == "Succeeded"
    st = status_of(pod, "job")
    assert st["restartCount"] == 0 and "terminated" in st["state"], st
    assert not log_file(daemon, pod, "job", 1).exists()
    assert read(log_file(daemon, pod, "job", 0)).strip() == "done"
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready.get("reason") == "PodCompleted", ready


def test_on_failure_restarts_only_the_failing_container(daemon: DaemonHarness) -> None:
    daemon.write(
        "onf-mix.yaml",
        pod_yaml(
            "onf-mix",
            [
                sh("ok", "exit 0"),
                sh("bad", "exit 2"),
            ],
            restartPolicy="OnFailure",
        ),
    )
    bad = wait_container(
        daemon, "onf-mix", "bad", lambda c, _p: c["restartCount"] >= 1 and c["lastState"], what="bad restarted"
    )
    assert_terminated(bad["lastState"]["terminated"], 2, "Error")
    pod = get_pod(daemon, "onf-mix")
    # OnFailure with a failure that will be retried: Running
    assert pod["status"]["phase"] == "Running"
    ok = status_of(pod, "ok")
    assert_terminated(ok["state"]["terminated"], 0, "Completed")
    assert ok["restartCount"] == 0


# ----- 3. restartPolicy Never ----------------------------------------------------------------------------------


def test_never_failed_pod_keeps_status_and_releases_its_sandbox(daemon: DaemonHarness) -> None:
    daemon.write("never.yaml", pod_yaml("never", [sh("c", "echo bye; sleep 1; exit 3")], restartPolicy="Never"))
    running = daemon.wait_running("never")
    pause = daemon.pause_pid("never")
    assert running["status"].get("podIP")
    assert bridge_links(daemon)
    pod = wait_phase(daemon, "never", "Failed")
    st = status_of(pod, "c")
    assert_terminated(st["state"]["terminated"], 3, "Error")
    assert st["restartCount"] == 0
    assert st["ready"] is False
    # the sandbox is released: pause gone, veth gone, the pod IP no longer reported
    daemon.wait_for(lambda: not alive(pause), 10, "pause exited")
    daemon.wait_for(lambda: not bridge_links(daemon), 10, "veth removed from the bridge")
    pod = wait_pod(daemon, "never", lambda p: "podIP" not in p["status"], 10, "podIP gone from status")
    assert "podIPs" not in pod["status"]
    cond = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert cond["PodReadyToStartContainers"] == "False", cond
    # ... yet the pod stays listed, Failed, and is not restarted
    time.sleep(2)
    pod = get_pod(daemon, "never")
    assert pod["status"]["phase"] == "Failed"
    assert status_of(pod, "c")["restartCount"] == 0
    assert read(log_file(daemon, pod, "c", 0)).strip() == "bye"
    # removing the manifest of a finished pod removes it promptly (nothing left to stop)
    daemon.remove("never.yaml")
    daemon.wait_gone("never", 15)


# ----- 4. CrashLoopBackOff with real timing --------------------------------------------------------------------


def test_crashloop_backoff_timing_messages_and_event(daemon: DaemonHarness) -> None:
    t_write = time.monotonic()
    daemon.write("crashy.yaml", pod_yaml("crashy", [sh("crash", "echo crashing; exit 1")]))

    def backing_off(restarts: int, delay: str) -> Any:
        return lambda c, _p: (
            c["restartCount"] == restarts
            and c["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and f"back-off {delay} " in c["state"]["waiting"].get("message", "")
        )

    # exit #1 → immediate restart; exit #2 → CrashLoopBackOff 10s
    first = wait_container(daemon, "crashy", "crash", backing_off(1, "10s"), 15, "first CrashLoopBackOff")
    t_backoff1 = time.monotonic()
    assert t_backoff1 - t_write < 8, "the first restart must be immediate, not backed off"
    pod = get_pod(daemon, "crashy")
    fn = full_name(pod)
    assert first["state"]["waiting"]["message"] == f"back-off 10s restarting failed container=crash pod={fn}"
    assert_terminated(first["lastState"]["terminated"], 1, "Error")
    assert pod["status"]["phase"] == "Running"
    backoffs = find_events(daemon, "crashy", "BackOff", container="crash")
    assert backoffs, events_of(daemon, "crashy")
    assert backoffs[0]["type"] == "Warning"
    assert backoffs[0]["message"] == f"Back-off restarting failed container crash in pod {fn}"
    assert backoffs[0]["involvedObject"]["uid"] == pod["metadata"]["uid"]
    prev_finished = parse_time(first["lastState"]["terminated"]["finishedAt"])

    # the second restart waits ~10 s after the previous exit
    restarted = wait_container(daemon, "crashy", "crash", lambda c, _p: c["restartCount"] >= 2, 20, "second restart")
    t_restart2 = time.monotonic()
    assert t_restart2 - t_backoff1 >= 9, f"restarted after only {t_restart2 - t_backoff1:.1f}s of back-off"
    assert restarted["restartCount"] == 2

    # ... and then backs off for 20 s
    second = wait_container(daemon, "crashy", "crash", backing_off(2, "20s"), 10, "second CrashLoopBackOff")
    assert second["state"]["waiting"]["message"] == f"back-off 20s restarting failed container=crash pod={fn}"
    started3 = parse_time(second["lastState"]["terminated"]["startedAt"])
    assert started3 - prev_finished >= 9, second  # whole seconds in the API
    assert get_pod(daemon, "crashy")["status"]["phase"] == "Running"
    assert time.monotonic() - t_write < 45
    # three instances, three log files
    for i in range(3):
        assert read(log_file(daemon, pod, "crash", i)).strip() == "crashing", i


# ----- 5. init containers -------------------------------------------------------------------------------------


def test_init_containers_run_in_order_before_the_app(daemon: DaemonHarness, shared_dir: Path) -> None:
    order = shared_dir / "order"
    spec = {
        "initContainers": [
            sh("init-1", f"echo init-1 >> {order}"),
            sh("init-2", f"sleep 1; echo init-2 >> {order}"),
        ]
    }
    daemon.write("inits.yaml", pod_yaml("inits", [sh("app", f"echo app >> {order}; sleep 1000")], **spec))
    # while init-2 runs the app waits in PodInitializing and the pod is Pending
    waiting = wait_container(daemon, "inits", "init-2", lambda c, _p: "running" in c["state"], 15, "init-2 running")
    assert waiting["name"] == "init-2"
    pod = get_pod(daemon, "inits")
    assert pod["status"]["phase"] == "Pending"
    assert status_of(pod, "app")["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert "app" not in read(order)

    pod = daemon.wait_running("inits")
    daemon.wait_for(lambda: read(order) == "init-1\ninit-2\napp\n", 10, f"order file (now {read(order)!r})")
    inits = pod["status"]["initContainerStatuses"]
    assert [c["name"] for c in inits] == ["init-1", "init-2"]
    for c in inits:
        assert_terminated(c["state"]["terminated"], 0, "Completed")
        assert c["restartCount"] == 0
    app = status_of(pod, "app")
    assert parse_time(app["state"]["running"]["startedAt"]) >= parse_time(inits[1]["state"]["terminated"]["finishedAt"])
    cond = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert cond["Initialized"] == "True" and cond["Ready"] == "True", cond
    # events name the init containers by their own field path
    for name in ("init-1", "init-2"):
        assert find_events(daemon, "inits", "Started", container=name, kind="initContainers"), name


def test_completed_init_containers_are_ready(daemon: DaemonHarness) -> None:
    daemon.write(
        "initready.yaml", pod_yaml("initready", [sh("app", "sleep 1000")], initContainers=[sh("init", "exit 0")])
    )
    pod = daemon.wait_running("initready")
    init = status_of(pod, "init")
    assert "terminated" in init["state"]
    assert init["ready"] is True, init


def test_failing_init_container_with_never_fails_the_pod(daemon: DaemonHarness) -> None:
    daemon.write(
        "initfail.yaml",
        pod_yaml(
            "initfail",
            [sh("app", "echo app; sleep 1000")],
            initContainers=[sh("init", "echo failing; exit 4")],
            restartPolicy="Never",
        ),
    )
    pod = wait_phase(daemon, "initfail", "Failed")
    init = status_of(pod, "init")
    assert_terminated(init["state"]["terminated"], 4, "Error")
    assert init["restartCount"] == 0
    # let time pass: neither the init container is retried nor the app started
    time.sleep(2)
    pod = get_pod(daemon, "initfail")
    assert pod["status"]["phase"] == "Failed"
    assert status_of(pod, "init")["restartCount"] == 0
    app = status_of(pod, "app")
    assert "waiting" in app["state"], app
    assert app["restartCount"] == 0 and "containerID" not in app
    assert not find_events(daemon, "initfail", "Started", container="app")
    assert not log_file(daemon, pod, "app", 0).exists()
    cond = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert cond["Initialized"] == "False", cond


def test_failed_init_pod_releases_its_sandbox(daemon: DaemonHarness) -> None:
    daemon.write(
        "initrel.yaml",
        pod_yaml(
            "initrel",
            [sh("app", "sleep 1000")],
            initContainers=[sh("init", "exit 4")],
            restartPolicy="Never",
        ),
    )
    wait_phase(daemon, "initrel", "Failed")
    daemon.wait_for(lambda: "podIP" not in get_pod(daemon, "initrel")["status"], 5, "podIP released")
    daemon.wait_for(lambda: not bridge_links(daemon), 10, "veth removed from the bridge")


# ----- 6. graceful termination ---------------------------------------------------------------------------------


def test_sigterm_reaches_the_container_and_killing_event(daemon: DaemonHarness) -> None:
    script = "trap 'echo got TERM; sleep 1; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
    daemon.write("graceful.yaml", pod_yaml("graceful", [sh("main", script)]))
    pod = daemon.wait_running("graceful")
    log = log_file(daemon, pod, "main")
    wait_log(daemon, log, "ready")
    pid = daemon.container_pid("graceful", "main")
    t0 = time.monotonic()
    daemon.remove("graceful.yaml")
    # the pod log directory goes with the pod, so read the log while the pod is terminating
    wait_log(daemon, log, "got TERM", 15)
    terminating = get_pod(daemon, "graceful")
    assert terminating["metadata"].get("deletionTimestamp"), terminating["metadata"]
    daemon.wait_gone("graceful", 20)
    assert time.monotonic() - t0 < 15, "a container that exits on TERM must not wait for the grace period"
    assert not alive(pid)
    killing = find_events(daemon, "graceful", "Killing", container="main")
    assert killing, events_of(daemon, "graceful")
    assert killing[0]["type"] == "Normal"
    assert killing[0]["message"] == "Stopping container main"


def test_container_ignoring_sigterm_is_killed_after_the_grace_period(daemon: DaemonHarness) -> None:
    script = "trap '' TERM; echo ready; while true; do sleep 0.1; done"
    daemon.write("stubborn.yaml", pod_yaml("stubborn", [sh("main", script)], terminationGracePeriodSeconds=3))
    pod = daemon.wait_running("stubborn")
    wait_log(daemon, log_file(daemon, pod, "main"), "ready")
    pid = daemon.container_pid("stubborn", "main")
    t0 = time.monotonic()
    daemon.remove("stubborn.yaml")
    # while terminating the pod stays listed with a deletionTimestamp, its container still running
    terminating = wait_pod(
        daemon, "stubborn", lambda p: "deletionTimestamp" in p["metadata"], 5, "deletionTimestamp while terminating"
    )
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 3
    assert "running" in status_of(terminating, "main")["state"]
    assert time.monotonic() - t0 < 3
    assert alive(pid), "SIGTERM was ignored, so the container must still run within the grace period"
    daemon.wait_gone("stubborn", 20)
    elapsed = time.monotonic() - t0
    assert 2.9 <= elapsed <= 15, f"pod gone after {elapsed:.1f}s, expected SIGKILL after the 3 s grace period"
    assert not alive(pid)
    assert find_events(daemon, "stubborn", "Killing", container="main")


# ----- 7. configuration and start errors -----------------------------------------------------------------------


def test_container_without_command_is_a_config_error(daemon: DaemonHarness) -> None:
    daemon.write("nocmd.yaml", pod_yaml("nocmd", [{"name": "img", "image": "busybox"}]))
    st = wait_container(
        daemon,
        "nocmd",
        "img",
        lambda c, _p: c["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError",
        what="CreateContainerConfigError",
    )
    assert "command" in st["state"]["waiting"]["message"], st
    assert st["restartCount"] == 0
    assert get_pod(daemon, "nocmd")["status"]["phase"] == "Pending"
    failed = daemon.wait_for(lambda: find_events(daemon, "nocmd", "Failed", container="img"), 10, "Failed event")
    assert failed[0]["type"] == "Warning"
    assert "command" in failed[0]["message"]


def test_missing_executable_is_a_start_error(daemon: DaemonHarness) -> None:
    missing = {"name": "ghost", "image": "busybox", "command": ["mk-no-such-program-xyz", "--flag"]}
    daemon.write("ghost.yaml", pod_yaml("ghost", [missing], restartPolicy="Never"))
    pod = wait_phase(daemon, "ghost", "Failed")
    st = status_of(pod, "ghost")
    term = st["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128, term
    assert "executable file not found in $PATH" in term["message"], term
    assert "mk-no-such-program-xyz" in term["message"], term
    assert st["restartCount"] == 0
    failed = daemon.wait_for(lambda: find_events(daemon, "ghost", "Failed", container="ghost"), 10, "Failed event")
    assert failed[0]["type"] == "Warning"
    assert "executable file not found in $PATH" in failed[0]["message"]
    assert not find_events(daemon, "ghost", "Started")


def test_missing_executable_under_always_backs_off(daemon: DaemonHarness) -> None:
    missing = {"name": "ghost", "image": "busybox", "command": ["mk-no-such-program-xyz"]}
    daemon.write("ghost2.yaml", pod_yaml("ghost2", [missing]))
    st = wait_container(
        daemon,
        "ghost2",
        "ghost",
        lambda c, _p: c["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff",
        15,
        "StartError then CrashLoopBackOff",
    )
    last = st["lastState"]["terminated"]
    assert last["reason"] == "StartError" and last["exitCode"] == 128, last
    assert "executable file not found in $PATH" in last["message"]
    assert st["restartCount"] == 1


# ----- 8. env, fieldRef, $(VAR) expansion, workingDir, runAsUser ----------------------------------------------


def test_env_args_working_dir_and_user(daemon: DaemonHarness, shared_dir: Path) -> None:
    bb = BUSYBOX
    script = (
        f'echo "uid=`{bb} id -u` gid=`{bb} id -g`"; echo "pwd=`pwd`"; '
        'echo "name=$POD_NAME ns=$POD_NS ip=$POD_IP greeting=$GREETING combined=$COMBINED"; '
        'echo "args=$1|$2|$3|$4"; echo done'
    )
    container = {
        "name": "show",
        "image": "busybox",
        "command": [bb, "sh", "-c", script, "sh"],
        "args": ["$(POD_NAME)", "x-$(GREETING)-y", "$(UNDEFINED_VAR)", "$$(GREETING)"],
        "env": [
            {"name": "GREETING", "value": "hello"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "COMBINED", "value": "$(GREETING)-$(POD_NAME)"},
        ],
        "workingDir": str(shared_dir),
        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
    }
    daemon.write("envpod.yaml", pod_yaml("envpod", [container]))
    # it exits 0 and restartPolicy Always starts it again at once: the second instance logs into 1.log
    st = wait_container(daemon, "envpod", "show", lambda c, _p: c["restartCount"] >= 1, 20, "restarted once")
    assert_terminated(st["lastState"]["terminated"], 0, "Completed")
    pod = get_pod(daemon, "envpod")
    ip = pod["status"]["podIP"]
    expected = [
        "uid=65534 gid=65534",
        f"pwd={shared_dir}",
        f"name=envpod ns=default ip={ip} greeting=hello combined=hello-envpod",
        "args=envpod|x-hello-y|$(UNDEFINED_VAR)|$(GREETING)",
        "done",
    ]
    for i in (0, 1):
        text = wait_log(daemon, log_file(daemon, pod, "show", i), "done")
        assert text.splitlines() == expected, text


# ----- 9. events of a normal start -----------------------------------------------------------------------------


def test_created_and_started_events(daemon: DaemonHarness) -> None:
    daemon.write("evpod.yaml", pod_yaml("evpod", [sh("main", "sleep 1000"), sh("side", "sleep 1000")]))
    pod = daemon.wait_running("evpod")
    for name in ("main", "side"):
        started = find_events(daemon, "evpod", "Started", container=name)
        assert len(started) == 1
        ev = started[0]
        assert ev["type"] == "Normal"
        assert ev["message"] == f"Started container {name}"
        assert ev["involvedObject"]["fieldPath"] == f"spec.containers{{{name}}}"
        assert ev["involvedObject"]["uid"] == pod["metadata"]["uid"]
        assert ev["involvedObject"]["kind"] == "Pod" and ev["involvedObject"]["namespace"] == "default"
        assert ev["count"] == 1
        created = find_events(daemon, "evpod", "Created", container=name)
        assert len(created) == 1, created
        assert created[0]["type"] == "Normal"
        assert created[0]["message"].startswith("Created container") and name in created[0]["message"]
    # nothing went wrong
    assert not [e for e in events_of(daemon, "evpod") if e["type"] == "Warning"]
