"""The package's layout rules (issue 8), checked on the source: no import circle, each room imports only the rooms
its docstring allows, and no module past the house style's hard cap.

Imports are read with ``ast`` (function-level and ``TYPE_CHECKING`` imports included), so a circle hidden behind a
lazy import fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "minikubelet"
MAX_LINES = 600  # house-style.md rule 1: soft cap 400, hard cap 600

# room -> rooms it may import ("pod.spec" and "pod.env" are rooms of their own: plain data and pure functions that
# the manifest parser, the runtime and the prober need without the pod worker)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "timefmt": set(),
    "fileio": set(),
    "settings": set(),
    "events": {"timefmt"},
    "pod.spec": set(),
    "pod.env": {"pod.spec"},
    "manifests": {"errors", "fileio", "pod.spec", "images.reference", "cgroups"},
    "network": {"errors", "fileio"},
    "nsexec": set(),
    "runtime": {"errors", "network", "pod.spec"},
    "probe": {"errors", "pod.spec", "pod.env"},
    "node": {"errors", "settings", "timefmt", "fileio", "pod.spec", "version", "images", "images.reference",
             "cgroups"},
    "images": {"errors", "fileio", "timefmt", "version", "images.reference"},
    "images.reference": set(),
    "pod": {"errors", "events", "timefmt", "fileio", "manifests", "runtime", "network", "probe", "pod.spec",
            "pod.env", "images", "images.reference", "cgroups"},
    "api": {"errors", "events", "timefmt", "fileio", "settings", "manifests", "runtime", "network", "probe", "node",
            "pod", "pod.spec", "pod.env", "version", "images", "images.reference"},
    "daemon": {"*"},
    "cli": {"*"},
    "__main__": {"*"},
    "version": set(),
    "cgroups": {"errors", "pod.spec"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str:
    """minikubelet.pod.worker -> pod; minikubelet.pod.spec -> pod.spec; minikubelet -> version."""
    parts = module.split(".")[1:]
    if not parts:
        return "version"
    if parts[0] in ("pod", "images") and len(parts) > 1 and f"{parts[0]}.{parts[1]}" in ALLOWED:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """Every minikubelet module ``path`` imports (``from minikubelet.x import y`` counts x.y when that is a module)."""
    known = modules()
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("minikubelet"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if not base.startswith("minikubelet"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
    out.discard(name)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path, name) for name, path in modules().items()}


def find_circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle() -> None:
    assert find_circles(graph()) == []


def test_the_checks_see_what_they_check() -> None:
    """The checker itself: a circle through three modules is found, and lazy/TYPE_CHECKING imports are read."""
    assert find_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_circles({"a": {"b"}, "b": set()}) == []
    assert "minikubelet.pod.worker" in imports_of(PACKAGE / "pod" / "manager.py", "minikubelet.pod.manager")
    lazy = imports_of(PACKAGE / "api" / "logs.py", "minikubelet.api.logs")  # imports the worker under TYPE_CHECKING
    assert "minikubelet.pod.worker" in lazy


@pytest.mark.parametrize("name", sorted(modules()))
def test_each_room_imports_only_what_it_may(name: str) -> None:
    mine = room(name)
    assert mine in ALLOWED, f"{name}: room {mine!r} has no rule in ALLOWED (add one, and say it in its docstring)"
    allowed = ALLOWED[mine]
    if "*" in allowed:
        return
    bad = sorted(m for m in imports_of(modules()[name], name) if room(m) != mine and room(m) not in allowed)
    assert bad == [], f"{name} ({mine}) may import {sorted(allowed)} but imports {bad}"


def test_packages_say_what_they_own_and_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Owns:" in doc and "May import:" in doc, f"{init.relative_to(PACKAGE.parent)} lacks Owns:/May import:"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_past_the_hard_cap(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (hard cap {MAX_LINES}): split it where it has two jobs"
