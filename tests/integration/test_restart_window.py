"""No restart window (issue 12 point 6): from the first moment a restarted daemon's port answers, a re-adopted pod is
served as it was — Running, Ready, with the same creation and start times and condition transition times — never
as a new Pending/ContainerCreating pod. Polled through the API and with the real kubectl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonHarness, httpd, pod_yaml

pytestmark = pytest.mark.root


def essentials(pod: dict[str, Any]) -> dict[str, Any]:
    """What must not move across a restart."""
    st = pod["status"]
    return {
        "uid": pod["metadata"]["uid"],
        "creationTimestamp": pod["metadata"]["creationTimestamp"],
        "phase": st["phase"],
        "startTime": st.get("startTime"),
        "podIP": st.get("podIP"),
        "conditions": sorted((c["type"], c["status"], c.get("lastTransitionTime")) for c in st["conditions"]),
        "containers": [
            (
                c["name"],
                c["ready"],
                c["restartCount"],
                sorted(c["state"]),
                c["state"].get("running", {}).get("startedAt"),
            )
            for c in st["containerStatuses"]
        ],
    }


def test_readopted_pods_are_served_as_they_were_from_the_first_answer(
    daemon: DaemonHarness, kubectl_bin: Path, kubecachedir: Path, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("ok\n")
    os.chmod(tmp_path, 0o755)
    web = dict(httpd(root=str(tmp_path)), readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1})
    daemon.write("web.yaml", pod_yaml("web", [web]))
    daemon.wait_for(
        lambda: (
            (p := daemon.pod("web"))
            and p["status"]["phase"] == "Running"
            and all(c["ready"] for c in p["status"]["containerStatuses"])
        ),
        what="web Ready",
    )
    # older than the kubelet's 10 s restart grace: a younger container is probed again before it counts as ready
    # after a restart (kubelet-semantics.md §2.2), which is a change a user would see, on purpose
    time.sleep(11)
    before = essentials(daemon.pod("web") or {})
    token = (daemon.data_dir / "token").read_text().strip()
    url = f"http://127.0.0.1:{daemon.port}/api/v1/namespaces/default/pods/web"
    daemon.stop(signal.SIGKILL)

    seen: list[dict[str, Any] | str] = []
    stop = threading.Event()

    def poll() -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        while not stop.is_set():
            try:
                with opener.open(request, timeout=2) as r:
                    seen.append(essentials(json.loads(r.read())))
            except urllib.error.HTTPError as e:
                seen.append(f"HTTP {e.code}")
            except OSError:
                continue  # not listening yet

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        daemon.start()
        env = dict(os.environ, KUBECONFIG=str(daemon.data_dir / "kubeconfig"), KUBECACHEDIR=str(kubecachedir))
        via_kubectl = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            out = subprocess.run(
                [str(kubectl_bin), "get", "pod", "web", "-o", "json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=True,
            ).stdout
            via_kubectl.append(essentials(json.loads(out)))
    finally:
        stop.set()
        poller.join()
    assert seen, "the API never answered"
    assert len(seen) > 10
    changed = [s for s in seen if s != before]
    assert changed == [], f"{len(changed)} of {len(seen)} answers differed, first: {changed[0]!r} vs {before!r}"
    assert all(s == before for s in via_kubectl)
