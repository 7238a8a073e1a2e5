"""Host side of the pod network: one Linux bridge carrying the gateway address, one veth pair per pod.

Uses pyroute2's AsyncIPRoute on one netlink socket from the daemon's event loop, with at most ``MAX_IN_FLIGHT``
requests outstanding: hundreds of pods created at once would otherwise overflow the socket's receive buffer with
replies (ENOBUFS), and pyroute2 then fails every later request on that socket. Should the socket still fail, it is
reopened and the request reported as a NetworkError, so the pod worker retries it. Never the sync IPRoute,
``IPRoute(netns=...)`` or ``netns.create()``: those fork the caller (house-style §4.10). The pod end of each veth is
created directly inside the pod's network namespace (``IFLA_NET_NS_FD`` in the peer attributes) in the same request,
so there is no move step; addresses inside the namespace are set by ``minikubelet.nsexec.netconf``. No NAT, no
iptables, ip_forward is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from minikubelet.errors import NetworkError

log = logging.getLogger(__name__)

POD_IFNAME = "eth0"
MAX_IN_FLIGHT = 8  # netlink requests outstanding on the shared socket at once

RTM_DELLINK = 17
NLMSG_ERROR = 2
NLM_F_REQUEST_ACK = 0x1 | 0x4
IFLA_IFNAME = 3


def _delete_link_blocking(ifname: str) -> None:
    """Delete link ``ifname`` with one RTM_DELLINK on a private netlink socket; raise OSError(errno) on failure.

    The kernel does a link deletion synchronously inside sendmsg(), including an RCU grace period (about 15-30 ms
    for a veth, 40 ms for a bridge). On the shared AsyncIPRoute socket that would stall the event loop for that
    long, so deletions go through this function in a worker thread (the GIL is released during the syscall).
    """
    name = ifname.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(name), IFLA_IFNAME) + name
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + attr
    seq = 1
    request = struct.pack("=IHHII", 16 + len(body), RTM_DELLINK, NLM_F_REQUEST_ACK, seq, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(10)
        sock.bind((0, 0))
        sock.send(request)
        while True:
            reply = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(reply):
                length, kind, _, reply_seq, _ = struct.unpack_from("=IHHII", reply, offset)
                if kind == NLMSG_ERROR and reply_seq == seq:
                    (error,) = struct.unpack_from("=i", reply, offset + 16)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return
                offset += max((length + 3) & ~3, 16)


def veth_name_for(bridge: str, uid: str) -> str:
    """The host-side veth name of pod ``uid`` on ``bridge``: 13 characters, fits IFNAMSIZ (15)."""
    return "v" + hashlib.sha1(f"{bridge}/{uid}".encode()).hexdigest()[:12]


class BridgeNetwork:
    """Owns one bridge and the host ends of the pod veths attached to it, through one AsyncIPRoute socket."""

    def __init__(self, bridge: str, cidr: ipaddress.IPv4Network) -> None:
        if not 0 < len(bridge.encode()) <= 15:
            raise NetworkError(f"bridge name {bridge!r} is invalid: it must be 1 to 15 bytes long")
        if cidr.prefixlen > 30:
            raise NetworkError(f"pod CIDR {cidr} is too small for a gateway and a pod; use a /30 or larger")
        self.bridge = bridge
        self.cidr = cidr
        self.gateway = ipaddress.IPv4Address(int(cidr.network_address) + 1)
        self._ipr: Any = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def open(self) -> None:
        """Open the netlink socket (idempotent)."""
        if self._ipr is None:
            self._ipr = AsyncIPRoute()

    async def close(self) -> None:
        """Close the netlink socket (idempotent)."""
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            raise NetworkError("the netlink socket is not open; call BridgeNetwork.open() first")
        return self._ipr

    @contextlib.asynccontextmanager
    async def _netlink(self, what: str) -> AsyncIterator[Any]:
        """One netlink exchange on the shared socket: waits for a free slot; a socket-level failure (anything but
        the kernel's NetlinkError answer) reopens the socket and becomes a short NetworkError."""
        async with self._slots:
            ipr = self.ipr
            try:
                yield ipr
            except NetlinkError:
                raise
            except OSError as exc:
                self._reopen(ipr)
                raise NetworkError(
                    f"{what} failed: the netlink socket broke ({exc.strerror or exc}, errno {exc.errno}); "
                    "it was reopened and the request will be retried"
                ) from None

    def _reopen(self, broken: Any) -> None:
        if self._ipr is not broken:
            return  # another request already replaced it
        log.warning("Reopening the netlink socket after a socket error bridge=%s", self.bridge)
        with contextlib.suppress(Exception):
            broken.close()
        self._ipr = AsyncIPRoute()

    def veth_name(self, uid: str) -> str:
        """Host-side veth name of pod ``uid``: deterministic from (bridge, uid), pure."""
        return veth_name_for(self.bridge, uid)

    async def ensure_bridge(self) -> None:
        """Create the bridge if missing, give it ``gateway/prefixlen`` if missing, and bring it up. Idempotent."""
        link = await self._get_link(self.bridge)
        if link is None:
            try:
                async with self._netlink(f"creating bridge {self.bridge}") as ipr:
                    await ipr.link("add", ifname=self.bridge, kind="bridge")
                log.info("Created bridge bridge=%s", self.bridge)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise self._error(
                        exc, f"creating bridge {self.bridge}", "check that no other link has that name"
                    ) from exc
            link = await self._get_link(self.bridge)
            if link is None:
                raise NetworkError(
                    f"bridge {self.bridge} vanished right after it was created; is another tool deleting it?"
                )
        kind = link.get(("linkinfo", "kind"))
        if kind != "bridge":
            raise NetworkError(
                f"link {self.bridge} exists but is a {kind or 'plain'} device, not a bridge; "
                "delete it or configure another bridge name"
            )
        index = link["index"]
        if not await self._has_gateway_address(index):
            try:
                async with self._netlink(f"adding the gateway address to bridge {self.bridge}") as ipr:
                    await ipr.addr(
                        "add",
                        index=index,
                        address=str(self.gateway),
                        prefixlen=self.cidr.prefixlen,
                        family=socket.AF_INET,
                    )
                log.info(
                    "Added gateway address bridge=%s address=%s/%d", self.bridge, self.gateway, self.cidr.prefixlen
                )
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise self._error(
                        exc, f"adding {self.gateway}/{self.cidr.prefixlen} to bridge {self.bridge}", ""
                    ) from exc
        if not link["flags"] & 1:  # IFF_UP
            try:
                async with self._netlink(f"bringing bridge {self.bridge} up") as ipr:
                    await ipr.link("set", index=index, state="up")
            except NetlinkError as exc:
                raise self._error(exc, f"bringing bridge {self.bridge} up", "") from exc

    async def attach(self, uid: str, netns_fd: int, ip: ipaddress.IPv4Address) -> str:
        """Create pod ``uid``'s veth pair: host end on the bridge and up, peer ``eth0`` inside ``netns_fd``.

        ``ip`` is only logged: addresses inside the namespace are configured by nsexec netconf. Idempotent: an
        existing host veth whose peer lives in that same namespace is kept (re-enslaved and brought up); one whose
        peer lives elsewhere (a stale sandbox) is replaced. Returns the host veth name.
        """
        veth = self.veth_name(uid)
        bridge_link = await self._get_link(self.bridge)
        if bridge_link is None:
            raise NetworkError(f"bridge {self.bridge} does not exist; call ensure_bridge() before attaching pods")
        master = bridge_link["index"]
        for _ in range(2):
            try:
                async with self._netlink(f"creating veth {veth} for pod {uid}") as ipr:
                    await ipr.link(
                        "add",
                        ifname=veth,
                        kind="veth",
                        peer={"ifname": POD_IFNAME, "net_ns_fd": netns_fd},
                        master=master,
                        state="up",
                    )
                log.info("Attached pod to bridge uid=%s veth=%s bridge=%s ip=%s", uid, veth, self.bridge, ip)
                return veth
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise self._error(
                        exc,
                        f"creating veth {veth} for pod {uid}",
                        "check that the pod's network namespace still exists",
                    ) from exc
            existing = await self._get_link(veth)
            if existing is None:
                raise NetworkError(
                    f"creating veth {veth} for pod {uid} failed: the pod's network namespace already has an "
                    f"interface named {POD_IFNAME}; recreate the pod sandbox"
                )
            if await self._peer_in_netns(existing, netns_fd):
                await self._enslave_up(existing, master)
                log.debug("Pod already attached to bridge uid=%s veth=%s bridge=%s", uid, veth, self.bridge)
                return veth
            log.warning("Replacing stale veth of another sandbox uid=%s veth=%s", uid, veth)
            await self.detach(veth)
        raise NetworkError(
            f"creating veth {veth} for pod {uid} kept failing with 'exists'; is another daemon using it?"
        )

    async def detach(self, veth: str) -> None:
        """Delete host veth ``veth`` (its peer goes with it); an absent veth is not an error."""
        if await self._delete_link(veth, "veth"):
            log.info("Detached pod veth veth=%s bridge=%s", veth, self.bridge)

    async def list_veths(self) -> list[str]:
        """Names of the links enslaved to this bridge (empty if the bridge does not exist)."""
        bridge_link = await self._get_link(self.bridge)
        if bridge_link is None:
            return []
        master = bridge_link["index"]
        names: list[str] = []
        async with self._netlink(f"listing the links of bridge {self.bridge}") as ipr:
            async for link in await ipr.link("dump"):
                if link.get("master") == master:
                    names.append(link.get("ifname"))
        return names

    async def remove_bridge(self) -> None:
        """Delete every link on the bridge, then the bridge itself; an absent bridge is not an error."""
        for veth in await self.list_veths():
            await self.detach(veth)
        if await self._delete_link(self.bridge, "bridge"):
            log.info("Removed bridge bridge=%s", self.bridge)

    async def _delete_link(self, ifname: str, what: str) -> bool:
        """Delete ``ifname`` off the event loop thread; False if it did not exist."""
        _ = self.ipr  # same "not open" error as every other method
        try:
            await asyncio.to_thread(_delete_link_blocking, ifname)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            hint = "the daemon needs CAP_NET_ADMIN (run it as root)" if exc.errno == errno.EPERM else ""
            message = f"deleting {what} {ifname} failed: {exc.strerror} (errno {exc.errno})"
            raise NetworkError(f"{message}; {hint}" if hint else message) from exc
        return True

    async def _get_link(self, ifname: str) -> Any:
        """The RTM_NEWLINK message of ``ifname`` in the host namespace, or None."""
        try:
            async with self._netlink(f"looking up link {ifname}") as ipr:
                links = await ipr.link("get", ifname=ifname)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise self._error(exc, f"looking up link {ifname}", "") from exc
        return links[0] if links else None

    async def _has_gateway_address(self, index: int) -> bool:
        found = False
        async with self._netlink(f"listing the addresses of bridge {self.bridge}") as ipr:
            async for msg in await ipr.addr("dump", index=index, family=socket.AF_INET):
                if msg.get("address") == str(self.gateway) and msg["prefixlen"] == self.cidr.prefixlen:
                    found = True  # read the dump to its end all the same
        return found

    async def _peer_in_netns(self, link: Any, netns_fd: int) -> bool:
        """Whether veth ``link``'s peer lives in the namespace of ``netns_fd`` (compared by host-side nsid)."""
        peer_nsid = link.get("IFLA_LINK_NETNSID")
        if peer_nsid is None:
            return False  # the peer is in the host namespace: not a pod's veth
        try:
            async with self._netlink("looking up the nsid of a pod network namespace") as ipr:
                info = await ipr.get_netnsid(fd=netns_fd)
        except NetlinkError as exc:
            raise self._error(exc, "looking up the nsid of a pod network namespace", "") from exc
        return info is not None and info.get("nsid") == peer_nsid

    async def _enslave_up(self, link: Any, master: int) -> None:
        try:
            async with self._netlink(f"re-attaching veth {link.get('ifname')}") as ipr:
                if link.get("master") != master:
                    await ipr.link("set", index=link["index"], master=master)
                if not link["flags"] & 1:  # IFF_UP
                    await ipr.link("set", index=link["index"], state="up")
        except NetlinkError as exc:
            raise self._error(exc, f"re-attaching veth {link.get('ifname')} to bridge {self.bridge}", "") from exc

    def _error(self, exc: NetlinkError, what: str, hint: str) -> NetworkError:
        message = f"{what} failed: {exc.args[1] if len(exc.args) > 1 else exc} (errno {exc.code})"
        if exc.code == errno.EPERM:
            hint = hint or "the daemon needs CAP_NET_ADMIN (run it as root)"
        return NetworkError(f"{message}; {hint}" if hint else message)
