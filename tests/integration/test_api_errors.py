"""Every API error path and hostile request answers a Kubernetes Status with the right code and changes nothing
in the manifest directory (real daemon, raw HTTP with the daemon's bearer token)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import BUSYBOX, NODE_FS, DaemonHarness

pytestmark = pytest.mark.root

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ok-pod", "annotations": NODE_FS},
    "spec": {
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": [BUSYBOX, "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
            }
        ]
    },
}


class Api:
    def __init__(self, daemon: DaemonHarness) -> None:
        self.base = f"http://127.0.0.1:{daemon.port}"
        config = yaml.safe_load((daemon.data_dir / "kubeconfig").read_text())
        self.token = config["users"][0]["user"]["token"]

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        ctype: str = "application/json",
        token: str | None = "default",
    ) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", ctype)
        if token is not None:
            req.add_header("Authorization", f"Bearer {self.token if token == 'default' else token}")
        try:
            with _DIRECT.open(req, timeout=20) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            assert b"Traceback" not in raw
            return e.code, json.loads(raw)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def assert_status(answer: tuple[int, dict[str, Any]], code: int, reason: str) -> dict[str, Any]:
    got, body = answer
    assert (got, body.get("kind"), body.get("reason"), body.get("code")) == (code, "Status", reason, code), body
    return body


def test_error_paths_change_nothing(daemon: DaemonHarness) -> None:
    api = Api(daemon)
    pods = "/api/v1/namespaces/default/pods"
    code, created = api.call("POST", pods, json.dumps(POD).encode())
    assert code == 201 and created["metadata"]["name"] == "ok-pod" and created["metadata"]["uid"]
    before = snapshot(daemon.manifests)
    assert list(before) == ["default_ok-pod.yaml"]

    # access: the token is required everywhere but /healthz, loopback included
    assert_status(api.call("GET", pods, token=None), 401, "Unauthorized")
    assert_status(api.call("GET", pods, token="wrong"), 401, "Unauthorized")
    assert_status(
        api.call("POST", pods, json.dumps({**POD, "metadata": {"name": "x"}}).encode(), token=None), 401, "Unauthorized"
    )
    assert daemon.get_text("/healthz") == "ok"
    assert json.loads(daemon.get_text("/pods"))["kind"] == "PodList"

    body = assert_status(api.call("GET", pods + "/nope"), 404, "NotFound")
    assert body["message"] == 'pods "nope" not found' and body["details"] == {"name": "nope", "kind": "pods"}
    assert_status(api.call("DELETE", pods + "/nope"), 404, "NotFound")
    assert_status(api.call("GET", "/api/v1/no-such-thing"), 404, "NotFound")
    assert_status(api.call("GET", "/api/v1/nodes/other-node"), 404, "NotFound")

    body = assert_status(api.call("POST", pods, json.dumps(POD).encode()), 409, "AlreadyExists")
    assert body["message"] == 'pods "ok-pod" already exists'

    bad_label = json.loads(json.dumps(POD))
    bad_label["metadata"] = {"name": "bad-label", "labels": {"app": "no spaces"}}
    body = assert_status(api.call("POST", pods, json.dumps(bad_label).encode()), 422, "Invalid")
    assert body["details"]["kind"] == "Pod" and body["details"]["causes"][0]["field"] == "metadata.labels"
    assert body["details"]["causes"][0]["reason"] == "FieldValueInvalid"

    unknown = json.loads(json.dumps(POD))
    unknown["metadata"]["name"] = "typo"
    unknown["spec"]["containers"][0]["imagee"] = "x"
    body = assert_status(
        api.call("POST", pods + "?fieldValidation=Strict", json.dumps(unknown).encode()), 400, "BadRequest"
    )
    assert body["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
        'unknown field "spec.containers[0].imagee"'
    )

    assert_status(api.call("POST", pods, b"{not json"), 400, "BadRequest")
    assert_status(api.call("POST", pods, b"[1, 2]"), 400, "BadRequest")
    assert_status(api.call("POST", pods, json.dumps(POD).encode(), ctype="text/plain"), 415, "UnsupportedMediaType")
    huge = json.dumps({**POD, "metadata": {"name": "huge", "annotations": {"a": "x" * (2 << 20)}}}).encode()
    assert_status(api.call("POST", pods, huge), 413, "RequestEntityTooLarge")
    a_node = {**POD, "kind": "Node"}
    body = assert_status(api.call("POST", pods, json.dumps(a_node).encode()), 400, "BadRequest")
    assert body["message"] == "the object provided is unrecognized (must be of type Pod): it is a v1 Node"
    assert_status(api.call("PUT", pods + "/ok-pod", json.dumps(a_node).encode()), 400, "BadRequest")
    other_ns = {**POD, "metadata": {"name": "elsewhere", "namespace": "other"}}
    assert_status(api.call("POST", pods, json.dumps(other_ns).encode()), 400, "BadRequest")
    traversal = {**POD, "metadata": {"name": "../../etc/evil"}}
    assert_status(api.call("POST", pods, json.dumps(traversal).encode()), 422, "Invalid")

    # names and namespaces in the URL
    assert_status(api.call("GET", pods + "/..%2F..%2Fetc"), 400, "BadRequest")
    assert_status(api.call("DELETE", pods + "/..%2Fok-pod"), 400, "BadRequest")
    assert_status(api.call("GET", "/api/v1/namespaces/Bad_NS/pods"), 400, "BadRequest")
    assert_status(
        api.call("POST", "/api/v1/namespaces/..%2F..%2Ftmp/pods", json.dumps(POD).encode()), 400, "BadRequest"
    )

    # patches
    merge = "application/merge-patch+json"
    assert_status(
        api.call("PATCH", pods + "/ok-pod", b'[{"op":"add"}]', ctype="application/json-patch+json"), 422, "Invalid"
    )  # an operation without a path, as kube-apiserver answers it
    assert_status(
        api.call("PATCH", pods + "/ok-pod", b'{"op":"add"}', ctype="application/json-patch+json"), 400, "BadRequest"
    )  # not a list of operations
    assert_status(api.call("PATCH", pods + "/ok-pod", b"<pod/>", ctype="application/xml"), 415, "UnsupportedMediaType")
    assert_status(api.call("PATCH", pods + "/ok-pod", b"{bad", ctype=merge), 400, "BadRequest")
    body = assert_status(
        api.call("PATCH", pods + "/ok-pod", b'{"metadata":{"labels":{"a b":"c"}}}', ctype=merge), 422, "Invalid"
    )
    assert body["message"].startswith('Pod "ok-pod" is invalid: metadata.labels: Invalid value: "a b"')
    assert_status(api.call("PATCH", pods + "/ok-pod", b'{"metadata":{"name":"renamed"}}', ctype=merge), 422, "Invalid")
    assert_status(api.call("PATCH", pods + "/nope", b'{"metadata":{"labels":{"a":"b"}}}', ctype=merge), 404, "NotFound")
    node = f"/api/v1/nodes/{daemon.node_name}"
    assert_status(api.call("PATCH", node, b'{"metadata":{"labels":{"ssd":"not ok"}}}', ctype=merge), 422, "Invalid")
    assert_status(api.call("GET", "/api/v1/namespaces/default/pods?labelSelector=app%20in%20(a"), 400, "BadRequest")
    assert_status(api.call("GET", "/api/v1/namespaces/default/pods?fieldSelector=spec.bogus%3Dx"), 400, "BadRequest")

    assert snapshot(daemon.manifests) == before
    assert not (daemon.data_dir / "node-labels.json").exists()
    code, listed = api.call("GET", pods)
    assert code == 200 and [p["metadata"]["name"] for p in listed["items"]] == ["ok-pod"]


def test_access_files(daemon: DaemonHarness) -> None:
    for name in ("kubeconfig", "token"):
        assert (daemon.data_dir / name).stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load((daemon.data_dir / "kubeconfig").read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://127.0.0.1:{daemon.port}" and cluster["certificate-authority-data"]
    token = (daemon.data_dir / "token").read_text()
    daemon.stop()
    daemon.start()
    assert (daemon.data_dir / "token").read_text() == token
