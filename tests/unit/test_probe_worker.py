"""Probe worker and manager semantics (kubelet-semantics.md §2.2) with a fake pod view and a fake clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest

from minikubelet.pod.spec import Container, Pod, PodSpec, Probe, ProbeKind
from minikubelet.probe import ContainerView, PodView, ProbeResult
from minikubelet.probe import worker as worker_mod
from minikubelet.probe.handlers import Outcome
from minikubelet.probe.manager import ProbeManager
from minikubelet.probe.worker import ProbeWorker

L, R, S = ProbeKind.LIVENESS, ProbeKind.READINESS, ProbeKind.STARTUP
OK = Outcome(ProbeResult.SUCCESS, "ok")
BAD = Outcome(ProbeResult.FAILURE, "HTTP probe failed with statuscode: 500")
ERR = Outcome(ProbeResult.UNKNOWN, "boom", error=True)
WALL0 = 1_700_000_000.0


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class FakeClock:
    """Time moves only in advance(); sleepers wake in deadline order, each followed by a settle()."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return 500.0 + self.elapsed

    def time(self) -> float:
        return WALL0 + self.elapsed

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.elapsed + max(0.0, seconds), next(self._seq), fut))
        await fut

    def timeout(self, seconds: float) -> asyncio.Timeout:
        return asyncio.timeout(seconds)  # real time: the guard tests bound real hangs

    async def advance(self, seconds: float) -> None:
        target = self.elapsed + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self.elapsed = max(self.elapsed, when)
            if not fut.done():
                fut.set_result(None)
            await settle()
        self.elapsed = target
        await settle()


@dataclass
class FakeView:
    containers: dict[str, ContainerView] = field(default_factory=dict)
    results: list[tuple[str, ProbeKind, ProbeResult, str]] = field(default_factory=list)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    is_deleting: bool = False
    is_finished: bool = False
    ip: str = "127.0.0.1"

    uid = "uid-1"
    namespace = "default"
    name = "web"

    def pod_ip(self) -> str:
        return self.ip

    def container_view(self, container: str) -> ContainerView | None:
        return self.containers.get(container)

    def deleting(self) -> bool:
        return self.is_deleting

    def finished(self) -> bool:
        return self.is_finished

    def probe_result(self, container: str, kind: ProbeKind, result: ProbeResult, message: str) -> None:
        self.results.append((container, kind, result, message))

    def record_event(self, type_: str, reason: str, message: str, container: str) -> None:
        self.events.append((type_, reason, message, container))

    async def exec_in_container(self, container: str, argv: list[str], timeout: float) -> tuple[int | None, bytes]:
        return 0, b""

    def run(self, cid: str = "c1", started: bool = True, started_at: float | None = WALL0) -> None:
        self.containers["app"] = ContainerView(True, cid, started_at, started, True)

    def published(self, kind: ProbeKind | None = None) -> list[ProbeResult]:
        return [r for _, k, r, _ in self.results if kind is None or k is kind]


class Script:
    """A runner that returns queued outcomes (then ``default``) and records when it was called."""

    def __init__(self, clock: FakeClock, *outcomes: Outcome, default: Outcome = OK, delay: float = 0.0) -> None:
        self.clock = clock
        self.queue = list(outcomes)
        self.default = default
        self.delay = delay
        self.calls: list[float] = []

    async def __call__(self, probe: Probe, container: Container, view: PodView) -> Outcome:
        self.calls.append(self.clock.elapsed)
        if self.delay:
            await self.clock.sleep(self.delay)
        return self.queue.pop(0) if self.queue else self.default


CONTAINER = Container(name="app", image="host")


