"""``pip install .`` gives the compiled pause (issue 9, point 6): the wheel's build step compiles ``pause.c``, and
falls back to the Python pause with a warning only where no compiler exists.

Offline: a fresh venv (without pip of its own) borrows pip and setuptools from this checkout's .venv through a
``.pth`` file that names a directory holding only those, and installs with ``--no-build-isolation --no-index
--no-deps`` (the runtime dependencies come from .venv on PYTHONPATH when the installed package is asked which pause
it runs). Nothing is fetched and nothing of .venv is changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.harness import REPO

BORROWED = ("pip", "setuptools", "pkg_resources", "_distutils_hack")
PAUSE_USAGE = "usage: pause POD_DIR READY_FD"


def fresh_venv(root: Path) -> tuple[Path, Path]:
    """(python, site-packages) of a new venv that sees only this .venv's pip and setuptools."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    tools = root / "buildtools"
    tools.mkdir()
    for entry in ours.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        if name in BORROWED:
            (tools / entry.name).symlink_to(entry)
    assert (tools / "pip").exists() and (tools / "setuptools").exists()
    (site / "buildtools.pth").write_text(f"{tools}\n")
    return python, site


def pip_install(python: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # a copy of the tree: the build writes build/ and *.egg-info beside the sources
    return subprocess.run([str(python), "-m", "pip", "install", "-v", "--no-build-isolation", "--no-index",
                           "--no-deps", "--disable-pip-version-check", "."], capture_output=True, text=True,
                          env=env, timeout=600, cwd=env["MK_SRC"])


def copy_tree(dst: Path) -> Path:
    src = dst / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                             ".mypy_cache", ".ruff_cache", ".pytest_cache",
                                                             "pause"))
    return src


def chosen_pause(python: Path) -> subprocess.CompletedProcess[str]:
    """Ask the installed package which pause it runs (its log line goes to stderr)."""
    deps = sysconfig.get_paths()["purelib"]  # pyyaml & co. for the import; .venv holds no minikubelet files
    code = ("import logging; logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s');"
            "from minikubelet.runtime.pausebin import find_pause_binary; print(find_pause_binary())")
    env = {k: v for k, v in os.environ.items() if k != "MINIKUBELET_PAUSE"}
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd="/",
                          env=dict(env, PYTHONPATH=deps), timeout=60)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (scripts/_setup.sh installs gcc)")
def test_pip_install_dot_builds_the_compiled_pause(tmp_path: Path) -> None:
    python, site = fresh_venv(tmp_path)
    src = copy_tree(tmp_path)
    result = pip_install(python, dict(os.environ, MK_SRC=str(src)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stderr.replace("WARNING: Skipping", ""), result.stderr[-3000:]

    pause = site / "minikubelet" / "nsexec" / "pause"
    assert pause.is_file() and os.access(pause, os.X_OK), f"no compiled pause in the install: {pause}"
    assert pause.read_bytes()[:4] == b"\x7fELF"
    usage = subprocess.run([str(pause)], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2 and PAUSE_USAGE in usage.stderr
    record = next(site.glob("minikubelet-*.dist-info/RECORD")).read_text()
    assert "minikubelet/nsexec/pause," in record, "pip knows the file (pip uninstall removes it)"
    wheel_tag = next(site.glob("minikubelet-*.dist-info/WHEEL")).read_text()
    assert "Root-Is-Purelib: false" in wheel_tag, "a wheel with a native binary is tagged for the platform"

    chosen = chosen_pause(python)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == str(pause), chosen.stdout + chosen.stderr
    assert f"Using the compiled pause path={pause}" in chosen.stderr


def test_pip_install_without_a_compiler_warns_and_falls_back(tmp_path: Path) -> None:
    python, site = fresh_venv(tmp_path)
    src = copy_tree(tmp_path)
    bare = tmp_path / "bin"  # a PATH with the interpreter and nothing that compiles
    bare.mkdir()
    (bare / "python").symlink_to(python)
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "PATH")}
    result = pip_install(python, dict(env, PATH=str(bare), MK_SRC=str(src)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "minikubelet build: WARNING: no C compiler" in output and "the Python pause" in output, output[-3000:]
    assert not (site / "minikubelet" / "nsexec" / "pause").exists()

    chosen = chosen_pause(python)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == "None"
    assert "WARNING No compiled pause" in chosen.stderr and "install a C compiler" in chosen.stderr, chosen.stderr
