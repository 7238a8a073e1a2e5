"""Configure a pod's network from inside its network namespace: loopback up, eth0 address, default route.

STDLIB ONLY. This runs in a small helper process that has already joined the pod's network namespace (setns), so
every socket it opens talks to that namespace. It uses the classic SIOC* ioctls on one AF_INET datagram socket:
five or six system calls, well under a millisecond. Struct layouts are for LP64 Linux (x86_64 and aarch64).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct

SIOCADDRT = 0x890B
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C

IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2

IFNAMSIZ = 16
IFREQ_SIZE = 40  # struct ifreq: char ifr_name[16] + a 24-byte union

# struct rtentry (<net/route.h>) with native alignment:
#   unsigned long rt_pad1; struct sockaddr rt_dst, rt_gateway, rt_genmask; unsigned short rt_flags; short rt_pad2;
#   unsigned long rt_pad3; void *rt_pad4; short rt_metric; char *rt_dev; unsigned long rt_mtu, rt_window;
#   unsigned short rt_irtt;  -- the trailing "0L" pads to the struct's 8-byte alignment: 120 bytes on LP64.
RTENTRY_FORMAT = "@L16s16s16sHhLPhPLLH0L"


def _sockaddr_in(ip: str) -> bytes:
    """A 16-byte struct sockaddr_in (family in host order, port 0, address in network order)."""
    return struct.pack("@H2s4s8x", socket.AF_INET, b"\0\0", socket.inet_aton(ip))


def _ifreq(ifname: str, payload: bytes = b"") -> bytes:
    name = ifname.encode()
    if not 0 < len(name) < IFNAMSIZ:
        raise OSError(errno.EINVAL, f"interface name {ifname!r} must be 1 to {IFNAMSIZ - 1} bytes long")
    return struct.pack(f"{IFNAMSIZ}s", name) + payload.ljust(IFREQ_SIZE - IFNAMSIZ, b"\0")


def _ioctl(sock: socket.socket, request: int, arg: bytes, what: str) -> bytes:
    try:
        result: bytes = fcntl.ioctl(sock.fileno(), request, arg)
    except OSError as exc:
        raise OSError(exc.errno, f"{what} failed: {os.strerror(exc.errno or 0)}") from exc
    return result


def _set_up(sock: socket.socket, ifname: str) -> None:
    """Set IFF_UP on ``ifname`` (read-modify-write of the flags)."""
    reply = _ioctl(sock, SIOCGIFFLAGS, _ifreq(ifname), f"reading the flags of interface {ifname} (does it exist?)")
    (flags,) = struct.unpack_from("@H", reply, IFNAMSIZ)
    if not flags & IFF_UP:
        _ioctl(sock, SIOCSIFFLAGS, _ifreq(ifname, struct.pack("@H", flags | IFF_UP)), f"bringing {ifname} up")


def loopback_up() -> None:
    """Bring ``lo`` up; the kernel then adds 127.0.0.1/8 by itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _set_up(sock, "lo")


def configure_interface(ifname: str, ip: str, prefixlen: int, gateway: str) -> None:
    """Give ``ifname`` the address ``ip/prefixlen``, bring it up and add a default route via ``gateway``.

    Idempotent: running it twice with the same arguments succeeds. Raises OSError naming the failed step.
    """
    network = ipaddress.IPv4Network(f"{ip}/{prefixlen}", strict=False)
    if ipaddress.IPv4Address(gateway) not in network:
        raise OSError(errno.EINVAL, f"gateway {gateway} is not inside {network}, so it cannot be reached on {ifname}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _ioctl(sock, SIOCSIFADDR, _ifreq(ifname, _sockaddr_in(ip)), f"setting address {ip} on interface {ifname}")
        _ioctl(
            sock,
            SIOCSIFNETMASK,
            _ifreq(ifname, _sockaddr_in(str(network.netmask))),
            f"setting netmask /{prefixlen} on interface {ifname}",
        )
        _set_up(sock, ifname)
        any_address = _sockaddr_in("0.0.0.0")
        route = struct.pack(
            RTENTRY_FORMAT,
            0,  # rt_pad1
            any_address,  # rt_dst
            _sockaddr_in(gateway),  # rt_gateway
            any_address,  # rt_genmask
            RTF_UP | RTF_GATEWAY,
            0,  # rt_pad2
            0,  # rt_pad3
            0,  # rt_pad4
            0,  # rt_metric (0 = default priority)
            0,  # rt_dev: NULL, the kernel picks the interface that reaches the gateway
            0,  # rt_mtu
            0,  # rt_window
            0,  # rt_irtt
        )
        try:
            fcntl.ioctl(sock.fileno(), SIOCADDRT, route)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise OSError(
                    exc.errno,
                    f"adding the default route via {gateway} on {ifname} failed: {os.strerror(exc.errno or 0)}",
                ) from exc