def probe(**kw: int) -> Probe:
    return Probe(handler="httpGet", port=80, **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def view() -> FakeView:
    v = FakeView()
    v.run()
    return v


@pytest.fixture
async def spawn(clock: FakeClock) -> AsyncIterator[Callable[..., asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []

    def start(view: FakeView, kind: ProbeKind, p: Probe, runner: Script, **kw: object) -> asyncio.Task[None]:
        w = ProbeWorker(view, CONTAINER, kind, p, runner, clock=clock, **kw)  # type: ignore[arg-type]
        task = asyncio.get_running_loop().create_task(w.run())
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


Spawn = Callable[..., asyncio.Task[None]]


# ------------------------------------------------------------------------------------------------- thresholds


async def test_readiness_starts_failed_then_succeeds(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock)
    spawn(view, R, probe(), runner)
    await clock.advance(0)
    assert view.results == [("app", R, ProbeResult.FAILURE, ""), ("app", R, ProbeResult.SUCCESS, "ok")]
    assert runner.calls == [0.0]


async def test_liveness_failure_threshold_events_and_hold(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, default=BAD)
    spawn(view, L, probe(period_seconds=10, failure_threshold=3), runner)
    await clock.advance(15)
    assert view.published() == [ProbeResult.SUCCESS]  # initial value only: 2 failures < threshold
    await clock.advance(10)
    assert view.results[-1] == ("app", L, ProbeResult.FAILURE, BAD.output)
    unhealthy = ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500", "app")
    assert view.events == [unhealthy] * 3
    await clock.advance(100)
    assert runner.calls == [0.0, 10.0, 20.0]  # on hold: no probing of a container about to be killed
    view.run(cid="c2")
    runner.default = OK
    await clock.advance(10)
    assert view.published() == [ProbeResult.SUCCESS, ProbeResult.FAILURE, ProbeResult.SUCCESS]
    assert runner.calls[-1] == 130.0


async def test_success_threshold_counts_consecutive(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, OK, BAD, OK, OK, BAD, BAD, default=OK)
    spawn(view, R, probe(period_seconds=1, success_threshold=2, failure_threshold=2), runner)
    await clock.advance(0.5)
    assert view.published() == [ProbeResult.FAILURE]
    await clock.advance(3)  # OK BAD OK OK
    assert view.published() == [ProbeResult.FAILURE, ProbeResult.SUCCESS]
    await clock.advance(2)  # BAD BAD
    assert view.published() == [ProbeResult.FAILURE, ProbeResult.SUCCESS, ProbeResult.FAILURE]
    await clock.advance(2)  # OK OK: readiness flaps back, never on hold
    assert view.published()[-1] is ProbeResult.SUCCESS
    assert len(runner.calls) == 8


async def test_error_is_discarded_retried_and_reported(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, BAD, ERR, ERR, ERR, BAD, BAD, default=OK)
    spawn(view, L, probe(period_seconds=10, failure_threshold=3), runner)
    await clock.advance(5)
    await clock.advance(10)  # tick 2: three tries, all errors
    assert len(runner.calls) == 4
    assert view.events[-1] == (
        "Warning",
        "Unhealthy",
        "Liveness probe errored and resulted in unknown state: boom",
        "app",
    )
    await clock.advance(20)  # BAD BAD: the error did not break the run of failures
    assert view.published() == [ProbeResult.SUCCESS, ProbeResult.FAILURE]


async def test_error_then_success_on_retry(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, ERR, OK)
    spawn(view, R, probe(), runner)
    await clock.advance(0)
    assert runner.calls == [0.0, 0.0]
    assert view.published() == [ProbeResult.FAILURE, ProbeResult.SUCCESS]
    assert view.events == []


async def test_warning_counts_as_success(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    warn = Outcome(ProbeResult.SUCCESS, "Probe terminated redirects, Response body: moved", warning=True)
    spawn(view, R, probe(), Script(clock, warn))
    await clock.advance(0)
    assert view.published() == [ProbeResult.FAILURE, ProbeResult.SUCCESS]
    assert view.events == [
        ("Warning", "ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: moved", "app")
    ]


async def test_unknown_without_error_is_a_silent_failure(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    spawn(
        view, L, probe(period_seconds=1, failure_threshold=2), Script(clock, default=Outcome(ProbeResult.UNKNOWN, ""))
    )
    await clock.advance(1.5)
    assert view.published() == [ProbeResult.SUCCESS, ProbeResult.FAILURE]
    assert view.events == []


# --------------------------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("delay", "period", "first"),
    [(15, 20, 20.0), (5, 10, 10.0), (10, 10, 10.0), (0, 10, 0.0)],
    ids=["nginx-example", "5-of-10", "equal", "none"],
)
async def test_initial_delay_first_tick_at_or_after(
    clock: FakeClock, view: FakeView, spawn: Spawn, delay: int, period: int, first: float
) -> None:
    runner = Script(clock)
    spawn(view, L, probe(initial_delay_seconds=delay, period_seconds=period), runner)
    await clock.advance(2 * period + 0.5)
    assert runner.calls[0] == first


async def test_initial_delay_already_served(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    view.run(started_at=WALL0 - 60)  # e.g. re-adopted after a daemon restart
    runner = Script(clock)
    spawn(view, L, probe(initial_delay_seconds=15, period_seconds=20), runner)
    await clock.advance(1)
    assert runner.calls == [0.0]


async def test_fixed_rate_schedule_with_slow_probe(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, delay=7)
    spawn(view, R, probe(period_seconds=10, timeout_seconds=9), runner)
    await clock.advance(35)
    assert runner.calls == [0.0, 10.0, 20.0, 30.0]


async def test_missed_ticks_are_dropped(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, delay=25)
    spawn(view, R, probe(period_seconds=10, timeout_seconds=30), runner)
    await clock.advance(65)
    assert runner.calls == [0.0, 30.0, 60.0]


async def test_jitter_after_daemon_start(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock)
    spawn(view, L, probe(period_seconds=10), runner, manager_started=clock.monotonic(), rng=lambda: 0.5)
    await clock.advance(25)
    assert runner.calls == [5.0, 15.0, 25.0]


async def test_no_jitter_long_after_start(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock)
    spawn(view, L, probe(period_seconds=10), runner, manager_started=clock.monotonic() - 10, rng=lambda: 0.5)
    await clock.advance(0)
    assert runner.calls == [0.0]


async def test_hanging_target_does_not_delay_others(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    never = asyncio.Event()

    async def hang(p: Probe, c: Container, v: PodView) -> Outcome:
        await never.wait()
        return OK

    other = Script(clock)
    spawn(view, L, probe(period_seconds=10), hang)
    spawn(view, R, probe(period_seconds=10), other)
    await clock.advance(30)
    assert other.calls == [0.0, 10.0, 20.0, 30.0]


async def test_guard_bounds_a_runaway_handler(
    clock: FakeClock, view: FakeView, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_mod, "GUARD_SLACK", -0.95)  # timeoutSeconds 1 + slack = 50 ms of real time
    never = asyncio.Event()
    calls = 0

    async def hang(p: Probe, c: Container, v: PodView) -> Outcome:
        nonlocal calls
        calls += 1
        await never.wait()
        return OK

    spawn(view, R, probe(), hang)
    await asyncio.sleep(0.3)
    assert calls == 1  # a hang is not retried
    assert view.events == [
        ("Warning", "Unhealthy", "Readiness probe errored and resulted in unknown state: "
         "probe did not complete within 0.05s", "app")
    ]  # fmt: skip
    assert view.published() == [ProbeResult.FAILURE]


async def test_runner_bug_is_logged_and_probing_goes_on(
    clock: FakeClock, view: FakeView, spawn: Spawn, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    async def buggy(p: Probe, c: Container, v: PodView) -> Outcome:
        calls.append(clock.elapsed)
        raise RuntimeError("bug")

    spawn(view, R, probe(period_seconds=10), buggy)
    with caplog.at_level(logging.ERROR, logger="minikubelet.probe.worker"):
        await clock.advance(10)
    assert calls == [0.0, 10.0]
    assert caplog.records[0].exc_info is not None
    assert "Probe worker iteration failed pod=uid-1 container=app probe=Readiness" in caplog.text


# ---------------------------------------------------------------------------------------------- lifecycle


async def test_startup_gates_liveness_and_readiness(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    view.run(started=False)
    live, ready, start = Script(clock), Script(clock), Script(clock, BAD, default=OK)
    spawn(view, L, probe(period_seconds=10), live)
    spawn(view, R, probe(period_seconds=10), ready)
    spawn(view, S, probe(period_seconds=10), start)
    await clock.advance(15)
    assert live.calls == [] and ready.calls == []
    assert start.calls == [0.0, 10.0]
    assert view.published(S) == [ProbeResult.SUCCESS]
    view.run(started=True)  # the pod worker turns `started` on after the startup Success
    await clock.advance(30)
    assert start.calls == [0.0, 10.0]  # startup stops once it succeeded
    assert live.calls == [20.0, 30.0, 40.0] and ready.calls == [20.0, 30.0, 40.0]
    assert view.published(R) == [ProbeResult.FAILURE, ProbeResult.SUCCESS]
    assert view.events == [("Warning", "Unhealthy", f"Startup probe failed: {BAD.output}", "app")]


async def test_startup_failure_publishes_once_and_holds(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    view.run(started=False)
    start = Script(clock, default=BAD)
    spawn(view, S, probe(period_seconds=1, failure_threshold=3), start)
    await clock.advance(10)
    assert view.published() == [ProbeResult.FAILURE]  # Unknown at first: nothing published
    assert len(start.calls) == 3
    view.run(cid="c2", started=False)
    await clock.advance(1)
    assert len(start.calls) == 4


async def test_new_container_id_resets_counters(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    runner = Script(clock, BAD, BAD, default=BAD)
    spawn(view, L, probe(period_seconds=10, failure_threshold=3), runner)
    await clock.advance(15)  # two failures in c1
    view.run(cid="c2")
    await clock.advance(10)  # one failure in c2: the run restarted at 1
    assert view.published() == [ProbeResult.SUCCESS, ProbeResult.SUCCESS]  # c2's initial value
    await clock.advance(20)
    assert view.published() == [ProbeResult.SUCCESS, ProbeResult.SUCCESS, ProbeResult.FAILURE]


async def test_deleting_stops_liveness_and_startup_but_not_readiness(
    clock: FakeClock, view: FakeView, spawn: Spawn
) -> None:
    view.run(started=False)
    live, ready, start = Script(clock), Script(clock, default=BAD), Script(clock, default=BAD)
    t_live = spawn(view, L, probe(period_seconds=10), live)
    t_ready = spawn(view, R, probe(period_seconds=10, failure_threshold=1), ready)
    t_start = spawn(view, S, probe(period_seconds=10, failure_threshold=5), start)
    await clock.advance(5)
    view.run(started=True)
    view.is_deleting = True
    await clock.advance(20)
    assert t_live.done() and t_start.done() and not t_ready.done()
    assert view.published(S) == [ProbeResult.SUCCESS]  # a quiet shutdown
    assert view.published(L) == [ProbeResult.SUCCESS]  # initial value; no second publish of the same result
    assert ready.calls == [10.0, 20.0]
    assert live.calls == []


async def test_not_running_readiness_fails_and_ends_without_restart(
    clock: FakeClock, view: FakeView, spawn: Spawn
) -> None:
    spawn(view, R, probe(period_seconds=10), Script(clock))
    live = spawn(view, L, probe(period_seconds=10), Script(clock))
    await clock.advance(5)
    view.containers["app"] = ContainerView(False, "c1", WALL0, True, True)
    await clock.advance(10)
    assert view.published(R) == [ProbeResult.FAILURE, ProbeResult.SUCCESS, ProbeResult.FAILURE]
    assert view.published(L) == [ProbeResult.SUCCESS]
    assert not live.done()
    view.containers["app"] = ContainerView(False, "c1", WALL0, True, False)
    await clock.advance(10)
    assert live.done()


async def test_finished_pod_ends_workers(clock: FakeClock, view: FakeView, spawn: Spawn) -> None:
    task = spawn(view, R, probe(period_seconds=10), Script(clock))
    await clock.advance(1)
    view.is_finished = True
    await clock.advance(10)
    assert task.done() and task.exception() is None


async def test_waits_for_a_container_id(clock: FakeClock, spawn: Spawn) -> None:
    view = FakeView()
    runner = Script(clock)
    spawn(view, R, probe(period_seconds=10), runner)
    await clock.advance(15)
    assert runner.calls == [] and view.results == []
    view.run()
    await clock.advance(10)
    assert runner.calls == [20.0]


# ------------------------------------------------------------------------------------------------------ manager


def pod(*containers: Container, init: tuple[Container, ...] = (), uid: str = "uid-1") -> Pod:
    return Pod("default", "web", uid, PodSpec(containers=containers, init_containers=init), "/m/web.yaml")


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


async def test_manager_runs_real_handlers(clock: FakeClock, view: FakeView, listener: int) -> None:
    mgr = ProbeManager(clock, rng=lambda: 0.0)
    await mgr.start()
    try:
        tcp = Probe(handler="tcpSocket", port=listener)
        mgr.add_pod(view, pod(replace(CONTAINER, readiness_probe=tcp)))
        for _ in range(50):
            await clock.advance(0)
            if len(view.results) == 2:
                break
            await asyncio.sleep(0.01)
        assert view.published() == [ProbeResult.FAILURE, ProbeResult.SUCCESS]
    finally:
        await mgr.stop()


async def test_manager_workers_add_update_remove(clock: FakeClock, view: FakeView) -> None:
    mgr = ProbeManager(clock, runner=Script(clock))
    await mgr.start()
    try:
        p = probe(period_seconds=10)
        app = replace(CONTAINER, liveness_probe=p, readiness_probe=p)
        init = Container(name="init", image="host", liveness_probe=p)
        mgr.add_pod(view, pod(app, init=(init,)))
        workers = mgr.workers("uid-1")
        assert sorted((w.container.name, w.kind) for w in workers) == [("app", L), ("app", R)]
        mgr.update_pod(view, pod(app, init=(init,)))
        assert mgr.workers("uid-1") == workers  # unchanged: same workers
        mgr.update_pod(view, pod(replace(app, readiness_probe=probe(period_seconds=5), liveness_probe=None)))
        await asyncio.sleep(0)
        after = mgr.workers("uid-1")
        assert [(w.kind, w.probe.period_seconds) for w in after] == [(R, 5)]
        mgr.remove_pod("uid-1")
        await asyncio.sleep(0)
        assert mgr.workers("uid-1") == []
    finally:
        await mgr.stop()


async def test_manager_jitters_only_right_after_start(clock: FakeClock, view: FakeView) -> None:
    runner = Script(clock)
    mgr = ProbeManager(clock, runner=runner, rng=lambda: 0.5)
    await mgr.start()
    try:
        mgr.add_pod(view, pod(replace(CONTAINER, liveness_probe=probe(period_seconds=10))))
        await clock.advance(20)
        assert runner.calls == [5.0, 15.0]
        mgr.add_pod(FakeView(containers=view.containers), pod(replace(CONTAINER, liveness_probe=probe()), uid="u2"))
        await clock.advance(0)
        assert runner.calls == [5.0, 15.0, 20.0]
    finally:
        await mgr.stop()


async def test_manager_stop_cancels_everything(clock: FakeClock, view: FakeView) -> None:
    mgr = ProbeManager(clock, runner=Script(clock))
    await mgr.start()
    mgr.add_pod(view, pod(replace(CONTAINER, readiness_probe=probe())))
    await clock.advance(0)
    tasks = [e.task for e in mgr._pods["uid-1"].values()]
    await mgr.stop()
    assert all(t.cancelled() for t in tasks)


# ------------------------------------------------------------------------------------------------ manual trigger


async def test_trigger_probes_at_once_and_restarts_the_schedule(clock: FakeClock) -> None:
    """The kubelet's manual readiness trigger: a container that became running is probed at once, not a period
    later, and the ticker restarts from that probe; a trigger during a probe brings one more right after it."""
    view = FakeView()  # no container yet
    runner = Script(clock, delay=0.0)
    w = ProbeWorker(view, CONTAINER, R, probe(period_seconds=10), runner, clock=clock)
    task = asyncio.get_running_loop().create_task(w.run())
    try:
        await clock.advance(3)
        assert runner.calls == []  # the tick at 0 found no container
        view.run()
        w.trigger()
        await clock.advance(0)
        assert runner.calls == [3.0]
        assert view.published() == [ProbeResult.FAILURE, ProbeResult.SUCCESS]  # ready at 3 s, not at 10 s
        await clock.advance(17)
        assert runner.calls == [3.0, 13.0]  # every 10 s from the triggered probe
        runner.delay = 2.0
        await clock.advance(4)  # the probe of 23 s is in flight until 25 s
        w.trigger()
        await clock.advance(5)
        assert runner.calls == [3.0, 13.0, 23.0, 25.0]
        runner.delay = 0.0
        await clock.advance(10)
        assert runner.calls[-1] == 35.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_triggered_probes_are_not_counted_as_late(clock: FakeClock, view: FakeView) -> None:
    lateness: list[float] = []
    runner = Script(clock)
    w = ProbeWorker(view, CONTAINER, R, probe(period_seconds=10), runner, clock=clock, on_probe_start=lateness.append)
    task = asyncio.get_running_loop().create_task(w.run())
    try:
        await clock.advance(4)
        w.trigger()
        await clock.advance(11)
        assert runner.calls == [0.0, 4.0, 14.0]
        assert len(lateness) == 2  # the ticks at 0 and 14 only
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("was_ready", [True, False])
async def test_readiness_of_an_adopted_container_keeps_its_state(clock: FakeClock, was_ready: bool) -> None:
    """After a daemon restart a container older than the restart grace keeps its ready state as the first result,
    so a restart does not flip Ready pods to NotReady (the kubelet keeps Ready across its restart)."""
    view = FakeView()
    view.containers["app"] = ContainerView(True, "c1", WALL0, True, True, was_ready)
    runner = Script(clock, delay=5.0)  # the first probe is still running when we look
    w = ProbeWorker(view, CONTAINER, R, probe(), runner, clock=clock, keep_ready_before=WALL0 + 1)
    task = asyncio.get_running_loop().create_task(w.run())
    try:
        await clock.advance(1)
        assert view.published() == [ProbeResult.SUCCESS if was_ready else ProbeResult.FAILURE]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_readiness_of_a_young_container_starts_failed(clock: FakeClock) -> None:
    view = FakeView()
    view.containers["app"] = ContainerView(True, "c1", WALL0 + 2, True, True, True)  # started within the grace
    runner = Script(clock, delay=5.0)
    w = ProbeWorker(view, CONTAINER, R, probe(), runner, clock=clock, keep_ready_before=WALL0 + 1)
    task = asyncio.get_running_loop().create_task(w.run())
    try:
        await clock.advance(1)
        assert view.published() == [ProbeResult.FAILURE]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
