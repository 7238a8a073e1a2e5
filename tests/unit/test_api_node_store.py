from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from minikubelet.cli import main
from minikubelet.node import Node, go_arch
from minikubelet.podspec import Container, Pod, PodSpec
from minikubelet.store import ManifestStore, clean_document


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
    assert message == ("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector "
                       "(missing ssd=true, zone=a).")
    node.set_labels({**node.labels, "ssd": "true", "zone": "a"}, 5)
    assert node.admit(selector_pod(ssd="true", zone="a")) == (True, "", "")
    assert woken == [1] and node.to_api()["metadata"]["resourceVersion"] == "5"
    assert json.loads((tmp_path / "node-labels.json").read_text()) == {"labels": {"ssd": "true", "zone": "a"}}
    again = Node("node1", tmp_path, "192.0.2.2")
    assert again.labels["ssd"] == "true" and again.labels["kubernetes.io/os"] == "linux"
    api = again.to_api()
    assert api["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.1-minikubelet"
    assert api["status"]["addresses"][0] == {"type": "InternalIP", "address": "192.0.2.2"}
    assert api["status"]["capacity"]["pods"] == "250"


def test_store_create_replace_remove(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    doc = clean_document({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"},
                          "metadata": {"name": "a", "namespace": "default", "uid": "u", "resourceVersion": "3",
                                       "annotations": {"kubernetes.io/config.hash": "u"}},
                          "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]}})
    assert doc == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "i"}]}}
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
    proc = subprocess.run([sys.executable, "-c", "from minikubelet.cli import parser, settings_from; "
                           "settings_from(parser().parse_args(['run', '--listen', '0.0.0.0:10250']))"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "beyond loopback: give --tls-cert and --tls-key" in proc.stderr
