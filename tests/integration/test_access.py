"""Access for people (issue 12 point 8): a non-root user runs the real kubectl, through a kubeconfig made readable
by ``--write-kubeconfig-mode``/``--write-kubeconfig-group`` (as k3s) or copied by ``minikubelet kubeconfig --user``.

Each test creates a throwaway user (and its group) with a temp home, and removes both, also on failure."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.harness import MINIKUBELET, REPO, DaemonHarness

pytestmark = pytest.mark.root


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def kubectl(self, binary: Path, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "KUBECACHEDIR": str(self.home / "cache")}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=60,
                              user=self.uid, group=self.gid, extra_groups=[], cwd=self.home)


@pytest.fixture
def user(run_id: str) -> Iterator[User]:
    name = f"mkt{run_id}"[:30]
    home = Path(tempfile.mkdtemp(prefix=f"mk-{run_id}-home-"))
    subprocess.run(["useradd", "--user-group", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                    name], check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        os.chmod(home, 0o700)
        yield User(name, entry.pw_uid, entry.pw_gid, home)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_default_kubeconfig_is_root_only(daemon: DaemonHarness, user: User, kubectl_bin: Path) -> None:
    path = daemon.data_dir / "kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    r = user.kubectl(kubectl_bin, "get", "nodes", kubeconfig=path)
    assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr


def test_write_kubeconfig_mode_and_group(daemon: DaemonHarness, user: User, kubectl_bin: Path) -> None:
    daemon.stop()
    daemon.start("--write-kubeconfig-mode", "640", "--write-kubeconfig-group", user.name)
    path = daemon.data_dir / "kubeconfig"
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, user.gid)
    assert stat.S_IMODE((daemon.data_dir / "token").stat().st_mode) == 0o600  # the rest stays private
    r = user.kubectl(kubectl_bin, "get", "nodes", kubeconfig=path)
    assert r.returncode == 0 and daemon.node_name in r.stdout, r.stderr


def test_bad_mode_and_group_are_clear_errors(daemon: DaemonHarness) -> None:
    for flags, message in ((["--write-kubeconfig-mode", "rw-r--r--"], "give octal permission bits"),
                           (["--write-kubeconfig-mode", "1777"], "give octal permission bits"),
                           (["--write-kubeconfig-group", "no-such-group-mk"], "no such group")):
        r = subprocess.run([*MINIKUBELET, "run", *daemon.flags, *flags], capture_output=True, text=True, timeout=30,
                           cwd=REPO)
        assert r.returncode != 0 and message in r.stderr, r.stderr


def test_kubeconfig_user_writes_their_kube_config(daemon: DaemonHarness, user: User, kubectl_bin: Path) -> None:
    kube = user.home / ".kube"
    kube.mkdir(mode=0o700)
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "work",
             "clusters": [{"name": "work", "cluster": {"server": "https://127.0.0.1:1"}}],
             "users": [{"name": "work", "user": {"token": "t"}}],
             "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work"}}]}
    (kube / "config").write_text(yaml.safe_dump(other))
    os.chown(kube, user.uid, user.gid)
    os.chown(kube / "config", user.uid, user.gid)
    r = subprocess.run([*MINIKUBELET, "kubeconfig", "--data-dir", str(daemon.data_dir), "--user", user.name],
                       capture_output=True, text=True, timeout=30, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(kube / "config")
    st = (kube / "config").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.uid, user.gid, 0o600)
    merged = yaml.safe_load((kube / "config").read_text())
    assert merged["current-context"] == "minikubelet"
    assert {c["name"] for c in merged["contexts"]} == {"work", "minikubelet"}
    r = user.kubectl(kubectl_bin, "get", "nodes")
    assert r.returncode == 0 and daemon.node_name in r.stdout, r.stderr

    r = subprocess.run([*MINIKUBELET, "kubeconfig", "--data-dir", str(daemon.data_dir), "--user", "no-such-user-mk"],
                       capture_output=True, text=True, timeout=30, cwd=REPO)
    assert r.returncode != 0 and "no such user" in r.stderr, r.stderr


def test_kubeconfig_user_does_not_follow_a_link_in_their_home(daemon: DaemonHarness, user: User) -> None:
    """The write runs as the user: a ~/.kube linked to a root-only directory is refused, nothing is written."""
    target = Path(tempfile.mkdtemp(prefix="mk-root-only-"))
    try:
        (user.home / ".kube").symlink_to(target)
        r = subprocess.run([*MINIKUBELET, "kubeconfig", "--data-dir", str(daemon.data_dir), "--user", user.name],
                           capture_output=True, text=True, timeout=30, cwd=REPO)
        assert r.returncode != 0 and "was not written" in r.stderr, r.stderr
        assert list(target.iterdir()) == []
    finally:
        shutil.rmtree(target, ignore_errors=True)
