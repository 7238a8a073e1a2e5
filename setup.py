"""The one build step pyproject.toml cannot declare: compile the pause (``minikubelet/nsexec/pause.c``) into the wheel.

``pip install .`` (and any wheel build) runs ``build_py``, which here also compiles ``pause.c`` into the package as
``minikubelet/nsexec/pause`` (static when the C library allows it, else dynamic), the binary
``runtime/pausebin.py`` looks for. Without a C compiler, or if it fails, the build goes on with a warning and pods
use the Python pause (about 1.1 MB more memory per pod). ``CC`` names the compiler (default: ``cc``, then ``gcc``).
The wheel is tagged for the platform, since it carries a native binary. ``scripts/_setup.sh`` builds the same file
with the same flags for the editable install (``mk_build_pause``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

PAUSE_SOURCE = Path("minikubelet", "nsexec", "pause.c")
PAUSE_BINARY = Path("minikubelet", "nsexec", "pause")
FLAGS = (["-O2", "-static"], ["-O2"])  # static: no shared library pages to fault in per pod


def warn(message: str) -> None:
    print(f"minikubelet build: WARNING: {message}", file=sys.stderr)


def compile_pause(source: Path, out: Path) -> bool:
    """``cc -O2 [-static] -o out source``; False (with a warning saying what it costs) when it cannot be built."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    fallback = "pods will use the Python pause (about 1.1 MB more memory per pod)"
    if not cc:
        warn(f"no C compiler (cc, gcc or $CC) to build {source}; {fallback}: install one and reinstall to fix it")
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    error = ""
    for flags in FLAGS:
        try:
            result = subprocess.run([cc, *flags, "-o", str(tmp), str(source)], capture_output=True, text=True,
                                    timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            error = str(e)
            continue
        if result.returncode == 0:
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
            return True
        error = result.stderr.strip()[-2000:]
    with_suppressed_unlink(tmp)
    warn(f"{cc} could not build {source}; {fallback}:\n{error}")
    return False


def with_suppressed_unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class BuildPyWithPause(build_py):
    """build_py, then the compiled pause next to its source in the build tree."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # the editable install gets it from scripts/_setup.sh
            compile_pause(PAUSE_SOURCE, Path(self.build_lib) / PAUSE_BINARY)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        built = Path(self.build_lib) / PAUSE_BINARY
        if built.exists():
            outputs.append(str(built))
        return outputs


class PlatformDistribution(Distribution):
    """A wheel holding a native binary is not pure: tag it for this platform."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithPause}, distclass=PlatformDistribution)
