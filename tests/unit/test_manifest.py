"""manifest.load_pods / pod_from_dict / pod_uid: good manifests, the bad-manifest corpus, defaults and uids."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from minikubelet.errors import ManifestError
from minikubelet.manifests.manifest import MAX_MANIFEST_BYTES, load_pods, pod_from_dict, pod_uid
from minikubelet.pod.spec import ContainerPort, EnvVar, HTTPHeader, Pod, Probe, RestartPolicy

DATA = Path(__file__).resolve().parent.parent / "data"
GOOD = DATA / "good-manifests"
BAD = DATA / "bad-manifests"
NODE = "node1"


def load(path: Path) -> list[Pod]:
    return load_pods(str(path), path.read_bytes(), NODE)


def errors_of(source: str, data: bytes) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_pods(source, data, NODE)
    return info.value


# --- good manifests --------------------------------------------------------------------------------------------------

GOOD_CASES = [
    ("pod-label.yml", ["default/examlabel"]),
    ("pod-nodeselector.yml", ["default/nodeselector-pod"]),
    ("nginx-pod-liveness.yml", ["default/nginx-pod-liveness"]),
    ("multi-document.yaml", ["default/web", "jobs/worker"]),
    ("pod.json", ["default/json-pod"]),
    ("kubectl-dry-run.yaml", ["default/web"]),
    ("full-featured.yaml", ["team-a/full"]),
    ("empty.yaml", []),
    ("comments-only.yaml", []),
]


@pytest.mark.parametrize(("name", "keys"), GOOD_CASES, ids=[c[0] for c in GOOD_CASES])
def test_good_manifest(name: str, keys: list[str]) -> None:
    pods = load(GOOD / name)
    assert [p.key for p in pods] == keys
    for pod in pods:
        assert pod.source == str(GOOD / name)
        assert pod.manifest["metadata"]["uid"] == pod.uid
        json.dumps(pod.manifest)  # the echoed manifest is plain JSON


def test_every_good_file_is_in_the_table() -> None:
    assert sorted(p.name for p in GOOD.iterdir()) == sorted(c[0] for c in GOOD_CASES)


def test_walkthrough_label_pod() -> None:
    (pod,) = load(GOOD / "pod-label.yml")
    assert pod.labels == {"app": "web", "type": "frontend", "name": "nginx"}
    assert pod.annotations == {"app": "service-kind", "type": "service-type", "name": "service-name"}
    assert pod.name == "examlabel"  # not suffixed with the node name
    assert pod.spec.containers[0].name == "nginx-container"
    assert pod.spec.containers[0].image == "nginx:1.14"


def test_walkthrough_node_selector() -> None:
    (pod,) = load(GOOD / "pod-nodeselector.yml")
    assert pod.spec.node_selector == (("ssd", "true"),)


def test_walkthrough_liveness_probe() -> None:
    (pod,) = load(GOOD / "nginx-pod-liveness.yml")
    container = pod.spec.containers[0]
    assert container.ports == (ContainerPort(80, None, "TCP", None),)
    assert container.liveness_probe == Probe(
        handler="httpGet",
        port=80,
        path="/",
        scheme="HTTP",
        initial_delay_seconds=15,
        period_seconds=20,
        timeout_seconds=1,
        success_threshold=1,
        failure_threshold=3,
    )


def test_full_featured_pod() -> None:
    (pod,) = load(GOOD / "full-featured.yaml")
    assert pod.uid == "7d3c2b1a-0000-4000-8000-000000000001"  # metadata.uid wins
    assert pod.spec.restart_policy is RestartPolicy.NEVER
    assert pod.spec.termination_grace_period_seconds == 5
    assert pod.spec.active_deadline_seconds == 600
    assert pod.hostname == "full-host"
    init, app = pod.spec.init_containers[0], pod.spec.containers[0]
    assert (init.run_as_user, init.run_as_group) == (1000, 1000)  # from the pod securityContext
    assert (app.run_as_user, app.run_as_group) == (2000, 1000)  # container value wins
    assert app.run_as_non_root is True and app.allow_privilege_escalation is False
    assert app.read_only_root_filesystem and not app.privileged
    assert (app.capabilities_add, app.capabilities_drop) == (("NET_BIND_SERVICE",), ("ALL",))
    assert app.working_dir == "/tmp"
    assert app.command == ("sh", "-c") and app.args == ("exec httpd -f -p 8080",)
    assert app.env == (
        EnvVar("GREETING", "hello"),
        EnvVar("POD_NAME", "", "metadata.name"),
        EnvVar("POD_IP", "", "status.podIP"),
    )
    assert app.ports == (ContainerPort(8080, "http", "TCP", 18080), ContainerPort(5353, None, "UDP", None))
    live, ready, startup = app.liveness_probe, app.readiness_probe, app.startup_probe
    assert live is not None and ready is not None and startup is not None
    assert (live.port, live.path, live.http_headers) == ("http", "/healthz", (HTTPHeader("X-Probe", "liveness"),))
    assert (live.initial_delay_seconds, live.termination_grace_period_seconds) == (3, 2)
    assert (ready.handler, ready.port, ready.success_threshold, ready.period_seconds) == ("tcpSocket", 8080, 2, 10)
    assert (startup.command, startup.failure_threshold, startup.period_seconds) == (("cat", "/tmp/started"), 30, 1)
    meta, spec = pod.manifest["metadata"], pod.manifest["spec"]
    assert meta["creationTimestamp"] == "2026-01-02T03:04:05Z"  # timestamps are echoed as strings
    assert spec["nodeName"] == NODE  # overwritten
    assert spec["tolerations"][0]["tolerationSeconds"] == 300
    assert "status" not in pod.manifest


def test_defaults_in_echoed_manifest() -> None:
    (pod,) = load(GOOD / "nginx-pod-liveness.yml")
    spec = pod.manifest["spec"]
    assert pod.manifest["metadata"]["namespace"] == "default"
    assert {k: spec[k] for k in ("restartPolicy", "terminationGracePeriodSeconds", "dnsPolicy", "schedulerName")} == {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
    }
    assert spec["enableServiceLinks"] is True and spec["nodeName"] == NODE
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["ports"][0]["protocol"] == "TCP"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_config_annotations_only_in_manifest() -> None:
    (pod,) = load(GOOD / "pod-label.yml")
    annotations = pod.manifest["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.source"] == "file"
    assert annotations["kubernetes.io/config.hash"] == pod.uid
    assert "kubernetes.io/config.hash" not in pod.annotations


def test_probe_defaults() -> None:
    obj = minimal_pod()
    obj["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"port": 80}, "periodSeconds": 0}
    probe = pod_from_dict(obj, "request", NODE).spec.containers[0].readiness_probe
    assert probe == Probe(handler="httpGet", port=80, path="/", scheme="HTTP")


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.14", "IfNotPresent"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:1.2", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ],
    ids=["no-tag", "latest", "tag", "registry-port-no-tag", "registry-port-tag", "digest"],
)
def test_image_pull_policy_default(image: str, policy: str) -> None:
    obj = minimal_pod()
    obj["spec"]["containers"][0]["image"] = image
    assert pod_from_dict(obj, "request", NODE).manifest["spec"]["containers"][0]["imagePullPolicy"] == policy


# --- the bad-manifest corpus -----------------------------------------------------------------------------------------


def expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <substring of the error>'"
    return first.removeprefix("# expect: ")


BAD_FILES = sorted(BAD.iterdir())


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.name for p in BAD_FILES])
def test_bad_manifest(path: Path) -> None:
    error = errors_of(str(path), path.read_bytes())
    text = str(error)
    assert text.startswith(f"{path}: ")  # names the file
    assert error.source == str(path)
    assert expectation(path) in text
    for problem in error.problems:  # every problem is located: a line or a field path
        assert problem.startswith(("line ", "document ", "file ")), problem


def test_corpus_covers_the_brief() -> None:
    names = {p.name for p in BAD_FILES}
    assert len(names) >= 40
    assert {"tabs.yaml", "annotation-typo.yaml", "alias-bomb.yaml", "binary-garbage.bin", "non-utf8.yaml"} <= names


def test_all_problems_reported_together() -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\n  annotation: {}\nspec:\n  containers:\n"
        "  - name: web\n    imagee: x\n    ports: [{containerPort: 0}]\n"
    )
    error = errors_of("/m/p.yaml", text.encode())
    assert error.problems == [
        'line 4: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case'
        " alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'line 5: metadata.annotation: unknown field "annotation" (did you mean "annotations"?)',
        "line 8: spec.containers[0].image: Required value",
        'line 9: spec.containers[0].imagee: unknown field "imagee" (did you mean "image"?)',
        "line 10: spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
    ]


def test_label_error_points_at_the_label_line() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    ok: yes-ok\n    bad: 'no way'\n"
    error = errors_of("/m/p.yaml", (text + "spec: {containers: [{name: c, image: i}]}\n").encode())
    assert error.problems[0].startswith('line 7: metadata.labels: Invalid value: "no way"')


def test_json_errors_have_lines() -> None:
    body = '{"apiVersion": "v1", "kind": "Pod",\n "metadata": {"name": "p"},\n "spec": {"containerz": []}}\n'
    error = errors_of("/m/p.json", body.encode())
    assert 'line 3: spec.containerz: unknown field "containerz" (did you mean "containers"?)' in error.problems


def test_oversized_file_refused_before_parsing() -> None:
    error = errors_of("/m/big.yaml", b"#" * (MAX_MANIFEST_BYTES + 1))
    assert error.problems == [
        f"file is {MAX_MANIFEST_BYTES + 1} bytes; manifests are limited to 10485760 bytes (10 MiB)"
    ]


def test_utf16_with_bom_is_accepted() -> None:
    data = (GOOD / "pod-label.yml").read_text().encode("utf-16")
    assert [p.name for p in load_pods("/m/p.yaml", data, NODE)] == ["examlabel"]


# --- pod_from_dict ---------------------------------------------------------------------------------------------------


def minimal_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }


def test_pod_from_dict_strict_rejects_unknown_fields() -> None:
    obj = minimal_pod()
    obj["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(ManifestError) as info:
        pod_from_dict(obj, "request", NODE)
    assert info.value.problems == ['spec.containers[0].imagee: unknown field "imagee" (did you mean "image"?)']
    assert str(info.value).startswith("request: ")


def test_pod_from_dict_lenient_drops_unknown_fields() -> None:
    obj = minimal_pod()
    obj["spec"]["containers"][0]["imagee"] = "x"
    obj["spec"]["priorityClassNam"] = "x"
    pod = pod_from_dict(obj, "request", NODE, strict=False)
    assert "imagee" not in pod.manifest["spec"]["containers"][0]
    assert "priorityClassNam" not in pod.manifest["spec"]


def test_pod_from_dict_lenient_still_rejects_unsupported_fields() -> None:
    obj = minimal_pod()
    obj["spec"]["volumes"] = [{"name": "v", "secret": {"secretName": "s"}}]
    with pytest.raises(ManifestError, match=r"spec.volumes\[0\].secret: Forbidden: this node supports emptyDir"):
        pod_from_dict(obj, "request", NODE, strict=False)


def test_pod_from_dict_does_not_modify_its_input() -> None:
    obj = minimal_pod()
    before = copy.deepcopy(obj)
    pod_from_dict(obj, "request", NODE)
    assert obj == before


def test_pod_from_dict_refuses_non_objects() -> None:
    with pytest.raises(ManifestError, match="the document is a list, not a mapping"):
        pod_from_dict([minimal_pod()], "request", NODE)


# --- uid -------------------------------------------------------------------------------------------------------------


def uid_of(obj: dict[str, Any], source: str = "/m/p.yaml", node: str = NODE) -> str:
    return pod_from_dict(obj, source, node).uid


def test_uid_is_32_hex_chars() -> None:
    uid = uid_of(minimal_pod())
    assert len(uid) == 32 and int(uid, 16) >= 0


def test_uid_ignores_labels_and_annotations() -> None:
    edited = minimal_pod()
    edited["metadata"]["labels"] = {"app": "web"}
    edited["metadata"]["annotations"] = {"note": "x"}
    assert uid_of(edited) == uid_of(minimal_pod())


def test_uid_ignores_spelled_out_defaults() -> None:
    explicit = minimal_pod()
    explicit["spec"]["restartPolicy"] = "Always"
    explicit["spec"]["containers"][0]["terminationMessagePolicy"] = "File"
    assert uid_of(explicit) == uid_of(minimal_pod())


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["spec"]["containers"][0].update(image="busybox:1.37"),
        lambda o: o["spec"].update(restartPolicy="Never"),
        lambda o: o["metadata"].update(name="q"),
        lambda o: o["metadata"].update(namespace="other"),
    ],
    ids=["image", "restartPolicy", "name", "namespace"],
)
def test_uid_changes_with_spec_and_identity(change: Any) -> None:
    edited = minimal_pod()
    change(edited)
    assert uid_of(edited) != uid_of(minimal_pod())


def test_uid_depends_on_node_and_source() -> None:
    base = uid_of(minimal_pod())
    assert uid_of(minimal_pod(), source="/m/other.yaml") != base
    assert uid_of(minimal_pod(), node="node2") != base


def test_pod_uid_function_is_canonical() -> None:
    assert pod_uid("n", "/s", "ns", "p", {"b": 1, "a": [1, 2]}) == pod_uid("n", "/s", "ns", "p", {"a": [1, 2], "b": 1})


# --- speed -----------------------------------------------------------------------------------------------------------


def test_parsing_a_normal_manifest_is_fast() -> None:
    data = (GOOD / "nginx-pod-liveness.yml").read_bytes()
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        load_pods("/m/p.yaml", data, NODE)
    per_pod = (time.perf_counter() - start) / rounds
    assert per_pod < 0.005  # typically ~0.2 ms; the margin keeps slow CI machines green
