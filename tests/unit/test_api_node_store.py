from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from minikubelet.cli import main
from minikubelet.manifests import yamledit
from minikubelet.manifests.store import ManifestStore, clean_document
from minikubelet.node.node import Node, go_arch
from minikubelet.pod.spec import Container, Pod, PodSpec


def selector_pod(**selector: str) -> Pod:
    spec = PodSpec(containers=(Container("c", "img"),), node_selector=tuple(sorted(selector.items())))
    return Pod("default", "p", "uid", spec, "/x.yaml")


def test_node_labels_admission_and_persistence(tmp_path: Path) -> None:
    woken: list[int] = []
    node = Node("node1", tmp_path, "192.0.2.2", on_labels_changed=lambda: woken.append(1))
    assert node.labels["kubernetes.io/hostname"] == "node1" and node.labels["beta.kubernetes.io/os"] == "linux"
    assert node.labels["kubernetes.io/arch"] == go_arch() and go_arch("x86_64") == "amd64"
    assert go_arch("aarch64") == "arm64"
    ok, reason, message = node.admit(selector_pod(ssd="true", zone="a"))
    assert (ok, reason) == (False, "Unschedulable")
    assert message == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector (missing ssd=true, zone=a)."
    )
    node.set_labels({**node.labels, "ssd": "true", "zone": "a"}, 5)
    assert node.admit(selector_pod(ssd="true", zone="a")) == (True, "", "")
    assert woken == [1] and node.to_api()["metadata"]["resourceVersion"] == "5"
    assert json.loads((tmp_path / "node-labels.json").read_text()) == {"labels": {"ssd": "true", "zone": "a"}}
    again = Node("node1", tmp_path, "192.0.2.2")
    assert again.labels["ssd"] == "true" and again.labels["kubernetes.io/os"] == "linux"
    api = again.to_api()
    assert api["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.1-minikubelet"
    assert api["status"]["addresses"][0] == {"type": "InternalIP", "address": "192.0.2.2"}
    assert api["status"]["capacity"]["pods"] == "110"


def test_store_create_replace_remove(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    doc = clean_document(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "status": {"phase": "Running"},
            "metadata": {
                "name": "a",
                "namespace": "default",
                "uid": "u",
                "resourceVersion": "3",
                "annotations": {"kubernetes.io/config.hash": "u"},
            },
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
        }
    )
    assert doc == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    path = store.create("default", "a", doc)
    assert path == tmp_path / "default_a.yaml" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(FileExistsError):
        store.create("default", "a", doc)
    assert len(store.path_for("default", "x" * 253).name) <= 255

    multi = tmp_path / "mine.yaml"
    multi.write_text("# comment\nkind: Pod\nmetadata: {name: one}\n---\nkind: Pod\nmetadata: {name: two}\n")
    store.replace(multi, "default", "two", {"kind": "Pod", "metadata": {"name": "two", "labels": {"x": "y"}}})
    docs = list(yaml.safe_load_all(multi.read_text()))
    assert [d["metadata"]["name"] for d in docs] == ["one", "two"] and docs[1]["metadata"]["labels"] == {"x": "y"}
    store.remove(multi, "default", "one")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(multi.read_text())] == ["two"]
    store.remove(multi, "default", "two")
    assert not multi.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default_a.yaml"]  # no temp files left


def test_cli_kubeconfig_and_listen_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["kubeconfig", "--data-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert out.out.strip() == str(tmp_path / "kubeconfig") and "does not exist yet" in out.err
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from minikubelet.cli import parser, settings_from; "
            "settings_from(parser().parse_args(['run', '--listen', '0.0.0.0:10250']))",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "beyond loopback: give --tls-cert and --tls-key" in proc.stderr


HAND_WRITTEN = """# header: our pods
---
# the first pod
apiVersion: v1
kind: Pod
metadata:
  name: one        # keep me
  labels:
    app: "web"     # quoted on purpose
    tier: x
spec:
  containers:
    # main container
    - name: main
      image: busybox
      args: [a, b]   # flow
      env:
        - name: A
          value: '1'
---
# the second pod
kind: Pod
metadata: {name: two}
"""


def test_store_keeps_comments_order_and_other_documents(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    path = tmp_path / "mine.yaml"
    path.write_text(HAND_WRITTEN)
    doc = store.document(path, "default", "one")
    doc["metadata"] = {"labels": {"app": "db", "on": "yes", "n": "1"}, "name": "one"}  # another key order
    doc["spec"]["containers"][0]["env"].append({"name": "B", "value": "true"})
    doc["spec"]["containers"].insert(0, {"name": "side", "image": "s"})
    store.replace(path, "default", "one", doc)
    text = path.read_text()
    assert text.startswith("# header: our pods\n---\n# the first pod\napiVersion: v1\n")
    assert '  name: one        # keep me\n  labels:\n    app: "db"      # quoted on purpose\n' in text
    assert '    "on": "yes"\n    n: "1"\n' in text  # what YAML 1.1 would misread is quoted
    assert "      args: [a, b]   # flow\n" in text and '        - name: B\n          value: "true"\n' in text
    assert text.endswith("---\n# the second pod\nkind: Pod\nmetadata: {name: two}\n")
    assert list(yaml.safe_load_all(text))[0] == doc

    store.remove(path, "default", "two")
    assert "two" not in path.read_text() and "# keep me" in path.read_text()


def test_store_falls_back_to_a_plain_dump(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ManifestStore(tmp_path)
    path = tmp_path / "odd.yaml"
    path.write_text("%YAML 1.1\n---\nkind: Pod\nmetadata: {name: odd}\n")  # a directive: cannot be cut apart
    store.replace(path, "default", "odd", {"kind": "Pod", "metadata": {"name": "odd", "labels": {"a": "b"}}})
    assert yaml.safe_load(path.read_text()) == {"kind": "Pod", "metadata": {"name": "odd", "labels": {"a": "b"}}}
    assert "without its comments" in caplog.text

    js = tmp_path / "pod.json"
    js.write_text('{"metadata": {"name": "j", "namespace": "default"}, "kind": "Pod"}')
    store.replace(js, "default", "j", {"kind": "Pod", "metadata": {"namespace": "default", "name": "j", "x": 1}})
    assert list(json.loads(js.read_text())) == ["metadata", "kind"]  # the file's key order
    assert list(json.loads(js.read_text())["metadata"]) == ["name", "namespace", "x"]


def test_yamledit_pieces() -> None:
    assert yamledit.segments("a: 1\n---\nb: 2\n--- # c\nd: 3\n") == ["a: 1\n", "---\nb: 2\n", "--- # c\nd: 3\n"]
    assert yamledit.segments("---\na: 1\n") == ["---\na: 1\n"]
    assert yamledit.needs_quotes("yes") and yamledit.needs_quotes("1.5") and yamledit.needs_quotes("")
    assert not yamledit.needs_quotes("web") and not yamledit.needs_quotes("1.5.2")
    assert yamledit.same({"a": [1]}, {"a": [1]}) and not yamledit.same(1, True) and not yamledit.same(1, 1.0)
    assert yamledit.replace_document("a: [1\n", 0, {}) is None
    assert yamledit.remove_document("a: 1\n---\nb: 2\n", 1) == "a: 1\n"
    text = "items:\n- name: x   # x\n  v: 1\n- name: y   # y\n  v: 2\n"
    out = yamledit.replace_document(text, 0, {"items": [{"name": "y", "v": 3}, {"name": "x", "v": 1}]})
    assert out == "items:\n- name: y   # y\n  v: 3\n- name: x   # x\n  v: 1\n"
