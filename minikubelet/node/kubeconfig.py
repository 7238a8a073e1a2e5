"""The daemon's access file: a bearer token (``<data-dir>/token``, reused across restarts) and a kubeconfig
(``<data-dir>/kubeconfig``) pointing kubectl at ``--listen``. Both are written atomically; the token is 0600, the
kubeconfig 0600 unless ``--write-kubeconfig-mode``/``--write-kubeconfig-group`` say otherwise (as k3s: whoever can
read it can use the API). ``minikubelet kubeconfig --user NAME`` copies it into that user's ``~/.kube/config``."""

from __future__ import annotations

import asyncio
import base64
import errno
import grp
import ipaddress
import logging
import os
import pwd
import secrets
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from minikubelet.errors import MinikubeletError
from minikubelet.fileio import write_atomic
from minikubelet.settings import Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "token"
KUBECONFIG_FILE = "kubeconfig"
KUBECONFIG_RETRY = 5  # seconds between attempts to write a kubeconfig a full disk refused


def kubeconfig_path(data_dir: Path) -> Path:
    return data_dir / KUBECONFIG_FILE


def load_or_create_token(data_dir: Path) -> str:
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if len(token) >= 32:
            path.chmod(0o600)
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    write_atomic(path, token.encode() + b"\n", 0o600)
    log.info("API token created file=%s", path)
    return token


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server_url(host: str, port: int, host_ip: str, tls: bool) -> str:
    """The address kubectl should use: the listen host, or the node's IP when listening on every address."""
    if host in ("0.0.0.0", "::"):
        host = host_ip if host == "0.0.0.0" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def parse_mode(text: str) -> int:
    """``--write-kubeconfig-mode``: octal permission bits, as chmod and k3s take them ("644", "0640")."""
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f"--write-kubeconfig-mode {text!r}: give octal permission bits such as 600, 640 or 644")
    return mode


def parse_group(text: str) -> int:
    """``--write-kubeconfig-group``: a group name or number, as a gid."""
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError(f"--write-kubeconfig-group {text!r}: no such group (see getent group)") from None


def open_data_dir(data_dir: Path, mode: int) -> None:
    """A kubeconfig readable by group or others needs its directory searchable by them: x only (no listing; the
    directory's group is root's, so others' x too), every other file there keeps its own 0600/0700."""
    search = 0o011 if mode & 0o044 else 0
    current = data_dir.stat().st_mode & 0o777
    if search and current & search != search:
        data_dir.chmod(current | search)
        log.info("Data directory made searchable for the kubeconfig dir=%s mode=%04o", data_dir, current | search)


def render_kubeconfig(server: str, token: str, ca_cert: Path | None) -> bytes:
    cluster: dict[str, str] = {"server": server}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "minikubelet", "cluster": cluster}],
        "users": [{"name": "minikubelet", "user": {"token": token}}],
        "contexts": [{"name": "minikubelet", "context": {"cluster": "minikubelet", "user": "minikubelet",
                                                           "namespace": "default"}}],
        "current-context": "minikubelet",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False).encode()


def write_kubeconfig(data_dir: Path, server: str, token: str, node: str, ca_cert: Path | None,
                     mode: int = 0o600, gid: int | None = None) -> bytes | None:
    """Write ``<data-dir>/kubeconfig`` (``mode``, group ``gid``) unless it already says the same. None when done;
    the wanted content when it could not be written (a full disk): the old file, if any, is kept and the caller
    retries (``retry_kubeconfig``)."""
    path = kubeconfig_path(data_dir)
    data = render_kubeconfig(server, token, ca_cert)
    try:
        if path.read_bytes() == data:
            path.chmod(mode)
            if gid is not None:
                os.chown(path, -1, gid)
            log.info("Kubeconfig up to date file=%s server=%s node=%s mode=%04o", path, server, node, mode)
            return None
    except OSError:
        pass
    if not try_write_kubeconfig(path, data, mode, gid):
        return data
    log.info("Kubeconfig written file=%s server=%s node=%s mode=%04o", path, server, node, mode)
    return None


def try_write_kubeconfig(path: Path, data: bytes, mode: int = 0o600, gid: int | None = None) -> bool:
    try:
        write_atomic(path, data, mode, gid=gid)
    except OSError as e:
        kept = "the old one is kept and may name an old address" if path.exists() else "kubectl has none yet"
        log.error("Could not write the kubeconfig; %s; retrying every %d s (%s) file=%s error=%s", kept,
                  KUBECONFIG_RETRY, "free space on its disk" if e.errno == errno.ENOSPC else "check its directory",
                  path, e.strerror or e)
        return False
    return True


async def retry_kubeconfig(path: Path, data: bytes, interval: float = KUBECONFIG_RETRY, mode: int = 0o600,
                           gid: int | None = None) -> None:
    """Write the kubeconfig a full disk refused at start, as soon as it can be written."""
    while True:
        await asyncio.sleep(interval)
        if await asyncio.to_thread(try_write_kubeconfig, path, data, mode, gid):
            log.info("Kubeconfig written file=%s", path)
            return


