"""Every path kubectl debug, attach and run -it take ends in one clear sentence from the server or works, never a
panic and never "could not find the requested resource" (issue 12 points 1 and 2): attach and run -i work (the
relay), attaching to a container without stdin says why; debug paths name what this node does not do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import DaemonHarness, pod_yaml, sh
from tests.integration.test_kubectl import Kubectl

pytestmark = pytest.mark.root

README = "see 'Not supported' in minikubelet's README"
EPHEMERAL = "Error from server (MethodNotAllowed): ephemeral containers (kubectl debug) are not supported"
PROTOBUF = "Error from server (UnsupportedMediaType): create pod: this API reads JSON and YAML bodies, not protobuf"


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    k = Kubectl(kubectl_bin, daemon, kubecachedir)
    daemon.write("p.yaml", pod_yaml("p", [sh("c", "sleep 1000")]))
    daemon.wait_running("p")
    return k


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["debug", "p", "--image=busybox"],
            EPHEMERAL + ' by this node (minikubelet) yet, so none can be added to pod "p"',
        ),
        (["debug", "-it", "p", "--image=busybox", "--target=c"], EPHEMERAL),
        (["debug", "p", "--image=busybox", "--profile=sysadmin", "--", "sleep", "1"], EPHEMERAL),
        (["debug", "p", "--image=busybox", "--copy-to=p2"], PROTOBUF),
        (["debug", "p", "-it", "--copy-to=p3", "--container=c", "--", "sh"], PROTOBUF),
        (["debug", "node/node1", "--image=busybox"], PROTOBUF),
    ],
    ids=["debug", "debug-it-target", "debug-profile", "copy-to", "copy-to-it", "node"],
)
def test_clear_error_never_a_panic(kubectl: Kubectl, args: list[str], expected: str) -> None:
    r = kubectl.run(*args, check=False)
    assert r.returncode == 1, r
    assert expected in r.stderr and README in r.stderr, r.stderr
    assert "panic" not in r.stderr and "could not find the requested resource" not in r.stderr, r.stderr
    assert "p2" not in kubectl("get", "pods", "-o", "name")  # nothing was created


@pytest.mark.parametrize("args", [["attach", "p"], ["attach", "-it", "p"]], ids=["attach", "attach-it"])
def test_attach_to_a_container_without_stdin_says_why(kubectl: Kubectl, args: list[str]) -> None:
    r = kubectl.run(*args, check=False)
    assert r.returncode == 1, r
    assert ('unable to upgrade connection: container c of pod "p" has neither stdin nor tty, so there is nothing to '
            "attach to") in r.stderr, r.stderr
    assert "kubectl exec -it p -- sh for a shell" in r.stderr and "panic" not in r.stderr, r.stderr


def test_missing_pod_is_not_found(kubectl: Kubectl) -> None:
    for args in (["debug", "nope", "--image=busybox"], ["attach", "nope"]):
        r = kubectl.run(*args, check=False)
        assert r.returncode == 1 and 'pods "nope" not found' in r.stderr, r.stderr


def test_run_rm_i_attaches_and_deletes(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """``kubectl run --rm -i --restart=Never`` creates the pod with stdin (no "not enforced" warning any more), prints
    its output (an echo may end before kubectl attaches; kubectl then streams the log, as against a kubelet) and
    deletes the pod. test_attach.py covers the attach itself with piped stdin."""
    r = kubectl.run(
        "run",
        "--rm",
        "-i",
        "--restart=Never",
        "once",
        "--image=busybox",
        "--annotations=minikubelet.io/node-filesystem=true",
        "--",
        "/bin/busybox",
        "echo",
        "hello-from-once",
    )
    assert "hello-from-once" in r.stdout and 'pod "once" deleted' in r.stdout, r
    assert "not enforced" not in r.stderr, r.stderr
    assert "panic" not in r.stderr
    daemon.wait_gone("once")
