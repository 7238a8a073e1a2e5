"""ArpCapacity (network/neigh.py): when the pod count nears what the kernel's ARP table holds, one warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from minikubelet.network.neigh import FIX, ArpCapacity, pods_that_fit, read_gc_thresh3


def test_pods_that_fit_the_default_table() -> None:
    assert pods_that_fit(1024) == 496  # two entries a pod, 32 kept for the host's other neighbours
    assert pods_that_fit(10) == 0


def test_warns_once_near_the_limit_and_again_after_falling_back(caplog: pytest.LogCaptureFixture) -> None:
    arp = ArpCapacity(lambda: 232)  # 100 pods fit
    caplog.set_level(logging.WARNING)
    assert [arp.check(n) for n in (1, 50, 89)] == [False, False, False]
    assert arp.check(90) is True
    assert [arp.check(n) for n in (91, 100, 150, 85)] == [False, False, False, False]  # once, not per pod
    assert arp.check(79) is False  # below 80 %: re-armed
    assert arp.check(95) is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "gc_thresh3=232" in warnings[0] and "about 100 pods" in warnings[0] and FIX in warnings[0]
    assert warnings[0].endswith("pods=90")


def test_a_raised_limit_is_noticed_before_warning() -> None:
    limits = iter([232, 100_000])
    arp = ArpCapacity(lambda: next(limits))
    assert arp.check(95) is False  # re-read near the threshold: the admin raised it meanwhile


def test_an_unreadable_limit_checks_nothing() -> None:
    assert ArpCapacity(lambda: None).check(10_000) is False


def test_read_gc_thresh3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(read_gc_thresh3(), int)  # the real /proc file
    limit = tmp_path / "limit"
    limit.write_text("40\n")
    monkeypatch.setenv("MINIKUBELET_GC_THRESH3_FILE", str(limit))
    assert read_gc_thresh3() == 40
    limit.write_text("nonsense")
    assert read_gc_thresh3() is None
