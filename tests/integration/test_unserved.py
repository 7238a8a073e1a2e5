"""What a node does not serve, as the real kubectl shows it: a message naming what this API serves, what to use
instead and where the README says more (api/unserved.py); never a bare "could not find the requested resource"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import DaemonHarness
from tests.integration.test_kubectl import Kubectl

pytestmark = pytest.mark.root

SINGLE_NODE = "this API is a single node's (minikubelet): it serves pods, nodes, events and namespaces"
README = "see 'Not supported' in minikubelet's README"


@pytest.fixture
def kubectl(kubectl_bin: Path, daemon: DaemonHarness, kubecachedir: Path) -> Kubectl:
    return Kubectl(kubectl_bin, daemon, kubecachedir)


@pytest.mark.parametrize(
    ("args", "instead"),
    [
        (["create", "deployment", "web", "--image=nginx"], "run a Pod instead: kubectl run NAME --image=IMAGE"),
        (["create", "secret", "generic", "s", "--from-literal=a=b"], "put the values in the pod's env"),
        (["create", "configmap", "c", "--from-literal=a=b"], "put the values in the pod's env"),
        (["create", "job", "j", "--image=busybox"], "--restart=Never"),
        (["delete", "svc", "web"], "kubectl port-forward pod/NAME PORT"),
        (["get", "deploy", "web"], "run a Pod instead"),
    ],
    ids=["create-deployment", "create-secret", "create-configmap", "create-job", "delete-svc", "get-one-deploy"],
)
def test_writes_and_gets_say_why(kubectl: Kubectl, args: list[str], instead: str) -> None:
    r = kubectl.run(*args, check=False)
    assert r.returncode == 1
    assert SINGLE_NODE in r.stderr and instead in r.stderr and README in r.stderr, r.stderr
    assert "panic" not in r.stderr


@pytest.mark.parametrize("kind", ["svc", "deployments", "cm", "jobs", "ingress", "statefulsets"])
def test_lists_are_empty_with_a_warning(kubectl: Kubectl, kind: str) -> None:
    r = kubectl.run("get", kind, check=False)
    assert r.returncode == 0, r.stderr
    assert "No resources found in default namespace." in r.stdout + r.stderr
    assert r.stderr.startswith("Warning: there are no ") and SINGLE_NODE in r.stderr


def test_get_all_api_resources_and_cluster_info(kubectl: Kubectl) -> None:
    r = kubectl.run("get", "all")
    assert "Warning" not in r.stderr  # only pods are in the "all" category
    names = [line.split()[0] for line in kubectl("api-resources").splitlines()[1:]]
    assert sorted(set(names)) == ["events", "namespaces", "nodes", "pods"]  # nothing unserved is offered
    info = kubectl.run("cluster-info")
    assert "Kubernetes control plane is running at https://127.0.0.1:" in info.stdout


def test_creating_a_namespace_says_how_namespaces_work(kubectl: Kubectl) -> None:
    r = kubectl.run("create", "ns", "team-a", check=False)
    assert r.returncode == 1
    assert "a namespace exists as soon as a pod names it in metadata.namespace" in r.stderr


def test_kubectl_debug_gets_an_error_not_a_panic(kubectl: Kubectl, daemon: DaemonHarness) -> None:
    """The 404 for pods/x/ephemeralcontainers once had no details, and kubectl dereferenced them."""
    r = kubectl.run("debug", "nosuchpod", "--image=busybox", check=False)
    assert r.returncode == 1
    assert "panic" not in r.stderr and "nil pointer" not in r.stderr
