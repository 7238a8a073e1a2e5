"""Bridge + veth + netconf against the real kernel: throwaway netns per fake pod, unique bridge and /24 per run.

Traffic goes only to the pod IPs these tests create (ICMP echo over the test bridge). No NAT, no forwarding.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pathlib
import secrets
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from minikubelet.errors import NetworkError
from minikubelet.network.bridge import BridgeNetwork, veth_name_for
from minikubelet.nsexec import netconf

REPO = str(pathlib.Path(__file__).resolve().parents[2])


def _can_make_netns() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_root = pytest.mark.skipif(not _can_make_netns(), reason="needs root and unshare(CLONE_NEWNET)")

# One ICMP echo over a raw socket, like `ping -c1 -W1 DST` (the machines have no ping binary). Exit 0 on reply.
PING = r"""
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
dst, ident = sys.argv[1], os.getpid() & 0xFFFF
body = b"minikubelet-test"
pkt = struct.pack("!BBHHH", 8, 0, csum(struct.pack("!BBHHH", 8, 0, 0, ident, 1) + body), ident, 1) + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(pkt, (dst, 0))
deadline = time.monotonic() + 1.0
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        break
    ihl = (data[0] & 0xF) * 4
    kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
    if addr[0] == dst and kind == 0 and rid == ident:
        sys.exit(0)
