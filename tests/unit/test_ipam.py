from __future__ import annotations

import ipaddress
import json
import pathlib
import random
import time

import pytest

from minikubelet.errors import NetworkError as ErrorsNetworkError
from minikubelet.network.ipam import Ipam, NetworkError, recorded_cidr

A = ipaddress.IPv4Address
N = ipaddress.IPv4Network


@pytest.fixture
def state(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "run" / "ipam.json"


def make(state: pathlib.Path, cidr: str = "10.213.7.0/24") -> Ipam:
    return Ipam(N(cidr), state)


def test_gateway_is_first_host(state: pathlib.Path) -> None:
    assert make(state).gateway == A("10.213.7.1")
    assert make(state.with_name("b.json"), "10.1.0.0/16").gateway == A("10.1.0.1")


def test_first_allocation_skips_network_and_gateway(state: pathlib.Path) -> None:
    ipam = make(state)
    assert ipam.allocate("a") == A("10.213.7.2")
    assert ipam.allocate("b") == A("10.213.7.3")


def test_allocate_is_idempotent_per_uid(state: pathlib.Path) -> None:
    ipam = make(state)
    first = ipam.allocate("a")
    ipam.allocate("b")
    assert ipam.allocate("a") == first
    assert ipam.leases() == {"a": first, "b": A("10.213.7.3")}


def test_round_robin_does_not_reuse_released_address_immediately(state: pathlib.Path) -> None:
    ipam = make(state)
    a = ipam.allocate("a")
    ipam.allocate("b")
    ipam.release("a")
    c = ipam.allocate("c")
    assert c == A("10.213.7.4")
    assert c != a


def test_round_robin_wraps_and_reuses_released(state: pathlib.Path) -> None:
    ipam = make(state, "10.213.7.0/29")  # hosts .1-.6, gateway .1, leasable .2-.6
    got = [ipam.allocate(f"p{i}") for i in range(5)]
    assert got == [A(f"10.213.7.{i}") for i in range(2, 7)]
    ipam.release("p1")  # .3
    assert ipam.allocate("new") == A("10.213.7.3")  # wrapped past .6 and skipped the busy .2


def test_exhaustion_raises_and_names_cidr(state: pathlib.Path) -> None:
    ipam = make(state, "10.213.7.0/29")
    for i in range(5):
        ipam.allocate(f"p{i}")
    with pytest.raises(NetworkError, match=r"pod CIDR 10\.213\.7\.0/29 is exhausted"):
        ipam.allocate("one-too-many")
    assert "one-too-many" not in ipam.leases()
    assert ipam.allocate("p3") == A("10.213.7.5")  # existing leases still work when full
    ipam.release("p0")
    assert ipam.allocate("one-too-many") == A("10.213.7.2")


def test_never_hands_out_gateway_network_or_broadcast(state: pathlib.Path) -> None:
    ipam = make(state, "10.213.7.0/28")
    forbidden = {A("10.213.7.0"), A("10.213.7.1"), A("10.213.7.15")}
    seen: set[A] = set()
    for round_ in range(5):  # churn so round robin wraps several times
        uids = [f"r{round_}-{i}" for i in range(13)]
        for uid in uids:
            seen.add(ipam.allocate(uid))
        assert len(set(ipam.leases().values())) == 13
        for uid in uids:
            ipam.release(uid)
    assert not seen & forbidden
    assert len(seen) == 13


def test_no_address_is_leased_twice(state: pathlib.Path) -> None:
    rng = random.Random(7)
    ipam = make(state, "10.213.7.0/26")  # 61 pod addresses
    live: list[str] = []
    for i in range(300):
        uid = f"p{i}"
        ipam.allocate(uid)
        live.append(uid)
        if len(live) > 50:
            ipam.release(live.pop(rng.randrange(len(live))))
        addresses = list(ipam.leases().values())
        assert len(addresses) == len(set(addresses)) == len(live)


def test_release_unknown_uid_is_noop(state: pathlib.Path) -> None:
    ipam = make(state)
    ipam.release("nobody")
    assert ipam.leases() == {}
    assert not state.exists()


def test_leases_returns_copy(state: pathlib.Path) -> None:
    ipam = make(state)
    ipam.allocate("a")
    ipam.leases().clear()
    assert list(ipam.leases()) == ["a"]


def test_state_persists_across_instances(state: pathlib.Path) -> None:
    first = make(state)
    a = first.allocate("a")
    first.allocate("b")
    first.release("b")
    second = make(state)
    assert second.leases() == {"a": a}
    assert second.allocate("a") == a
    assert second.allocate("c") == A("10.213.7.4")  # round robin position survives the restart
    assert not list(state.parent.glob("*.tmp"))
    data = json.loads(state.read_text())
    assert data["leases"] == {"a": "10.213.7.2", "c": "10.213.7.4"}


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"version": 1, "cidr": "10.213.7.0/24", "leases": {"a": "10.99.0.2"}, "last": None}),
        json.dumps({"version": 1, "cidr": "10.213.7.0/24", "leases": {"a": "10.213.7.1"}}),
        json.dumps({"version": 1, "cidr": "10.213.7.0/24", "leases": {"a": "10.213.7.2", "b": "10.213.7.2"}}),
        json.dumps({"version": 1, "cidr": "10.213.7.0/24", "leases": {"a": "not-an-ip"}}),
        json.dumps({"version": 1, "cidr": "10.213.7.0/24"}),
        json.dumps({"version": 1, "cidr": "not-a-cidr", "leases": {}}),
    ],
    ids=["syntax", "not-object", "outside-cidr", "gateway", "duplicate", "bad-ip", "no-leases", "bad-cidr"],
)
def test_corrupt_state_file_names_the_file(state: pathlib.Path, content: str) -> None:
    state.parent.mkdir(parents=True)
    state.write_text(content)
    with pytest.raises(NetworkError, match="IPAM state file .*ipam.json is corrupt"):
        make(state)


