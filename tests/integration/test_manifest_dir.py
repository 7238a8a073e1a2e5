"""The manifest directory as a user drives it: add, multi-document, metadata/spec/invalid edits, remove, ignored
names, duplicates, unsafe ownership/modes, and the bad-manifest corpus refused while a good pod keeps running."""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BUSYBOX, NODE_FS, DaemonHarness, alive, events_of, pod_yaml, running_daemon, sh

pytestmark = pytest.mark.root

DATA = Path(__file__).resolve().parent.parent / "data"
BAD = DATA / "bad-manifests"
SLEEPER = [sh("c", "sleep 1000")]


def errors(daemon: DaemonHarness) -> dict[str, str]:
    result: dict[str, str] = json.loads(daemon.get_text("/manifests/errors"))
    return result


def wait_error(daemon: DaemonHarness, path: Path, timeout: float = 20) -> str:
    """The error /manifests/errors reports for ``path`` (polls until there is one)."""
    message: str = daemon.wait_for(lambda: errors(daemon).get(str(path)), timeout, f"an error for {path}")
    return message


def wait_no_error(daemon: DaemonHarness, path: Path, timeout: float = 20) -> None:
    daemon.wait_for(lambda: str(path) not in errors(daemon), timeout, f"the error for {path} cleared")


