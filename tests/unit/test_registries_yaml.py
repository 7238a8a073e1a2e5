"""registries.yaml (k3s format): endpoint order, auth/tls, and bad files refused with line and field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minikubelet.images.registries import RegistriesError, load


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "registries.yaml"
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_mirrors_in_order_then_default(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "mirrors:\n  docker.io:\n    endpoint:\n      - http://127.0.0.1:5000\n      - mirror.example\n"
        "configs:\n  127.0.0.1:5000:\n    auth:\n      auth: dXNlcjpwYXNz\n"
        "  mirror.example:\n    tls:\n      insecure_skip_verify: true\n",
    )
    regs = load(p)
    eps = regs.endpoints("docker.io")
    assert [e.url for e in eps] == ["http://127.0.0.1:5000", "https://mirror.example", "https://registry-1.docker.io"]
    assert (eps[0].username, eps[0].password) == ("user", "pass")
    assert eps[1].ssl is False
    assert [e.url for e in load(p, disable_default_endpoint=True).endpoints("docker.io")] == eps_urls(eps[:2])
    assert load(p, disable_default_endpoint=True).endpoints("quay.io") == []


def eps_urls(eps: list) -> list[str]:  # type: ignore[type-arg]
    return [e.url for e in eps]


def test_missing_optional_file_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path / "none.yaml").endpoints("127.0.0.1:5000")[0].url == "http://127.0.0.1:5000"
    with pytest.raises(RegistriesError, match="no such file"):
        load(tmp_path / "none.yaml", required=True)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("mirrors:\n  docker.io:\n    endpoints: [x]\n", r":3: mirrors.docker.io.endpoints: unknown field"),
        ("mirrors:\n  docker.io:\n    endpoint: x\n", r":3: mirrors.docker.io.endpoint: must be a list"),
        ("configs:\n  h:\n    auth:\n      auth: '!!'\n", r":4: configs.h.auth.auth: must be base64"),
        ("configs:\n  h:\n    tls:\n      ca_file: /nope\n", r":4: configs.h.tls.ca_file: no such file"),
        ("mirror: {}\n", r":1: mirror: unknown field"),
        ("mirrors: [\n", "not valid YAML"),
    ],
)
def test_bad_file_names_line_and_field(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(RegistriesError, match=match):
        load(_write(tmp_path, text))


def test_group_writable_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistriesError, match="must be owned by root and not writable"):
        load(_write(tmp_path, "mirrors: {}\n", 0o664))
