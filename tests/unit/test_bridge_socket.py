"""BridgeNetwork's recovery from a broken netlink socket (the kernel answering ENOBUFS under load)."""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

import pytest

from minikubelet.errors import NetworkError
from minikubelet.network.bridge import BridgeNetwork


class BrokenSocket:
    """Stands in for an AsyncIPRoute whose socket overflowed: every request fails the way pyroute2 fails it."""

    def __init__(self) -> None:
        self.closed = False

    async def link(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOBUFS, "No buffer space available")

    def close(self) -> None:
        self.closed = True


async def test_a_broken_netlink_socket_is_reopened_and_reported_briefly() -> None:
    net = BridgeNetwork("mkunitbr0", ipaddress.IPv4Network("10.250.0.0/24"))
    await net.open()
    real = net.ipr
    real.close()
    broken = BrokenSocket()
    net._ipr = broken
    with pytest.raises(NetworkError, match=r"looking up link lo failed: the netlink socket broke \(No buffer space"):
        await net._get_link("lo")
    assert broken.closed
    assert net.ipr is not broken
    link = await net._get_link("lo")  # the new socket works
    assert link["index"] == 1
    assert await net._get_link("mk-no-such-link") is None
    await net.close()