def _merged(existing: object, ours: dict[str, object]) -> dict[str, object]:
    """``ours`` merged into a user's kubeconfig: our cluster/user/context entries replace theirs of the same name,
    every other entry is kept, and the current context becomes ours."""
    if not isinstance(existing, dict):
        return ours
    out = dict(existing)
    for key in ("clusters", "users", "contexts"):
        mine = ours.get(key)
        theirs = existing.get(key)
        assert isinstance(mine, list)
        names = {e.get("name") for e in mine if isinstance(e, dict)}
        kept = [e for e in theirs if not (isinstance(e, dict) and e.get("name") in names)] \
            if isinstance(theirs, list) else []
        out[key] = kept + mine
    out["current-context"] = ours["current-context"]
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    return out


def write_user_kubeconfig(data_dir: Path, user: str) -> Path:
    """Copy the daemon's kubeconfig into ``~USER/.kube/config`` (merged into one already there), owned by the user,
    mode 0600. The write runs in a child that has become the user, so a link in their home cannot redirect it."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise MinikubeletError(f"--user {user!r}: no such user (see getent passwd)") from None
    source = kubeconfig_path(data_dir)
    try:
        ours = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise MinikubeletError(f"{source} does not exist yet: start the daemon first (scripts/run)") from None
    except PermissionError:
        raise MinikubeletError(f"cannot read {source}: run this as root (sudo)") from None
    if not isinstance(ours, dict):
        raise MinikubeletError(f"{source} is not a kubeconfig; restart the daemon to write it again")
    target = Path(entry.pw_dir) / ".kube" / "config"
    pid = os.fork()
    if pid == 0:  # the child: become the user, then merge and write as them
        code = 1
        try:
            os.setgroups(os.getgrouplist(user, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            target.parent.mkdir(mode=0o700, exist_ok=True)
            try:
                existing = yaml.safe_load(target.read_text())
            except FileNotFoundError:
                existing = None
            write_atomic(target, yaml.safe_dump(_merged(existing, ours), sort_keys=False).encode(), 0o600)
            code = 0
        except (OSError, yaml.YAMLError) as e:
            print(f"minikubelet: cannot write {target} as {user}: {e}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise MinikubeletError(f"{target} was not written (see the message above)")
    log.info("Kubeconfig written for a user file=%s user=%s", target, user)
    return target


@dataclass(frozen=True, slots=True)
class Access:
    token: str
    loopback: bool
    ssl_context: ssl.SSLContext | None
    kubeconfig: Path
    kubeconfig_pending: bytes | None = None  # what a full disk kept from being written (retry_kubeconfig)


def self_signed(data_dir: Path, host: str, node: str) -> tuple[Path, Path]:
    """``<data-dir>/tls/api.{crt,key}``: a self-signed loopback certificate, made once with openssl and reused."""
    tls_dir = data_dir / "tls"
    cert, key = tls_dir / "api.crt", tls_dir / "api.key"
    if cert.exists() and key.exists():
        return cert, key
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = ["IP:127.0.0.1", "IP:::1", "DNS:localhost", f"DNS:{node}"]
    if host not in ("127.0.0.1", "::1", "0.0.0.0", "::"):
        names.append(f"IP:{host}")
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "3650", "-subj", "/CN=minikubelet", "-addext", "subjectAltName=" + ",".join(names),
            "-keyout", str(key), "-out", str(cert)]
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise MinikubeletError(f"cannot create the API's self-signed certificate with openssl: {e}") from None
    key.chmod(0o600)
    log.info("Self-signed API certificate created file=%s", cert)
    return cert, key


def setup_access(settings: Settings, host_ip: str) -> Access:
    """Token, TLS context and kubeconfig for --listen. Beyond loopback the certificate must be given; on loopback
    a self-signed one is made (kubectl sends the token only over TLS)."""
    loopback = is_loopback(settings.listen_host)
    if settings.tls_cert is None or settings.tls_key is None:
        if not loopback:
            raise MinikubeletError(f"--listen {settings.listen_host}:{settings.listen_port} is beyond loopback: give "
                                   "--tls-cert and --tls-key so the bearer token never crosses the network in clear")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(settings.data_dir, settings.listen_host, settings.node)
    else:
        cert, key = settings.tls_cert, settings.tls_key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise MinikubeletError(f"cannot load the TLS certificate {cert} / key {key}: {e}") from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = load_or_create_token(settings.data_dir)
    server = server_url(settings.listen_host, settings.listen_port, host_ip, True)
    pending = write_kubeconfig(settings.data_dir, server, token, settings.node, cert, settings.kubeconfig_mode,
                               settings.kubeconfig_group)
    if settings.kubeconfig_mode & 0o044:
        open_data_dir(settings.data_dir, settings.kubeconfig_mode)
    return Access(token, loopback, context, kubeconfig_path(settings.data_dir), pending)