sys.exit(1)
"""

NETCONF = """
import sys, time
sys.path.insert(0, sys.argv[1])
from minikubelet.nsexec.netconf import configure_interface, loopback_up
start = time.perf_counter()
loopback_up()
configure_interface(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
print("%.3f" % ((time.perf_counter() - start) * 1000))
"""


class FakePod:
    """A `sleep` in its own network namespace, held open by fd like a pause process."""

    def __init__(self, proc: subprocess.Popen[bytes], netns_fd: int) -> None:
        self.proc = proc
        self.netns_fd = netns_fd
        self.uid = "pod-" + secrets.token_hex(4)

    @property
    def ns_path(self) -> str:
        return f"/proc/{self.proc.pid}/ns/net"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--net={self.ns_path}", *argv], capture_output=True, text=True, timeout=10, check=False
        )

    def netconf(self, ip: ipaddress.IPv4Address, prefixlen: int, gateway: ipaddress.IPv4Address) -> float:
        res = self.run(sys.executable, "-I", "-c", NETCONF, REPO, "eth0", str(ip), str(prefixlen), str(gateway))
        assert res.returncode == 0, res.stderr
        return float(res.stdout)

    def ping(self, ip: ipaddress.IPv4Address) -> bool:
        return self.run(sys.executable, "-I", "-c", PING, str(ip)).returncode == 0


def host_ping(ip: ipaddress.IPv4Address) -> bool:
    return subprocess.run([sys.executable, "-I", "-c", PING, str(ip)], timeout=10, check=False).returncode == 0


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True, check=False).returncode == 0


@pytest.fixture
def bridge_name() -> Iterator[str]:
    name = "mkt" + secrets.token_hex(3)
    yield name
    # Safety net even if the async teardown failed: ports first (deleting a bridge only frees them), then the bridge.
    ports = subprocess.run(["ip", "-o", "link", "show", "master", name], capture_output=True, text=True, check=False)
    for line in ports.stdout.splitlines():
        port = line.split(":")[1].strip().split("@")[0]
        subprocess.run(["ip", "link", "del", "dev", port], capture_output=True, check=False)
    if link_exists(name):
        subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, check=False)


@pytest.fixture
def cidr() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.213.{secrets.randbelow(256)}.0/24")


@pytest.fixture
async def network(bridge_name: str, cidr: ipaddress.IPv4Network) -> AsyncIterator[BridgeNetwork]:
    net = BridgeNetwork(bridge_name, cidr)
    await net.open()
    try:
        await net.ensure_bridge()
        yield net
    finally:
        try:
            await net.remove_bridge()
        finally:
            await net.close()


@pytest.fixture
def make_pod() -> Iterator[Callable[[], FakePod]]:
    pods: list[FakePod] = []

    def spawn() -> FakePod:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
        try:
            host_ns = os.stat("/proc/self/ns/net").st_ino
            deadline = time.monotonic() + 5
            while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == host_ns:
                assert proc.poll() is None, "unshare --net exited early"
                assert time.monotonic() < deadline, "unshare --net did not create a namespace within 5 s"
                time.sleep(0.001)
            fd = os.open(f"/proc/{proc.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        pod = FakePod(proc, fd)
        pods.append(pod)
        return pod

    yield spawn
    for pod in pods:
        with contextlib.suppress(OSError):
            os.close(pod.netns_fd)
        pod.proc.kill()
        pod.proc.wait(timeout=10)


# --- pure checks (no root) ------------------------------------------------------------------------------------------


def test_veth_name_is_short_deterministic_and_per_bridge() -> None:
    name = veth_name_for("mk0", "uid-1")
    assert len(name) <= 15
    assert (
        name
        == veth_name_for("mk0", "uid-1")
        == BridgeNetwork("mk0", ipaddress.IPv4Network("10.0.0.0/24")).veth_name("uid-1")
    )
    assert name != veth_name_for("mk1", "uid-1")
    assert name != veth_name_for("mk0", "uid-2")


def test_rtentry_layout_is_lp64() -> None:
    assert struct.calcsize(netconf.RTENTRY_FORMAT) == 120


def test_bridge_methods_need_open() -> None:
    with pytest.raises(NetworkError, match="open"):
        _ = BridgeNetwork("mk0", ipaddress.IPv4Network("10.0.0.0/24")).ipr


# --- real kernel ----------------------------------------------------------------------------------------------------


@pytest.mark.root
@needs_root
async def test_ensure_bridge_is_idempotent(network: BridgeNetwork, bridge_name: str) -> None:
    await network.ensure_bridge()
    await network.ensure_bridge()
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", bridge_name], capture_output=True, text=True)
    assert out.stdout.count(f"inet {network.gateway}/24") == 1
    link = subprocess.run(["ip", "-o", "link", "show", "dev", bridge_name], capture_output=True, text=True).stdout
    assert ",UP" in link or "<UP" in link
    assert await network.list_veths() == []


@pytest.mark.root
@needs_root
async def test_attach_netconf_ping_detach(
    network: BridgeNetwork, make_pod: Callable[[], FakePod], cidr: ipaddress.IPv4Network
) -> None:
    pod = make_pod()
    ip = cidr.network_address + 2
    veth = await network.attach(pod.uid, pod.netns_fd, ip)
    assert veth == network.veth_name(pod.uid)
    assert await network.list_veths() == [veth]
    pod.netconf(ip, cidr.prefixlen, network.gateway)

    addr = pod.run("ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert f"inet {ip}/24" in addr
    route = pod.run("ip", "-4", "route", "show", "default").stdout
    assert f"default via {network.gateway} dev eth0" in route
    lo = pod.run("ip", "-o", "-4", "addr", "show", "dev", "lo").stdout
    assert "inet 127.0.0.1/8" in lo
    assert host_ping(ip)

    await network.detach(veth)
    assert not link_exists(veth)
    assert "eth0" not in pod.run("ip", "-o", "link").stdout
    assert await network.list_veths() == []
    assert not host_ping(ip)
    await network.detach(veth)  # absent: no error


@pytest.mark.root
@needs_root
async def test_two_pods_reach_each_other(
    network: BridgeNetwork, make_pod: Callable[[], FakePod], cidr: ipaddress.IPv4Network
) -> None:
    a, b = make_pod(), make_pod()
    ip_a, ip_b = cidr.network_address + 10, cidr.network_address + 11
    await network.attach(a.uid, a.netns_fd, ip_a)
    await network.attach(b.uid, b.netns_fd, ip_b)
    a.netconf(ip_a, cidr.prefixlen, network.gateway)
    b.netconf(ip_b, cidr.prefixlen, network.gateway)
    assert sorted(await network.list_veths()) == sorted([network.veth_name(a.uid), network.veth_name(b.uid)])
    assert a.ping(ip_b)
    assert b.ping(ip_a)
    assert host_ping(ip_a) and host_ping(ip_b)


@pytest.mark.root
@needs_root
async def test_attach_is_idempotent_and_replaces_stale_sandbox(
    network: BridgeNetwork, make_pod: Callable[[], FakePod], cidr: ipaddress.IPv4Network
) -> None:
    first = make_pod()
    ip = cidr.network_address + 5
    veth = await network.attach(first.uid, first.netns_fd, ip)
    ifindex = pathlib.Path(f"/sys/class/net/{veth}/ifindex").read_text()
    assert await network.attach(first.uid, first.netns_fd, ip) == veth
    assert pathlib.Path(f"/sys/class/net/{veth}/ifindex").read_text() == ifindex  # kept, not recreated
    assert await network.list_veths() == [veth]

    # Same pod UID, new sandbox (new netns) while the old one still exists: the stale veth is replaced.
    second = make_pod()
    second.uid = first.uid
    assert await network.attach(second.uid, second.netns_fd, ip) == veth
    assert "eth0" not in first.run("ip", "-o", "link").stdout
    assert "eth0" in second.run("ip", "-o", "link").stdout
    second.netconf(ip, cidr.prefixlen, network.gateway)
    second.netconf(ip, cidr.prefixlen, network.gateway)  # netconf is idempotent too
    assert host_ping(ip)


@pytest.mark.root
@needs_root
async def test_attach_fails_clearly_when_pod_has_eth0(
    network: BridgeNetwork, make_pod: Callable[[], FakePod], cidr: ipaddress.IPv4Network
) -> None:
    pod = make_pod()
    await network.attach(pod.uid, pod.netns_fd, cidr.network_address + 2)
    with pytest.raises(NetworkError, match="already has an interface named eth0"):
        await network.attach("other-uid", pod.netns_fd, cidr.network_address + 3)
    assert not link_exists(network.veth_name("other-uid"))


@pytest.mark.root
@needs_root
async def test_attach_without_bridge_fails_clearly(
    bridge_name: str, cidr: ipaddress.IPv4Network, make_pod: Callable[[], FakePod]
) -> None:
    net = BridgeNetwork(bridge_name, cidr)
    await net.open()
    try:
        pod = make_pod()
        with pytest.raises(NetworkError, match="call ensure_bridge"):
            await net.attach(pod.uid, pod.netns_fd, cidr.network_address + 2)
        assert await net.list_veths() == []
        await net.remove_bridge()  # absent: no error
    finally:
        await net.close()


@pytest.mark.root
@needs_root
async def test_remove_bridge_removes_veths_and_bridge(
    network: BridgeNetwork, make_pod: Callable[[], FakePod], bridge_name: str, cidr: ipaddress.IPv4Network
) -> None:
    pods = [make_pod() for _ in range(3)]
    veths = [await network.attach(p.uid, p.netns_fd, cidr.network_address + 2 + i) for i, p in enumerate(pods)]
    await network.remove_bridge()
    assert not link_exists(bridge_name)
    assert not any(link_exists(v) for v in veths)
    assert await network.list_veths() == []
    await network.remove_bridge()
    await network.ensure_bridge()  # can be recreated afterwards
    assert link_exists(bridge_name)


@pytest.mark.root
@needs_root
def test_netconf_errors_are_clear(make_pod: Callable[[], FakePod]) -> None:
    pod = make_pod()
    res = pod.run(sys.executable, "-I", "-c", NETCONF, REPO, "nosuch0", "10.213.0.2", "24", "10.213.0.1")
    assert res.returncode != 0
    assert "setting address 10.213.0.2 on interface nosuch0 failed: No such device" in res.stderr
    res = pod.run(sys.executable, "-I", "-c", NETCONF, REPO, "lo", "10.213.0.2", "24", "10.213.9.1")
    assert "gateway 10.213.9.1 is not inside 10.213.0.0/24" in res.stderr
