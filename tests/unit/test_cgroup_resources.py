"""The kubelet's formulas (images-cgroups.md §4.4-4.5): quantities, defaulting, validation, shares, weight, quota,
QoS class, oom_score_adj and pod-level sums."""

from __future__ import annotations

from fractions import Fraction

import pytest

from minikubelet.cgroups import resources as r
from minikubelet.cgroups.detect import parse_mountinfo
from minikubelet.cgroups.tree import pod_path


@pytest.mark.parametrize(("text", "value"), [
    ("250m", Fraction(1, 4)), ("1", Fraction(1)), ("64Mi", Fraction(64 * 2**20)), ("1G", Fraction(10**9)),
    ("1.5", Fraction(3, 2)), ("1e3", Fraction(1000)), (2, Fraction(2)), ("100k", Fraction(100_000)),
])
def test_quantities(text: object, value: Fraction) -> None:
    assert r.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["abc", "1Mb", "", "1.2.3", True, None])
def test_bad_quantities(text: object) -> None:
    with pytest.raises(ValueError):
        r.parse_quantity(text)


def test_limits_default_requests() -> None:
    res, problems = r.parse_resources({"limits": {"cpu": "500m", "memory": "64Mi"}}, "spec.containers[0].resources")
    assert problems == []
    assert res.request_milli_cpu() == 500 and res.request_memory() == 64 * 2**20


def test_request_above_limit_names_the_field() -> None:
    _, problems = r.parse_resources({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}, "spec.containers[0].resources")
    assert problems == ['spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to '
                        'cpu limit of 1']


def test_bad_quantity_names_the_field() -> None:
    _, problems = r.parse_resources({"limits": {"memory": "lots"}}, "spec.containers[1].resources")
    assert len(problems) == 1 and problems[0].startswith('spec.containers[1].resources.limits[memory]: Invalid value: '
                                                          '"lots": quantities must match')
    _, problems = r.parse_resources({"requests": {"cpu": "-1"}}, "x")
    assert problems == ['x.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0']


@pytest.mark.parametrize(("m", "shares", "weight"), [(0, 2, 1), (100, 102, 17), (500, 512, 59), (1000, 1024, 100),
                                                     (2000, 2048, 174), (1, 2, 1), (10**6, 262144, 10000)])
def test_shares_and_weight(m: int, shares: int, weight: int) -> None:
    assert r.milli_cpu_to_shares(m) == shares
    assert r.shares_to_weight(shares) == weight


def test_quota() -> None:
    assert r.milli_cpu_to_quota(0) == 0
    assert r.milli_cpu_to_quota(200) == 20_000
    assert r.milli_cpu_to_quota(5) == 1000  # at least 1 ms


def res(req: dict[str, str] | None = None, lim: dict[str, str] | None = None) -> r.Resources:
    out, problems = r.parse_resources({"requests": req or {}, "limits": lim or {}}, "x")
    assert problems == []
    return out


def test_qos_classes() -> None:
    assert r.qos_class([res()]) is r.QOSClass.BESTEFFORT
    assert r.qos_class([res(lim={"cpu": "1", "memory": "1Gi"})]) is r.QOSClass.GUARANTEED
    assert r.qos_class([res(lim={"cpu": "1", "memory": "1Gi"}), res()]) is r.QOSClass.BURSTABLE
    assert r.qos_class([res(req={"cpu": "100m"}, lim={"cpu": "1", "memory": "1Gi"})]) is r.QOSClass.BURSTABLE
    assert r.qos_class([res(req={"ephemeral-storage": "1Gi"})]) is r.QOSClass.BESTEFFORT


def test_oom_score_adj() -> None:
    gib = 2**30
    assert r.oom_score_adj(r.QOSClass.GUARANTEED, 0, gib) == -997
    assert r.oom_score_adj(r.QOSClass.BESTEFFORT, 0, gib) == 1000
    assert r.oom_score_adj(r.QOSClass.BURSTABLE, gib // 2, gib) == 500
    assert r.oom_score_adj(r.QOSClass.BURSTABLE, gib, gib) == 3
    assert r.oom_score_adj(r.QOSClass.BURSTABLE, 0, gib) == 999


def test_container_and_pod_configs() -> None:
    c = res(lim={"cpu": "200m", "memory": "32Mi"})
    cfg = r.container_config(c, v2=True)
    assert (cfg.cpu_shares, cfg.cpu_quota_us, cfg.memory_limit, cfg.oom_group) == (204, 20_000, 32 * 2**20, True)
    pod = r.pod_config([], [c, c], pids_limit=100)
    assert (pod.cpu_shares, pod.cpu_quota_us, pod.memory_limit, pod.pids_max) == (409, 40_000, 64 * 2**20, 100)
    burst = r.pod_config([], [c, res(req={"cpu": "100m"})], pids_limit=None)
    assert (burst.cpu_quota_us, burst.memory_limit, burst.pids_max) == (0, None, None)
    assert r.pod_config([], [res()], pids_limit=-1).cpu_shares == 2
    init = res(lim={"cpu": "1", "memory": "1Gi"})  # an init container's request counts when above the app sum
    assert r.pod_config([init], [c], pids_limit=None).cpu_shares == 1024


def test_layout_paths() -> None:
    assert str(pod_path("/mk", r.QOSClass.GUARANTEED, "u1")) == "/mk/kubepods/podu1"
    assert str(pod_path("mk", r.QOSClass.BURSTABLE, "u1")) == "/mk/kubepods/burstable/podu1"
    assert str(pod_path("/", r.QOSClass.BESTEFFORT, "u1")) == "/kubepods/besteffort/podu1"


MOUNTINFO_V1 = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 30 0:31 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
36 30 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
"""


def test_detects_hybrid_as_v1_and_unified_as_v2() -> None:
    m = parse_mountinfo(MOUNTINFO_V1)
    assert m.version == 1 and str(m.v1["memory"]) == "/sys/fs/cgroup/memory" and str(m.v1["cpuacct"]).endswith("acct")
    v2 = parse_mountinfo("29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    assert v2.version == 2 and v2.v1 == {}


def manifest(resources: object) -> bytes:
    import json
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}}).encode()


def test_manifest_defaults_requests_and_reports_qos() -> None:
    from minikubelet.manifests.manifest import load_pods
    [pod] = load_pods("p.yaml", manifest({"limits": {"cpu": "1", "memory": "64Mi"}}), "node")
    assert pod.spec.containers[0].requests == (("cpu", "1"), ("memory", "64Mi"))
    assert pod.manifest["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "64Mi"}
    assert r.pod_qos(pod.spec) is r.QOSClass.GUARANTEED
    [pod] = load_pods("p.yaml", manifest({"requests": {"memory": "64Mi"}}), "node")
    assert r.pod_qos(pod.spec) is r.QOSClass.BURSTABLE


def test_manifest_refuses_request_above_limit() -> None:
    from minikubelet.errors import ManifestError
    from minikubelet.manifests.manifest import load_pods
    with pytest.raises(ManifestError) as err:
        load_pods("p.yaml", manifest({"requests": {"memory": "1Gi"}, "limits": {"memory": "64Mi", "cpu": "x"}}), "node")
    text = str(err.value)
    assert 'spec.containers[0].resources.limits[cpu]: Invalid value: "x"' in text
    assert "must be less than or equal to memory limit of 64Mi" in text
