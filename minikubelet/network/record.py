"""The pod network a daemon recorded: ``<data-dir>/network.json`` names the bridge and pod CIDR it runs with.

``run`` compares its ``--bridge``/``--pod-cidr`` with it before it touches anything and writes it before it creates
the bridge; ``reset`` reads it (so it needs only the directories) and removes it last. A data directory from before
this file falls back to the CIDR of ``ipam.json`` and to the bridge that the run directory's pods are attached to
(their host veth names derive from bridge name and pod UID).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from minikubelet.errors import NetworkError
from minikubelet.fileio import write_atomic
from minikubelet.network.bridge import veth_name_for
from minikubelet.network.ipam import recorded_cidr

NETWORK_FILE = "network.json"
RECORD_VERSION = 1
SYS_NET = Path("/sys/class/net")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Difference:
    """A flag whose value is not the recorded one."""

    flag: str  # "--bridge" or "--pod-cidr"
    what: str  # "bridge" or "pod CIDR"
    recorded: str
    given: str
    source: str  # where the recorded value was read


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """The bridge and pod CIDR a previous daemon used with these directories (None: nothing says), and where each
    was read, for messages."""

    bridge: str | None = None
    bridge_source: str = ""
    pod_cidr: ipaddress.IPv4Network | None = None
    cidr_source: str = ""

    def differences(self, bridge: str, pod_cidr: ipaddress.IPv4Network) -> list[Difference]:
        out = []
        if self.bridge is not None and self.bridge != bridge:
            out.append(Difference("--bridge", "bridge", self.bridge, bridge, self.bridge_source))
        if self.pod_cidr is not None and self.pod_cidr != pod_cidr:
            out.append(Difference("--pod-cidr", "pod CIDR", str(self.pod_cidr), str(pod_cidr), self.cidr_source))
        return out


def network_file(data_dir: Path) -> Path:
    return data_dir / NETWORK_FILE


def read_network_file(path: Path) -> tuple[str, ipaddress.IPv4Network] | None:
    """(bridge, pod CIDR) from ``path``; None if there is no such file. A file that does not parse is "corrupt"."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NetworkError(f"reading the network record {path} failed: {exc.strerror}; check its permissions") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise ValueError(f"expected a JSON object with version {RECORD_VERSION}")
        bridge = data["bridge"]
        if not isinstance(bridge, str) or not 0 < len(bridge.encode()) <= 15:
            raise ValueError(f"bridge {bridge!r} is not an interface name of 1 to 15 bytes")
        cidr = ipaddress.IPv4Network(data["podCIDR"], strict=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise NetworkError(
            f"the network record {path} is corrupt ({exc}); it should read "
            '{"version": 1, "bridge": "<name>", "podCIDR": "<cidr>"} with the bridge and pod CIDR the daemon ran with: '
            "repair it, or delete it (then --bridge and --pod-cidr are taken as given and recorded again)"
        ) from exc
    return bridge, cidr


def write_network_file(data_dir: Path, bridge: str, pod_cidr: ipaddress.IPv4Network) -> bool:
    """Record ``bridge`` and ``pod_cidr`` (atomically, only when they change). True if the file was written."""
    path = network_file(data_dir)
    data = {"version": RECORD_VERSION, "bridge": bridge, "podCIDR": str(pod_cidr)}
    payload = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
    try:
        if path.read_bytes() == payload:
            return False
    except OSError:
        pass
    try:
        write_atomic(path, payload, 0o600)
    except OSError as exc:
        raise NetworkError(
            f"writing the network record {path} failed: {exc.strerror}; "
            "check that the data directory is writable and the disk is not full"
        ) from exc
    return True


def remove_network_file(data_dir: Path) -> None:
    try:
        network_file(data_dir).unlink()
    except FileNotFoundError:
        pass


def bridge_of_pods(pod_uids: Iterable[str], sys_net: Path = SYS_NET) -> str | None:
    """The bridge whose enslaved links include the host veths of ``pod_uids`` (their names derive from bridge and
    UID), or None if none does or two do equally. Reads ``/sys/class/net`` of the caller's network namespace."""
    uids = list(pod_uids)
    if not uids:
        return None
    masters: dict[str, str] = {}
    bridges: list[str] = []
    try:
        entries = sorted(os.listdir(sys_net))
    except OSError:
        return None
    for name in entries:
        if os.path.isdir(sys_net / name / "bridge"):
            bridges.append(name)
        try:
            masters[name] = os.path.basename(os.readlink(sys_net / name / "master"))
        except OSError:
            continue
    # two daemons sharing a manifest directory have pods of the same UIDs: the bridge holding most of ours wins
    counts = {b: sum(masters.get(veth_name_for(b, uid)) == b for uid in uids) for b in bridges}
    best = sorted((n, b) for b, n in counts.items() if n)
    if not best or (len(best) > 1 and best[-1][0] == best[-2][0]):
        return None  # none, or no telling which
    return best[-1][1]


def recorded_network(
    data_dir: Path, pod_uids: Iterable[str], sys_net: Path = SYS_NET,
    on_corrupt: Callable[[NetworkError, Path], None] | None = None,
) -> NetworkRecord:
    """What the daemon recorded in ``data_dir`` (``network.json``), else what older records say: the CIDR of
    ``ipam.json`` and the bridge the pods ``pod_uids`` hang on. A file that does not parse raises NetworkError
    ("corrupt"), or with ``on_corrupt`` is reported to it and left out. Blocking (file and sysfs reads): call it off
    the event loop."""

    def read(reader: Callable[[Path], _T | None], path: Path) -> _T | None:
        try:
            return reader(path)
        except NetworkError as e:
            if on_corrupt is None or not path.exists():
                raise
            on_corrupt(e, path)
            return None

    path = network_file(data_dir)
    stored = read(read_network_file, path)
    if stored is not None:
        return NetworkRecord(stored[0], str(path), stored[1], str(path))
    ipam_file = data_dir / "ipam.json"
    cidr = read(recorded_cidr, ipam_file)
    bridge = bridge_of_pods(pod_uids, sys_net)
    return NetworkRecord(
        bridge, "the run directory (its pods' veths are attached to that bridge)" if bridge else "",
        cidr, str(ipam_file) if cidr else "",
    )


def mismatch_error(differences: list[Difference], defaults: set[str], reset_command: str) -> NetworkError:
    """The one error ``run`` gives when ``--bridge``/``--pod-cidr`` differ from the record: which flag, both values,
    and the two ways out. ``defaults`` are the flags that were not given (their default is what differs)."""
    said = []
    for i, d in enumerate(differences):
        where = "there" if i and d.source == differences[i - 1].source else f"in {d.source}"
        default = " (the default)" if d.flag in defaults else ""
        said.append(f"{d.flag} {d.given}{default} differs from the {d.what} {d.recorded} recorded {where}")
    recorded = " ".join(f"{d.flag} {d.recorded}" for d in differences)
    given = " ".join(f"{d.flag} {d.given}" for d in differences)
    values = "value" if len(differences) == 1 else "values"
    return NetworkError(
        " and ".join(said) + f" by the daemon that last ran with these directories; what it created (bridge, pods, "
        f"leases) uses the recorded {values}. Either run with {recorded}, or first run `{reset_command}`, which stops "
        f"that daemon's pods and removes what it created (your manifests stay), and then run with {given}"
    )
