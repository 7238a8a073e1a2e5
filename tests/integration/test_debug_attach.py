"""Every path kubectl debug, attach and run -it take ends in one clear sentence from the server, never a panic and
never "could not find the requested resource" (issue 12 points 1 and 2, until the relay and ephemeral containers
land): each names what this node does not do, what to use instead, and the README's 'Not supported'."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import DaemonHarness, pod_yaml, sh
from tests.integration.test_kubectl import Kubectl

pytestmark = pytest.mark.root

README = "see 'Not supported' in minikubelet's README"
EPHEMERAL = 'Error from server (MethodNotAllowed): ephemeral containers (kubectl debug) are not supported'
PROTOBUF = "Error from server (UnsupportedMediaType): create pod: this API reads JSON and YAML bodies, not protobuf"


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    k = Kubectl(kubectl_bin, daemon, kubecachedir)
    daemon.write("p.yaml", pod_yaml("p", [sh("c", "sleep 1000")]))
    daemon.wait_running("p")
    return k


@pytest.mark.parametrize(("args", "expected"), [
    (["debug", "p", "--image=busybox"], EPHEMERAL + ' by this node (minikubelet) yet, so none can be added to pod "p"'),
    (["debug", "-it", "p", "--image=busybox", "--target=c"], EPHEMERAL),
    (["debug", "p", "--image=busybox", "--profile=sysadmin", "--", "sleep", "1"], EPHEMERAL),
    (["debug", "p", "--image=busybox", "--copy-to=p2"], PROTOBUF),
    (["debug", "p", "-it", "--copy-to=p3", "--container=c", "--", "sh"], PROTOBUF),
    (["debug", "node/node1", "--image=busybox"], PROTOBUF),
    (["attach", "p"], 'unable to upgrade connection: attaching to pod "p" is not supported by this node'),
    (["attach", "-it", "p"], "kubectl exec -it p -- sh for a shell"),
], ids=["debug", "debug-it-target", "debug-profile", "copy-to", "copy-to-it", "node", "attach", "attach-it"])
def test_clear_error_never_a_panic(kubectl: Kubectl, args: list[str], expected: str) -> None:
    r = kubectl.run(*args, check=False)
    assert r.returncode == 1, r
    assert expected in r.stderr and README in r.stderr, r.stderr
    assert "panic" not in r.stderr and "could not find the requested resource" not in r.stderr, r.stderr
    assert "p2" not in kubectl("get", "pods", "-o", "name")  # nothing was created


def test_missing_pod_is_not_found(kubectl: Kubectl) -> None:
    for args in (["debug", "nope", "--image=busybox"], ["attach", "nope"]):
        r = kubectl.run(*args, check=False)
        assert r.returncode == 1 and 'pods "nope" not found' in r.stderr, r.stderr


def test_run_rm_i_falls_back_to_logs_with_the_reason(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """``kubectl run --rm -i --restart=Never`` creates the pod (warning that stdin is not enforced), cannot attach
    (saying why), streams the output instead and deletes the pod."""
    r = kubectl.run("run", "--rm", "-i", "--restart=Never", "once", "--image=busybox",
                    "--annotations=minikubelet.io/node-filesystem=true", "--", "echo", "hello-from-once")
    assert "hello-from-once" in r.stdout and 'pod "once" deleted' in r.stdout, r
    assert "Warning: spec.containers[0].stdin is accepted but not enforced" in r.stderr, r.stderr
    assert 'falling back to streaming logs: unable to upgrade connection: attaching to pod "once"' in r.stderr
    assert "panic" not in r.stderr
    daemon.wait_gone("once")
