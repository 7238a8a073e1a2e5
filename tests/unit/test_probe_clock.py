"""RealClock's grid sleep and the prober's lateness figures (probe/worker.py, probe/manager.py)."""

from __future__ import annotations

import asyncio

import pytest

from minikubelet.probe.manager import ProbeManager
from minikubelet.probe.worker import GRID, RealClock, grid_slot


def test_grid_slot_rounds_up_but_keeps_a_point_despite_float_error() -> None:
    assert grid_slot(500.0) == 50000
    assert grid_slot(500.0 + 1e-9) == 50000  # a hair past a grid point (float error, two clock reads) keeps it
    assert grid_slot(500.001) == 50001
    assert grid_slot(0.3 + 0.7 * 3) == 240


async def test_sleepers_of_one_slot_share_one_timer_and_wake_on_the_grid() -> None:
    loop = asyncio.get_running_loop()
    clock = RealClock()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    start = loop.time()
    sleeps = [clock.sleep(0.05) for _ in range(20)]
    assert len(loop._scheduled) == before + 1  # type: ignore[attr-defined]
    await asyncio.gather(*sleeps)
    woke = loop.time()
    assert woke - start >= 0.05 - GRID * 0.05
    assert woke - start < 0.05 + GRID + 0.05  # at most one slot late, plus scheduling slack
    assert abs(woke / GRID - round(woke / GRID)) < 0.5  # near a grid point, not at start + 0.05


async def test_a_cancelled_sleeper_leaves_the_others_alone() -> None:
    clock = RealClock()
    a, b = clock.sleep(0.02), clock.sleep(0.02)

    async def wait(fut: asyncio.Future[None]) -> None:
        await fut

    task = asyncio.get_running_loop().create_task(wait(a))
    await asyncio.sleep(0)
    task.cancel()
    await b
    assert a.cancelled() and b.done() and not b.cancelled()
    assert clock._slots == {}


def test_stats_histogram_counts_every_probe_start() -> None:
    mgr = ProbeManager()
    for lateness in (0.0, 0.00005, 0.0042, 0.0421, 0.5, 3.0):
        mgr._probe_started(lateness)
    stats = mgr.stats()
    bounds, counts = stats["lateness_hist_bounds_ms"], stats["lateness_hist_counts"]
    assert isinstance(bounds, list) and isinstance(counts, list)
    assert len(counts) == len(bounds) + 1 and sum(counts) == 6 == stats["probes_run"]
    filled = [(bounds[i] if i < len(bounds) else None, n) for i, n in enumerate(counts) if n]
    assert filled == [(0.1, 2), (4.3, 1), (43.0, 1), (510.0, 1), (None, 1)]


async def test_grid_timeout_raises_timeout_error_on_the_grid_and_leaves_the_task_uncancelled() -> None:
    loop = asyncio.get_running_loop()
    clock = RealClock()
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with clock.timeout(0.05) as t:
            await asyncio.sleep(5)
    took = loop.time() - start
    assert t.expired and 0.05 - GRID * 0.05 <= took < 0.05 + GRID + 0.05
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.02)  # still a usable task
    assert clock._deadlines == {}


async def test_grid_timeout_that_is_not_reached_cancels_nothing_later() -> None:
    clock = RealClock()
    async with clock.timeout(0.03) as t:
        await asyncio.sleep(0.001)
    assert clock._deadlines == {}
    await asyncio.sleep(0.06)  # past the slot: its timer fires and finds nothing armed
    assert not t.expired


async def test_grid_timeout_lets_an_outside_cancel_through_as_cancelled() -> None:
    clock = RealClock()

    async def body() -> None:
        async with clock.timeout(5):
            await asyncio.sleep(5)

    task = asyncio.get_running_loop().create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock._deadlines == {}


async def test_grid_timeouts_of_one_slot_share_one_timer_with_its_sleepers() -> None:
    loop = asyncio.get_running_loop()
    clock = RealClock()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    sleeper = clock.sleep(0.2)
    never = asyncio.Event()

    async def bounded() -> None:
        async with clock.timeout(0.2):
            await never.wait()  # no timer of its own

    tasks = [loop.create_task(bounded()) for _ in range(10)]
    await asyncio.sleep(0)
    assert len(loop._scheduled) == before + 1  # type: ignore[attr-defined]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results) and sleeper.done()
