"""Node allocatable and the kubelet's resource admission messages."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from minikubelet.cgroups.admission import admit, allocatable, parse_reserved
from minikubelet.manifests.manifest import load_pods
from minikubelet.pod.spec import Pod


def pod(name: str, requests: dict[str, str]) -> Pod:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}]}}
    [p] = load_pods(f"{name}.yaml", json.dumps(doc).encode(), "node")
    return p


ALLOC = allocatable({"cpu": Fraction(2), "memory": Fraction(2**30), "pods": Fraction(110)},
                    parse_reserved("--system-reserved", "cpu=500m,memory=256Mi"),
                    parse_reserved("--kube-reserved", "cpu=500m"))


def test_allocatable_subtracts_reserved() -> None:
    assert ALLOC == {"cpu": Fraction(1), "memory": Fraction(768 * 2**20), "pods": Fraction(110)}


def test_reserved_flag_errors_name_the_flag() -> None:
    with pytest.raises(ValueError, match="--kube-reserved 'gpu=1'"):
        parse_reserved("--kube-reserved", "gpu=1")
    with pytest.raises(ValueError, match="'lots' is not a quantity"):
        parse_reserved("--system-reserved", "memory=lots")


def test_out_of_cpu_and_memory_with_the_kubelets_message() -> None:
    running = [pod("a", {"cpu": "600m"})]
    assert admit(pod("b", {"cpu": "300m"}), running, ALLOC) == (True, "", "")
    assert admit(pod("c", {"cpu": "500m"}), running, ALLOC) == (
        False, "OutOfcpu", "Node didn't have enough resource: cpu, requested: 500, used: 600, capacity: 1000")
    ok, reason, message = admit(pod("d", {"memory": "1Gi"}), [], ALLOC)
    assert (ok, reason) == (False, "OutOfmemory")
    assert message == f"Node didn't have enough resource: memory, requested: {2**30}, used: 0, capacity: {768 * 2**20}"


def test_out_of_pods() -> None:
    alloc = {**ALLOC, "pods": Fraction(2)}
    assert admit(pod("x", {}), [pod("a", {}), pod("b", {})], alloc) == (
        False, "OutOfpods", "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2")


def test_node_allocatable_minus_reserved(tmp_path: object) -> None:
    from pathlib import Path

    from minikubelet.node.node import Node
    node = Node("n1", Path(str(tmp_path)), "192.0.2.1")
    status = node.to_api()["status"]
    assert status["allocatable"] == status["capacity"]
    node.reserved = [parse_reserved("--system-reserved", "cpu=250m,memory=128Mi"),
                     parse_reserved("--kube-reserved", "")]
    status = node.to_api()["status"]
    cpu_cap = int(status["capacity"]["cpu"]) * 1000
    assert status["allocatable"]["cpu"] == f"{cpu_cap - 250}m"
    mem_cap = int(status["capacity"]["memory"].removesuffix("Ki"))
    assert status["allocatable"]["memory"] == f"{mem_cap - 128 * 1024}Ki"


def test_cli_refuses_a_bad_reserved_flag() -> None:
    from minikubelet.cli import parser, settings_from
    args = parser().parse_args(["run", "--system-reserved", "memory=lots"])
    with pytest.raises(SystemExit, match="--system-reserved 'memory=lots': 'lots' is not a quantity"):
        settings_from(args)
    args = parser().parse_args(["run", "--cgroup-root", "relative"])
    with pytest.raises(SystemExit, match="--cgroup-root 'relative'"):
        settings_from(args)
