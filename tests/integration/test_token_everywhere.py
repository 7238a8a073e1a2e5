"""Issue 9, point 4: every endpoint but /healthz needs the token, loopback included; people read the debug
endpoints with ``minikubelet get``, and a refused manifest is quoted only as a short excerpt."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error

import pytest

from tests.harness import MINIKUBELET, REPO, DaemonHarness, http_get, pod_yaml, sh

DEBUG = ["/pods", "/pods/", "/events", "/manifests/errors", "/debug/probes", "/metrics/probes"]
API = ["/api/v1/namespaces/default/pods", "/api/v1/nodes", "/api/v1/events", "/api", "/version"]


def get(daemon: DaemonHarness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MINIKUBELET, "get", *args, "--data-dir", str(daemon.data_dir),
                           "--listen", f"127.0.0.1:{daemon.port}"], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


def test_loopback_reads_need_the_token_and_minikubelet_get_has_it(daemon: DaemonHarness) -> None:
    daemon.write("secret.yaml", pod_yaml("secret", [{**sh("main", "sleep 100000"),
                                                     "env": [{"name": "PASSWORD", "value": "hunter2"}]}]))
    daemon.wait_running("secret")
    base = f"http://127.0.0.1:{daemon.port}"
    for path in DEBUG + API:
        for token in (None, "wrong"):
            with pytest.raises(urllib.error.HTTPError) as exc:
                http_get(base + path, timeout=10, token=token)
            assert exc.value.code == 401, path
            body = exc.value.read()
            assert b"hunter2" not in body and json.loads(body)["reason"] == "Unauthorized"
    assert http_get(base + "/healthz", timeout=10) == "ok"

    pods = get(daemon, "pods")
    assert pods.returncode == 0, pods.stderr
    assert [p["metadata"]["name"] for p in json.loads(pods.stdout)["items"]] == ["secret"]
    events = get(daemon, "events")
    assert events.returncode == 0 and "Started" in events.stdout, events.stderr
    errors = get(daemon, "manifest-errors")
    assert errors.returncode == 0 and json.loads(errors.stdout) is not None, errors.stderr

    missing = subprocess.run([*MINIKUBELET, "get", "pods", "--data-dir", str(daemon.root / "nowhere")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert missing.returncode != 0 and "cannot read the API token" in missing.stderr


def test_a_refused_file_is_quoted_only_as_a_short_excerpt(daemon: DaemonHarness) -> None:
    secret = daemon.root / "root-only"
    secret.write_text("S3CRET" * 50 + "\n")
    os.chmod(secret, 0o600)
    (daemon.manifests / "link.yaml").symlink_to(secret)
    daemon.wait_for(lambda: any("link.yaml" in k for k in json.loads(daemon.get_text("/manifests/errors"))), 20,
                    "the refused symlink listed")
    listed = daemon.get_text("/manifests/errors")
    assert "S3CRET" in listed  # an excerpt says what was found...
    assert listed.count("S3CRET") <= 80 // 6 + 1  # ...but never the whole file
    assert "S3CRET" * 20 not in daemon.log()
