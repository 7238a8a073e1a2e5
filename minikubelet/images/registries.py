"""k3s's ``registries.yaml``: mirrors (endpoints tried in order) and per-host auth and TLS.

For a registry, the endpoints are its ``mirrors.<registry>.endpoint`` list in order, then the registry itself
unless ``--disable-default-registry-endpoint`` is given (k3s; tests always give it, so nothing leaves the
machine). ``configs.<host>`` gives ``auth`` (username/password, auth = base64 "user:pass", identitytoken) and
``tls`` (ca_file, cert_file, key_file, insecure_skip_verify). An endpoint is plain http only when written
``http://``. The file holds credentials, so it must be root-owned and not group/other-writable; a bad file is
refused at start with its line and field named.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minikubelet.images.registry import Endpoint, default_endpoint


class RegistriesError(ValueError):
    """``registries.yaml`` is unusable; the message names the file, line and field, and how to fix it."""


@dataclass(frozen=True, slots=True)
class HostConfig:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class Registries:
    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    configs: dict[str, HostConfig] = field(default_factory=dict)
    disable_default_endpoint: bool = False

    def endpoints(self, domain: str) -> list[Endpoint]:
        """Where to pull ``domain``'s repositories from, in order (``*`` mirrors every registry)."""
        urls = list(self.mirrors.get(domain, self.mirrors.get("*", ())))
        out = [self._endpoint(u) for u in urls]
        if not self.disable_default_endpoint:
            out.append(self._endpoint(default_endpoint(domain).url))
        return out

    def _endpoint(self, url: str) -> Endpoint:
        host = url.split("://", 1)[-1].split("/", 1)[0]
        cfg = self.configs.get(host, HostConfig())
        ctx: Any = None
        if url.startswith("https://"):
            if cfg.insecure_skip_verify:
                ctx = False
            elif cfg.ca_file or cfg.cert_file:
                ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
                if cfg.cert_file:
                    ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        return Endpoint(
            url.rstrip("/").removesuffix("/v2"),
            username=cfg.username,
            password=cfg.password,
            identity_token=cfg.identity_token,
            ssl=ctx,
        )


def load(path: Path, *, required: bool = False, disable_default_endpoint: bool = False) -> Registries:
    """Read ``path``; a missing optional file is no mirrors and no credentials."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if required:
            raise RegistriesError(f"{path}: no such file (give --registries an existing file)") from None
        return Registries(disable_default_endpoint=disable_default_endpoint)
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RegistriesError(
            f"{path}: it holds credentials, so it must be owned by root and not writable by group or others "
            f"(owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); fix: chown root {path}; chmod go-w {path}"
        )
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise RegistriesError(f"{path}: not valid YAML: {e}") from None
    return parse_node(root, str(path), disable_default_endpoint)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _map(node: yaml.Node | None, where: str, file: str) -> list[tuple[str, yaml.Node]]:
    if node is None:
        return []
    if not isinstance(node, yaml.MappingNode):
        raise RegistriesError(f"{file}:{_line(node)}: {where}: must be a mapping")
    return [(str(k.value), v) for k, v in node.value]


def _str(node: yaml.Node, where: str, file: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise RegistriesError(f"{file}:{_line(node)}: {where}: must be a string")
    return str(node.value)


def parse_node(root: yaml.Node | None, file: str, disable_default_endpoint: bool = False) -> Registries:
    mirrors: dict[str, tuple[str, ...]] = {}
    configs: dict[str, HostConfig] = {}
    for key, node in _map(root, "the top level", file):
        if key == "mirrors":
            for reg, mnode in _map(node, "mirrors", file):
                eps: list[str] = []
                for field_, value in _map(mnode, f"mirrors.{reg}", file):
                    if field_ == "rewrite":
                        raise RegistriesError(f"{file}:{_line(value)}: mirrors.{reg}.rewrite: not supported")
                    if field_ != "endpoint":
                        raise RegistriesError(f"{file}:{_line(value)}: mirrors.{reg}.{field_}: unknown field")
                    if not isinstance(value, yaml.SequenceNode):
                        raise RegistriesError(f"{file}:{_line(value)}: mirrors.{reg}.endpoint: must be a list")
                    for i, item in enumerate(value.value):
                        url = _str(item, f"mirrors.{reg}.endpoint[{i}]", file)
                        if not url.startswith(("http://", "https://")):
                            url = "https://" + url  # http only when written http://
                        eps.append(url)
                mirrors[reg] = tuple(eps)
        elif key == "configs":
            for host, cnode in _map(node, "configs", file):
                configs[host] = _host_config(cnode, f"configs.{host}", file)
        else:
            raise RegistriesError(f"{file}:{_line(node)}: {key}: unknown field (expected mirrors or configs)")
    return Registries(mirrors, configs, disable_default_endpoint)


def _host_config(node: yaml.Node, where: str, file: str) -> HostConfig:
    vals: dict[str, Any] = {}
    for section, snode in _map(node, where, file):
        if section not in ("auth", "tls"):
            raise RegistriesError(f"{file}:{_line(snode)}: {where}.{section}: unknown field (expected auth or tls)")
        for key, v in _map(snode, f"{where}.{section}", file):
            name = f"{where}.{section}.{key}"
            s = _str(v, name, file)
            if section == "auth" and key in ("username", "password"):
                vals[key] = s
            elif section == "auth" and key == "auth":
                try:
                    user, sep, pw = base64.b64decode(s, validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    sep = ""
                if not sep:
                    raise RegistriesError(f'{file}:{_line(v)}: {name}: must be base64 of "username:password"')
                vals["username"], vals["password"] = user, pw
            elif section == "auth" and key == "identitytoken":
                vals["identity_token"] = s
            elif section == "tls" and key in ("ca_file", "cert_file", "key_file"):
                if not os.path.isfile(s):
                    raise RegistriesError(f"{file}:{_line(v)}: {name}: no such file {s!r}")
                vals[key] = s
            elif section == "tls" and key == "insecure_skip_verify":
                if s.lower() not in ("true", "false"):
                    raise RegistriesError(f"{file}:{_line(v)}: {name}: must be true or false")
                vals["insecure_skip_verify"] = s.lower() == "true"
            else:
                raise RegistriesError(f"{file}:{_line(v)}: {name}: unknown field")
    return HostConfig(**vals)
