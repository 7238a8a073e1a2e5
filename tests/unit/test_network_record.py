"""The recorded pod network (<data-dir>/network.json and its fallbacks) and the flags compared with it."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from minikubelet.cli import parser, settings_from
from minikubelet.errors import NetworkError
from minikubelet.network.bridge import veth_name_for
from minikubelet.network.ipam import Ipam
from minikubelet.network.record import (
    NetworkRecord,
    bridge_of_pods,
    mismatch_error,
    read_network_file,
    recorded_network,
    remove_network_file,
    write_network_file,
)
from minikubelet.settings import Settings

N = ipaddress.IPv4Network


def test_write_read_remove(tmp_path: Path) -> None:
    assert read_network_file(tmp_path / "network.json") is None
    assert write_network_file(tmp_path, "mkx", N("10.213.120.0/24")) is True
    path = tmp_path / "network.json"
    assert json.loads(path.read_text()) == {"version": 1, "bridge": "mkx", "podCIDR": "10.213.120.0/24"}
    assert path.stat().st_mode & 0o777 == 0o600
    mtime = path.stat().st_mtime_ns
    assert write_network_file(tmp_path, "mkx", N("10.213.120.0/24")) is False, "unchanged: not rewritten"
    assert path.stat().st_mtime_ns == mtime
    assert read_network_file(path) == ("mkx", N("10.213.120.0/24"))
    assert write_network_file(tmp_path, "mky", N("10.213.120.0/24")) is True
    assert read_network_file(path) == ("mky", N("10.213.120.0/24"))
    assert [p.name for p in tmp_path.iterdir()] == ["network.json"], "no temp file left"
    remove_network_file(tmp_path)
    remove_network_file(tmp_path)
    assert not path.exists()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"version": 2, "bridge": "mk0", "podCIDR": "10.0.0.0/24"}',
        '{"version": 1, "podCIDR": "10.0.0.0/24"}',
        '{"version": 1, "bridge": "", "podCIDR": "10.0.0.0/24"}',
        '{"version": 1, "bridge": "a-name-that-is-too-long", "podCIDR": "10.0.0.0/24"}',
        '{"version": 1, "bridge": "mk0", "podCIDR": "10.0.0.1/24"}',
        '{"version": 1, "bridge": 7, "podCIDR": 7}',
    ],
)
def test_a_record_that_does_not_parse_is_corrupt(tmp_path: Path, content: str) -> None:
    (tmp_path / "network.json").write_text(content)
    with pytest.raises(NetworkError, match=r"network record .*network.json is corrupt .*repair it, or delete it"):
        recorded_network(tmp_path, [])
    seen: list[Path] = []
    record = recorded_network(tmp_path, [], on_corrupt=lambda e, p: seen.append(p))
    assert seen == [tmp_path / "network.json"] and record == NetworkRecord()


def test_the_record_wins_over_ipam_and_veths(tmp_path: Path) -> None:
    Ipam(N("10.213.7.0/24"), tmp_path / "ipam.json").allocate("a")
    write_network_file(tmp_path, "mkx", N("10.213.7.0/24"))
    record = recorded_network(tmp_path, ["a"], sys_net=tmp_path / "no-sysfs")
    assert (record.bridge, record.pod_cidr) == ("mkx", N("10.213.7.0/24"))
    assert record.bridge_source == record.cidr_source == str(tmp_path / "network.json")


def test_an_older_data_dir_falls_back_to_ipam_and_the_pods_veths(tmp_path: Path) -> None:
    """Before network.json: the CIDR comes from ipam.json, the bridge from the links the run dir's pods hang on."""
    data = tmp_path / "data"
    data.mkdir()
    assert recorded_network(data, [], sys_net=tmp_path / "sys") == NetworkRecord()
    Ipam(N("10.213.120.0/24"), data / "ipam.json").allocate("uid-1")
    sys_net = fake_sysfs(
        tmp_path / "sys",
        {"mkold": None, "mk0": None, "other": None},
        {veth_name_for("mkold", "uid-1"): "mkold", veth_name_for("mk0", "uid-9"): "mk0", "eth0": None},
    )
    record = recorded_network(data, ["uid-1"], sys_net=sys_net)
    assert (record.bridge, record.pod_cidr) == ("mkold", N("10.213.120.0/24"))
    assert record.cidr_source == str(data / "ipam.json") and "run directory" in record.bridge_source
    (data / "ipam.json").write_text("{")
    with pytest.raises(NetworkError, match="ipam.json is corrupt"):
        recorded_network(data, [], sys_net=sys_net)
    seen: list[Path] = []
    record = recorded_network(data, ["uid-1"], sys_net=sys_net, on_corrupt=lambda e, p: seen.append(p))
    assert seen == [data / "ipam.json"] and (record.bridge, record.pod_cidr) == ("mkold", None)