def test_state_of_another_cidr_is_not_called_corrupt(state: pathlib.Path) -> None:
    """A file written for another pod CIDR parses: the message names both CIDRs and the ways out, not "corrupt"."""
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"version": 1, "cidr": "10.213.8.0/24", "leases": {"a": "10.213.8.2"}}))
    with pytest.raises(NetworkError) as info:
        make(state)
    message = str(info.value)
    assert "corrupt" not in message
    assert "holds the leases of pod CIDR 10.213.8.0/24, not 10.213.7.0/24" in message
    assert "--pod-cidr 10.213.8.0/24" in message and "minikubelet reset" in message
    assert json.loads(state.read_text())["leases"] == {"a": "10.213.8.2"}, "the leases are left alone"


def test_recorded_cidr(state: pathlib.Path) -> None:
    assert recorded_cidr(state) is None
    make(state, "10.213.9.0/24").allocate("a")
    assert recorded_cidr(state) == N("10.213.9.0/24")
    state.write_text("{not json")
    with pytest.raises(NetworkError, match="ipam.json is corrupt"):
        recorded_cidr(state)


def test_write_failure_rolls_back(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    ipam = Ipam(N("10.213.7.0/24"), run_dir / "ipam.json")
    ipam.allocate("a")
    (run_dir / "ipam.json").unlink()
    run_dir.rmdir()
    run_dir.write_text("")  # the state directory is now a file: every write fails, even for root
    with pytest.raises(NetworkError, match="writing the IPAM state file .*ipam.json failed"):
        ipam.allocate("b")
    assert list(ipam.leases()) == ["a"]
    with pytest.raises(NetworkError):
        ipam.release("a")
    assert list(ipam.leases()) == ["a"]  # a failed release keeps the lease: nothing half-done
    run_dir.unlink()
    assert ipam.allocate("b") == A("10.213.7.3")


def test_too_small_cidr_rejected(state: pathlib.Path) -> None:
    with pytest.raises(NetworkError, match="too small"):
        make(state, "10.213.7.0/31")


def test_slash_30_has_one_pod_address(state: pathlib.Path) -> None:
    ipam = make(state, "10.213.7.4/30")
    assert ipam.gateway == A("10.213.7.5")
    assert ipam.allocate("a") == A("10.213.7.6")
    with pytest.raises(NetworkError, match="exhausted"):
        ipam.allocate("b")


def test_slash_16_is_fast(state: pathlib.Path) -> None:
    ipam = make(state, "10.213.0.0/16")
    start = time.perf_counter()
    addresses = [ipam.allocate(f"pod-{i}") for i in range(250)]
    per_allocation = (time.perf_counter() - start) / 250
    assert addresses[0] == A("10.213.0.2")
    assert addresses[-1] == A("10.213.0.251")
    # a guard against scanning all 65,534 addresses per allocation (which takes far longer), not a benchmark: each
    # allocation fsyncs the state file, so a loaded machine reads several ms
    assert per_allocation < 0.05, f"allocation took {per_allocation * 1000:.2f} ms"


def test_wrap_around_in_slash_16_skips_busy(state: pathlib.Path) -> None:
    ipam = make(state, "10.213.0.0/16")
    data = {
        "version": 1,
        "cidr": "10.213.0.0/16",
        "last": "10.213.255.254",
        "leases": {"old": "10.213.0.2"},
    }
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(data))
    ipam = make(state, "10.213.0.0/16")
    assert ipam.allocate("new") == A("10.213.0.3")


def test_network_error_is_the_shared_class() -> None:
    assert NetworkError is ErrorsNetworkError
