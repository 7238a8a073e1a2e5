"""Pod IP address management: hand out host addresses of the pod CIDR, one per pod UID, persisted as JSON.

Allocation is round-robin after the last address handed out (like CNI host-local), so an address released by a
deleted pod is not immediately given to the next one. The first host address of the CIDR is the gateway (the
bridge address) and is never leased. One daemon owns the state file; this class is not safe across processes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import pathlib
import tempfile
from typing import Any

# errors.py already defines NetworkError(MinikubeletError); re-export it so there is exactly one class to catch.
from minikubelet.errors import NetworkError

__all__ = ["Ipam", "NetworkError", "read_state", "recorded_cidr"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


class Ipam:
    """Owns the pod-UID → IPv4 lease table of one pod CIDR and its JSON state file."""

    def __init__(self, cidr: ipaddress.IPv4Network, state_file: pathlib.Path) -> None:
        if cidr.prefixlen > 30:
            raise NetworkError(
                f"pod CIDR {cidr} is too small: it needs room for a gateway and at least one pod; use a /30 or larger"
            )
        self.cidr = cidr
        self.state_file = state_file
        net = int(cidr.network_address)
        self._gateway = net + 1
        self._first = net + 2  # first leasable address
        self._last = int(cidr.broadcast_address) - 1  # last leasable address
        self._leases: dict[str, int] = {}
        self._used: set[int] = set()
        self._last_allocated = self._gateway  # so that the first allocation is the first leasable address
        self._load()

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The first host address of the CIDR: the bridge address and the pods' default route."""
        return ipaddress.IPv4Address(self._gateway)

    @property
    def capacity(self) -> int:
        """How many pod addresses the CIDR holds (all hosts but the gateway)."""
        return self._last - self._first + 1

    def allocate(self, uid: str) -> ipaddress.IPv4Address:
        """Return the lease of ``uid``, creating one (and persisting it) if it has none."""
        existing = self._leases.get(uid)
        if existing is not None:
            return ipaddress.IPv4Address(existing)
        if len(self._used) >= self.capacity:
            raise NetworkError(
                f"pod CIDR {self.cidr} is exhausted: all {self.capacity} pod addresses are leased; "
                "delete pods or configure a larger pod CIDR"
            )
        candidate = self._next_free()
        previous_last = self._last_allocated
        self._leases[uid] = candidate
        self._used.add(candidate)
        self._last_allocated = candidate
        try:
            self._save()
        except NetworkError:
            del self._leases[uid]
            self._used.discard(candidate)
            self._last_allocated = previous_last
            raise
        ip = ipaddress.IPv4Address(candidate)
        log.debug("Leased pod address uid=%s ip=%s", uid, ip)
        return ip

    def release(self, uid: str) -> None:
        """Drop the lease of ``uid``; unknown UIDs are ignored."""
        address = self._leases.pop(uid, None)
        if address is None:
            return
        self._used.discard(address)
        try:
            self._save()
        except NetworkError:
            self._leases[uid] = address
            self._used.add(address)
            raise
        log.debug("Released pod address uid=%s ip=%s", uid, ipaddress.IPv4Address(address))

    def leased(self) -> int:
        """How many addresses are leased."""
        return len(self._leases)

    def leases(self) -> dict[str, ipaddress.IPv4Address]:
        """A copy of the current leases, pod UID → address."""
        return {uid: ipaddress.IPv4Address(address) for uid, address in self._leases.items()}

    def _next_free(self) -> int:
        """The first free address after the last allocated one, wrapping around the leasable range."""
        candidate = self._last_allocated
        for _ in range(self.capacity):
            candidate = candidate + 1 if self._first <= candidate < self._last else self._first
            if candidate not in self._used:
                return candidate
        raise AssertionError("no free address although the lease count is below capacity")  # pragma: no cover

    def _load(self) -> None:
        data = read_state(self.state_file)
        if data is None:
            return
        recorded = ipaddress.IPv4Network(data["cidr"])
        if recorded != self.cidr:
            raise NetworkError(
                f"the IPAM state file {self.state_file} holds the leases of pod CIDR {recorded}, not {self.cidr}: "
                f"run with --pod-cidr {recorded}, or first run `minikubelet reset` with the same directories"
            )
        try:
            self._parse(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise _corrupt(self.state_file, exc) from exc
        log.info("Loaded pod address leases file=%s cidr=%s leases=%d", self.state_file, self.cidr, len(self._leases))

    def _parse(self, data: dict[str, Any]) -> None:
        leases: dict[str, int] = {}
        used: set[int] = set()
        for uid, text_ip in dict(data["leases"]).items():
            address = int(ipaddress.IPv4Address(text_ip))
            if not (isinstance(uid, str) and self._first <= address <= self._last):
                raise ValueError(f"lease {uid}={text_ip} is not a pod address of {self.cidr}")
            if address in used:
                raise ValueError(f"address {text_ip} is leased twice")
            leases[uid] = address
            used.add(address)
        last = data.get("last")
        last_allocated = int(ipaddress.IPv4Address(last)) if last is not None else self._gateway
        if not self._gateway <= last_allocated <= self._last:
            raise ValueError(f"last allocated address {last} is outside {self.cidr}")
        self._leases, self._used, self._last_allocated = leases, used, last_allocated

    def _save(self) -> None:
        """Write the state atomically: a temporary file in the same directory, fsync, rename."""
        data = {
            "version": STATE_VERSION,
            "cidr": str(self.cidr),
            "last": str(ipaddress.IPv4Address(self._last_allocated)),
            "leases": {uid: str(ipaddress.IPv4Address(address)) for uid, address in self._leases.items()},
        }
        payload = json.dumps(data, indent=1, sort_keys=True).encode()
        directory = self.state_file.parent
        tmp_name = ""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.state_file.name}.", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(payload)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, self.state_file)
            tmp_name = ""
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise NetworkError(
                f"writing the IPAM state file {self.state_file} failed: {exc.strerror}; "
                "check that its directory is writable and the disk is not full"
            ) from exc
        finally:
            if tmp_name:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass


def _corrupt(state_file: pathlib.Path, exc: Exception) -> NetworkError:
    return NetworkError(
        f"the IPAM state file {state_file} is corrupt ({exc}); "
        "stop the daemon, delete or repair the file, and restart (pods lose their recorded addresses)"
    )


def read_state(state_file: pathlib.Path) -> dict[str, Any] | None:
    """The parsed state file (its version and CIDR checked), None if there is none; NetworkError if it cannot be
    read or does not parse (the only case called "corrupt")."""
    try:
        text = state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NetworkError(
            f"reading the IPAM state file {state_file} failed: {exc.strerror}; check its permissions"
        ) from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"expected a JSON object with version {STATE_VERSION}")
        ipaddress.IPv4Network(data["cidr"], strict=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise _corrupt(state_file, exc) from exc
    return data


def recorded_cidr(state_file: pathlib.Path) -> ipaddress.IPv4Network | None:
    """The pod CIDR the state file was written for, None if there is no file; NetworkError if it is corrupt."""
    data = read_state(state_file)
    return None if data is None else ipaddress.IPv4Network(data["cidr"])