def test_bridge_of_pods_needs_the_veth_on_that_very_bridge(tmp_path: Path) -> None:
    # the veth named for (mka, uid) but enslaved to mkb says nothing about either
    sys_net = fake_sysfs(tmp_path, {"mka": None, "mkb": None}, {veth_name_for("mka", "u"): "mkb"})
    assert bridge_of_pods(["u"], sys_net) is None
    assert bridge_of_pods([], sys_net) is None
    assert bridge_of_pods(["u"], tmp_path / "absent") is None


def test_bridge_of_pods_picks_the_bridge_holding_most_of_them(tmp_path: Path) -> None:
    """Daemons sharing a manifest directory run pods of the same UIDs on their own bridges."""
    veths = {veth_name_for("mka", "u1"): "mka", veth_name_for("mkb", "u1"): "mkb", veth_name_for("mkb", "u2"): "mkb"}
    sys_net = fake_sysfs(tmp_path, {"mka": None, "mkb": None}, dict(veths))
    assert bridge_of_pods(["u1", "u2"], sys_net) == "mkb"
    assert bridge_of_pods(["u1"], sys_net) is None, "a tie names no bridge"


def fake_sysfs(root: Path, bridges: dict[str, None], links: dict[str, str | None]) -> Path:
    """A /sys/class/net look-alike: bridges have a ``bridge`` dir, enslaved links a ``master`` symlink."""
    devices = root / "devices"
    for name in bridges:
        (devices / name / "bridge").mkdir(parents=True)
    for name, master in links.items():
        (devices / name).mkdir(parents=True)
        if master is not None:
            os.symlink(f"../{master}", devices / name / "master")
    return devices


def test_differences_and_the_run_error_name_flag_values_and_ways_out() -> None:
    record = NetworkRecord("mkold", "/d/network.json", N("10.213.120.0/24"), "/d/network.json")
    assert record.differences("mkold", N("10.213.120.0/24")) == []
    assert NetworkRecord().differences("x", N("10.0.0.0/24")) == []
    diffs = record.differences("mkold", N("10.244.0.0/16"))
    message = str(mismatch_error(diffs, {"--bridge", "--pod-cidr"}, "minikubelet reset --data-dir /d"))
    assert message.startswith(
        "--pod-cidr 10.244.0.0/16 (the default) differs from the pod CIDR 10.213.120.0/24 recorded in /d/network.json"
    ), message
    assert "run with --pod-cidr 10.213.120.0/24" in message
    assert "first run `minikubelet reset --data-dir /d`" in message
    assert "corrupt" not in message
    both = str(mismatch_error(record.differences("mknew", N("10.9.0.0/24")), set(), "minikubelet reset"))
    assert (
        "--bridge mknew differs from the bridge mkold recorded in /d/network.json and --pod-cidr 10.9.0.0/24 "
        "differs from the pod CIDR 10.213.120.0/24 recorded there by the daemon" in both
    ), both
    assert "run with --bridge mkold --pod-cidr 10.213.120.0/24" in both
    assert "then run with --bridge mknew --pod-cidr 10.9.0.0/24" in both
    assert "(the default)" not in both


def test_cli_tells_given_flags_from_defaults_and_reset_ignores_the_api_flags() -> None:
    args = parser().parse_args(["run", "--data-dir", "/d", "--pod-cidr", "10.213.120.0/24"])
    s = settings_from(args)
    assert s.given == frozenset({"--pod-cidr"}) and s.bridge == "mk0" and s.pod_cidr == N("10.213.120.0/24")
    assert s.reset_command() == "minikubelet reset --data-dir /d"
    assert settings_from(parser().parse_args(["run"])).given == frozenset()
    with pytest.raises(SystemExit, match="beyond loopback"):
        settings_from(parser().parse_args(["run", "--listen", "0.0.0.0:1"]))
    # reset serves no API: a --listen that run would refuse does not stop it
    r = settings_from(parser().parse_args(["reset", "--listen", "0.0.0.0:1", "--bridge", "mkx", "--run-dir", "/r x"]))
    assert r.given == frozenset({"--bridge"}) and r.bridge == "mkx" and r.listen_port == Settings().listen_port
    assert r.reset_command() == "minikubelet reset --run-dir '/r x'"
    with pytest.raises(SystemExit, match="--pod-cidr '10.0.0.1/24'"):
        settings_from(parser().parse_args(["reset", "--pod-cidr", "10.0.0.1/24"]))