def write_bytes(daemon: DaemonHarness, filename: str, data: bytes, mode: int = 0o644, uid: int = 0) -> Path:
    """Write exact bytes atomically (dot-file + rename, so the daemon never sees a half-written file)."""
    path = daemon.manifests / filename
    fd, tmp = tempfile.mkstemp(dir=daemon.manifests, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.chown(tmp, uid, -1)
    os.replace(tmp, path)
    return path


def labelled(
    name: str,
    containers: list[dict[str, Any]],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> str:
    doc = json.loads(pod_yaml(name, containers, **spec))
    if labels is not None:
        doc["metadata"]["labels"] = labels
    if annotations is not None:  # beside pod_yaml's node-filesystem annotation
        doc["metadata"]["annotations"] = {**doc["metadata"].get("annotations", {}), **annotations}
    return json.dumps(doc)


@dataclass
class Snapshot:
    uid: str
    pause: int
    container: int
    restarts: int


def snapshot(daemon: DaemonHarness, name: str, container: str = "c") -> Snapshot:
    pod = daemon.wait_running(name)
    return Snapshot(
        uid=pod["metadata"]["uid"],
        pause=daemon.pause_pid(name),
        container=daemon.container_pid(name, container),
        restarts=daemon.container(name, container)["restartCount"],
    )


def assert_untouched(daemon: DaemonHarness, name: str, before: Snapshot) -> None:
    now = snapshot(daemon, name)
    assert now == before, f"pod {name} was disturbed: {before} -> {now}"
    assert alive(before.pause) and alive(before.container)


def daemon_veths(daemon: DaemonHarness) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", daemon.bridge], capture_output=True, text=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if line.strip()]


# ----- add, multi-document --------------------------------------------------------------------------------------


def test_adding_a_file_starts_its_pod(daemon: DaemonHarness) -> None:
    daemon.write("md-add.yaml", pod_yaml("md-add", SLEEPER))
    pod = daemon.wait_running("md-add")
    assert pod["status"]["podIP"]
    assert alive(daemon.pause_pid("md-add")) and alive(daemon.container_pid("md-add", "c"))
    assert errors(daemon) == {}


def test_a_file_with_two_documents_starts_two_pods(daemon: DaemonHarness) -> None:
    text = pod_yaml("md-doc-one", SLEEPER) + "\n---\n" + pod_yaml("md-doc-two", SLEEPER) + "\n"
    daemon.write("md-docs.yaml", text)
    one, two = daemon.wait_running("md-doc-one"), daemon.wait_running("md-doc-two")
    assert one["metadata"]["uid"] != two["metadata"]["uid"]
    assert one["status"]["podIP"] != two["status"]["podIP"]
    assert daemon.pause_pid("md-doc-one") != daemon.pause_pid("md-doc-two")
    assert errors(daemon) == {}


# ----- edits ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_metadata_only_edit_updates_the_live_pod_without_restart(daemon: DaemonHarness, field: str) -> None:
    name = f"md-meta-{field}"
    daemon.write(f"{name}.yaml", labelled(name, SLEEPER, **{field: {"app": "one"}}))
    before = snapshot(daemon, name)
    daemon.write(f"{name}.yaml", labelled(name, SLEEPER, **{field: {"app": "two", "tier": "front"}}))

    def updated() -> bool:
        pod = daemon.pod(name)
        if pod is None:
            return False
        got = pod["metadata"].get(field) or {}
        mine = {k: v for k, v in got.items() if "kubernetes.io/" not in k}  # minus the kubelet's config.* keys
        return mine == {"app": "two", "tier": "front", **(NODE_FS if field == "annotations" else {})}

    daemon.wait_for(updated, 20, f"{field} updated in /pods")
    assert_untouched(daemon, name, before)
    reasons = [e["reason"] for e in events_of(daemon, name)]
    assert "Killing" not in reasons and reasons.count("Started") == 1, reasons


def test_spec_edit_recreates_the_pod(daemon: DaemonHarness) -> None:
    daemon.write("md-spec.yaml", pod_yaml("md-spec", SLEEPER))
    before = snapshot(daemon, "md-spec")
    daemon.write("md-spec.yaml", pod_yaml("md-spec", [sh("c", "sleep 2000")]))

    def recreated() -> dict[str, Any] | None:
        pod = daemon.pod("md-spec")
        if pod is None or pod["metadata"]["uid"] == before.uid or pod["status"]["phase"] != "Running":
            return None
        return pod

    pod = daemon.wait_for(recreated, 40, "md-spec recreated with a new uid")
    daemon.wait_running("md-spec")
    assert pod["spec"]["containers"][0]["command"][-1] == "sleep 2000"
    new_pause = daemon.pause_pid("md-spec")
    assert new_pause != before.pause
    daemon.wait_for(lambda: not alive(before.pause) and not alive(before.container), 20, "old pod processes gone")
    assert [p["metadata"]["uid"] for p in daemon.pods() if p["metadata"]["name"] == "md-spec"] == [
        pod["metadata"]["uid"]
    ]


def test_invalid_edit_keeps_the_running_pod_and_a_fix_applies(daemon: DaemonHarness) -> None:
    good = labelled("md-invalid", [{**sh("c", "sleep 1000"), "ports": [{"containerPort": 8080}]}])
    path = daemon.write("md-invalid.yaml", good)
    before = snapshot(daemon, "md-invalid")
    daemon.write("md-invalid.yaml", good.replace("8080", "70000"))
    message = wait_error(daemon, path)
    assert str(path) in message
    assert "spec.containers[0].ports[0].containerPort: Invalid value: 70000" in message
    assert "between 1 and 65535" in message
    daemon.wait_for(
        lambda: "Manifest not applied" in daemon.log() and "containerPort" in daemon.log(),
        10,
        "the error in the daemon log",
    )
    time.sleep(0.5)  # nothing must happen to the running pod
    assert_untouched(daemon, "md-invalid", before)
    assert errors(daemon) == {str(path): message}

    fixed = labelled("md-invalid", [{**sh("c", "sleep 1000"), "ports": [{"containerPort": 9090}]}])
    daemon.write("md-invalid.yaml", fixed)
    wait_no_error(daemon, path)

    def applied() -> dict[str, Any] | None:
        pod = daemon.pod("md-invalid")
        if pod is None or pod["metadata"]["uid"] == before.uid:
            return None
        return pod if pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 9090 else None

    daemon.wait_for(applied, 40, "the fixed spec applied")
    daemon.wait_running("md-invalid")
    assert daemon.pause_pid("md-invalid") != before.pause
    daemon.wait_for(lambda: not alive(before.pause), 20, "old pause gone")


def test_removing_the_file_stops_the_pod_gracefully(daemon: DaemonHarness, tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    script = f"trap 'echo bye > {marker}; exit 0' TERM; while :; do {BUSYBOX} sleep 0.1; done"
    daemon.write("md-remove.yaml", pod_yaml("md-remove", [sh("c", script)]))
    before = snapshot(daemon, "md-remove")
    t0 = time.monotonic()
    daemon.remove("md-remove.yaml")
    daemon.wait_gone("md-remove")
    daemon.wait_for(lambda: not alive(before.pause) and not alive(before.container), 20, "pod processes gone")
    assert time.monotonic() - t0 < 20, "SIGTERM was handled: no wait for the 30 s grace period"
    assert marker.read_text() == "bye\n", "the container received SIGTERM"
    killing = [e for e in events_of(daemon, "md-remove") if e["reason"] == "Killing"]
    assert killing and "c" in killing[0]["message"], events_of(daemon, "md-remove")
    veths = daemon_veths(daemon)
    assert veths == [], veths


# ----- names, duplicates, unsafe files ------------------------------------------------------------------------------


def test_ignored_names_start_nothing(daemon: DaemonHarness) -> None:
    ignored = [".hidden.yaml", "x.yaml~", "x.swp", "x.bak", "notes.txt"]
    for i, filename in enumerate(ignored):
        daemon.write(filename, pod_yaml(f"md-ignored-{i}", SLEEPER))
    daemon.write("md-sentinel.yaml", pod_yaml("md-sentinel", SLEEPER))  # processed after the ignored ones
    daemon.wait_running("md-sentinel")
    time.sleep(1)  # give the daemon every chance to (wrongly) start the ignored ones
    assert [p["metadata"]["name"] for p in daemon.pods()] == ["md-sentinel"]
    assert errors(daemon) == {}


def test_second_file_with_the_same_pod_is_refused_naming_both(daemon: DaemonHarness) -> None:
    first = daemon.write("md-dup-a.yaml", pod_yaml("md-dup", SLEEPER))
    before = snapshot(daemon, "md-dup")
    second = daemon.write("md-dup-b.yaml", pod_yaml("md-dup", [sh("c", "sleep 2000")]))
    message = wait_error(daemon, second)
    assert str(first) in message and str(second) in message, message
    assert "default/md-dup" in message
    assert str(first) not in errors(daemon)
    time.sleep(0.5)
    assert_untouched(daemon, "md-dup", before)
    assert [p["metadata"]["name"] for p in daemon.pods()] == ["md-dup"]
    # once the first file goes, the refused copy is the definition: the pod now comes from the second file
    daemon.remove("md-dup-a.yaml")

    def handed_over() -> dict[str, Any] | None:
        pod = daemon.pod("md-dup")
        ok = pod is not None and pod["metadata"]["uid"] != before.uid and pod["status"]["phase"] == "Running"
        return pod if ok else None

    pod = daemon.wait_for(handed_over, 40, "md-dup defined by the second file")
    assert pod["spec"]["containers"][0]["command"][-1] == "sleep 2000"
    wait_no_error(daemon, second)
    daemon.wait_for(lambda: not alive(before.pause), 20, "the first file's pod gone")


def test_group_writable_and_foreign_owned_files_are_refused(daemon: DaemonHarness) -> None:
    writable = daemon.write("md-gw.yaml", pod_yaml("md-gw", SLEEPER), mode=0o664)
    foreign = write_bytes(daemon, "md-foreign.yaml", pod_yaml("md-foreign", SLEEPER).encode(), uid=65534)
    message = wait_error(daemon, writable)
    assert "writable by group or others (mode 0664)" in message and f"chmod go-w {writable}" in message, message
    message = wait_error(daemon, foreign)
    assert "owned by uid 65534, not root" in message and f"chown root {foreign}" in message, message
    time.sleep(0.5)
    assert daemon.pods() == []
    # fixing mode and owner applies the files
    os.chmod(writable, 0o644)
    os.chown(foreign, 0, -1)
    daemon.wait_running("md-gw")
    daemon.wait_running("md-foreign")
    wait_no_error(daemon, writable)
    wait_no_error(daemon, foreign)


# ----- the corpus: one daemon, one good pod, every bad file in turn -------------------------------------------------


@dataclass
class Corpus:
    daemon: DaemonHarness
    good: Snapshot


@pytest.fixture(scope="module")
def corpus(run_id: str) -> Iterator[Corpus]:
    with running_daemon(run_id, "corpus-") as harness:
        harness.write("corpus-good.yaml", pod_yaml("corpus-good", SLEEPER))
        yield Corpus(harness, snapshot(harness, "corpus-good"))


def expected_of(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


def check_refused(corpus: Corpus, path: Path, expected: str) -> None:
    daemon = corpus.daemon
    try:
        message = wait_error(daemon, path)
        assert expected in message, f"{path.name}: expected {expected!r} in {message!r}"
        assert message.startswith(f"{path}: "), message
        assert [p["metadata"]["name"] for p in daemon.pods()] == ["corpus-good"]
        assert_untouched(daemon, "corpus-good", corpus.good)
    finally:
        if path.is_symlink() or path.exists():
            path.unlink()
    wait_no_error(daemon, path)
    assert_untouched(daemon, "corpus-good", corpus.good)


BAD_FILES = sorted(BAD.iterdir())


@pytest.mark.parametrize("source", BAD_FILES, ids=[p.name for p in BAD_FILES])
def test_bad_manifest_is_refused_while_a_good_pod_runs(corpus: Corpus, source: Path) -> None:
    name = source.name if source.name.endswith((".yaml", ".yml", ".json")) else f"{source.stem}.yaml"
    path = write_bytes(corpus.daemon, f"bad-{name}", source.read_bytes())
    check_refused(corpus, path, expected_of(source))


def test_huge_file_is_refused(corpus: Corpus) -> None:
    size = 10 * 1024 * 1024 + 4096
    line = b"# " + b"x" * 1021 + b"\n"
    data = pod_yaml("corpus-huge", SLEEPER).encode() + b"\n" + line * (size // len(line) + 1)
    assert len(data) > 10 * 1024 * 1024
    path = write_bytes(corpus.daemon, "bad-huge.yaml", data)
    check_refused(corpus, path, "over the 10485760-byte limit")


def test_symlink_loop_is_refused(corpus: Corpus) -> None:
    path = corpus.daemon.manifests / "bad-loop.yaml"
    os.symlink("bad-loop.yaml", path)
    check_refused(corpus, path, "the symlink is a loop")


def test_dangling_symlink_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    path = corpus.daemon.manifests / "bad-dangling.yaml"
    os.symlink(tmp_path / "nowhere.yaml", path)
    check_refused(corpus, path, f"the symlink target {tmp_path / 'nowhere.yaml'} does not exist")


def test_random_binary_file_is_refused(corpus: Corpus) -> None:
    rng = random.Random(20240601)
    data = rng.randbytes(64 * 1024)
    data = b"\x01" + data[1:]  # never a UTF-16 byte-order mark
    assert b"\x00" in data
    path = write_bytes(corpus.daemon, "bad-random.yaml", data)
    check_refused(corpus, path, "file contains NUL bytes: binary data")


def test_corpus_good_pod_still_untouched(corpus: Corpus) -> None:
    assert_untouched(corpus.daemon, "corpus-good", corpus.good)
    assert corpus.daemon.container("corpus-good", "c")["restartCount"] == 0
    assert [e["reason"] for e in events_of(corpus.daemon, "corpus-good")].count("Started") == 1
