"""One probe worker: the kubelet's per-(pod, container, kind) loop (kubelet-semantics.md §2.2, worker_legacy.go).

The worker owns its counters and its "on hold" flag; it reads container state from the ``PodView`` on every tick and
calls ``view.probe_result`` only when the published result changes. Probes run on a fixed-rate schedule computed from
a monotonic base, so a slow probe never shifts it and missed ticks are dropped.

The schedule is anchored on a 10 ms grid (``GRID``): the first probe runs at once, the later ones at grid points, so
``RealClock.sleep`` can wake every worker due in the same 10 ms slot with one timer handle. Hundreds of workers then
cost one timer and one loop wakeup per slot instead of one each (about 100 us less CPU per probe at 500 probes/s).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from minikubelet.pod.spec import Container, Probe, ProbeKind
from minikubelet.probe import ContainerView, PodView, ProbeResult
from minikubelet.probe.handlers import Outcome

__all__ = ["GRID", "GUARD_SLACK", "MAX_RETRIES", "Clock", "GridTimeout", "ProbeWorker", "RealClock", "Runner"]

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # runProbeWithRetries: only errors are retried
GUARD_SLACK = 1.0  # each run is bounded by timeoutSeconds + this, whatever the handler does
GRID = 0.01  # seconds: ticks after the first are aligned to this grid; RealClock wakes sleepers per grid slot
_SLOT_TOLERANCE = 0.05  # of a slot: a deadline this close after a grid point still belongs to it (float error)

Runner = Callable[[Probe, Container, PodView], Awaitable[Outcome]]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Like asyncio.timeout(seconds): TimeoutError when the block outlives it."""
        ...


def grid_slot(when: float) -> int:
    """The index of the first grid point at or after ``when`` (a deadline a hair past a point keeps that point)."""
    return math.ceil(when / GRID - _SLOT_TOLERANCE)


class GridTimeout:
    """asyncio.timeout on the grid: the deadline is the first grid point at or after entry + seconds, and it shares
    its slot's timer handle with the sleepers and other deadlines there, so a probe's timeouts cost a dict entry each
    instead of a timer in the loop's heap (two per probe were a third of a probe worker's own CPU). Semantics as
    asyncio.Timeout: on expiry the task is cancelled, and the block raises TimeoutError instead of CancelledError
    unless somebody else cancelled the task too."""

    __slots__ = ("_cancelling", "_clock", "_seconds", "_slot", "_task", "expired")

    def __init__(self, clock: RealClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._slot = 0
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.expired = False

    async def __aenter__(self) -> GridTimeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("GridTimeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._slot = self._clock._arm(self, self._seconds)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._clock._disarm(self._slot, self)
        if self.expired and self._task is not None:
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        if not self.expired and self._task is not None:
            self.expired = True
            self._task.cancel()


class RealClock:
    """The monotonic and wall clocks, and a sleep that wakes on the 10 ms grid: every sleeper whose deadline falls in
    the same slot shares one timer handle and is woken in the same loop iteration; ``timeout`` deadlines share them
    too. Used from one event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[int, list[asyncio.Future[None]]] = {}  # grid slot -> sleepers
        self._deadlines: dict[int, dict[GridTimeout, None]] = {}  # grid slot -> armed timeouts (an ordered set)
        self._timers: set[int] = set()  # slots with a timer handle scheduled

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        """Sleep until the first grid point at or after now + seconds (so at most 10 ms longer than asked). A plain
        future rather than a coroutine: one object less per sleeper and tick."""
        loop = self._loop_for_slots()
        slot = self._slot_after(loop, seconds)
        sleepers = self._slots.get(slot)
        if sleepers is None:
            sleepers = self._slots[slot] = []
        fut: asyncio.Future[None] = loop.create_future()
        sleepers.append(fut)
        return fut

    def timeout(self, seconds: float) -> GridTimeout:
        """An asyncio.timeout(seconds) whose deadline is on the grid (at most 10 ms later than asked)."""
        return GridTimeout(self, seconds)

    def _loop_for_slots(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # slots (and their timer handles) belong to one loop
            self._loop, self._slots, self._deadlines, self._timers = loop, {}, {}, set()
        return loop

    def _slot_after(self, loop: asyncio.AbstractEventLoop, seconds: float) -> int:
        """The grid slot of now + seconds, with its timer handle scheduled."""
        slot = grid_slot(loop.time() + seconds)
        if slot not in self._timers:
            self._timers.add(slot)
            loop.call_at(slot * GRID, self._wake, slot)
        return slot

    def _arm(self, timeout: GridTimeout, seconds: float) -> int:
        slot = self._slot_after(self._loop_for_slots(), seconds)
        self._deadlines.setdefault(slot, {})[timeout] = None
        return slot

    def _disarm(self, slot: int, timeout: GridTimeout) -> None:
        armed = self._deadlines.get(slot)
        if armed is not None:
            armed.pop(timeout, None)
            if not armed:
                del self._deadlines[slot]

    def _wake(self, slot: int) -> None:
        self._timers.discard(slot)
        for fut in self._slots.pop(slot, ()):
            if not fut.done():  # a cancelled sleeper (its worker was stopped) stays cancelled
                fut.set_result(None)
        for timeout in self._deadlines.pop(slot, {}):
            timeout._expire()


_INITIAL: dict[ProbeKind, ProbeResult | None] = {
    ProbeKind.LIVENESS: ProbeResult.SUCCESS,
    ProbeKind.READINESS: ProbeResult.FAILURE,
    ProbeKind.STARTUP: None,  # Unknown: nothing is published
}


class ProbeWorker:
    """Probes one container with one probe kind until the pod finishes, the container will not run again, or (for
    liveness/startup) the pod is being deleted."""

    def __init__(
        self,
        view: PodView,
        container: Container,
        kind: ProbeKind,
        probe: Probe,
        runner: Runner,
        *,
        clock: Clock | None = None,
        manager_started: float | None = None,
        rng: Callable[[], float] = random.random,
        on_probe_start: Callable[[float], None] | None = None,
        on_probe_done: Callable[[ProbeResult, float], None] | None = None,
        keep_ready_before: float | None = None,
    ) -> None:
        self.view = view
        self.container = container
        self.kind = kind
        self.probe = probe
        self._runner = runner
        self._clock: Clock = clock or RealClock()
        # jitter only if the manager (the daemon) started less than one period before this worker
        self._manager_started = manager_started
        self._rng = rng
        self.container_id = ""
        self.on_hold = False
        self.last_result: ProbeResult | None = None  # of the current run of identical results
        self.result_run = 0
        self.published: ProbeResult | None = None
        self._first_seen_running: float | None = None  # wall clock, when started_at is unknown
        self.probes_run = 0
        self._on_probe_start = on_probe_start  # called with the lateness (s) of each probe against its tick
        self._on_probe_done = on_probe_done  # called with the result and duration (s) of each probe that ran
        # readiness: a container that started before this wall-clock time keeps its ready state as the first result
        # (the kubelet keeps Ready across its restart for containers older than its 10 s restart grace period)
        self._keep_ready_before = keep_ready_before
        self._scheduled: float | None = None  # monotonic time the current tick was due
        self._triggered = False  # trigger() asked for a tick now
        self._extra = False
        self._sleeping: asyncio.Future[None] | None = None  # the sleep trigger() cuts short

    def __repr__(self) -> str:
        return f"ProbeWorker({self.view.uid}/{self.container.name}/{self.kind})"

    # ------------------------------------------------------------------------------------------------- schedule

    async def run(self) -> None:
        """The worker task body: jitter, then a tick at once and every periodSeconds after, until _tick says stop.
        A ``trigger()`` runs a tick at once and restarts the schedule from it (the kubelet resets its ticker)."""
        period = float(self.probe.period_seconds)
        if self._manager_started is not None and self._clock.monotonic() - self._manager_started < period:
            await self._interruptible_sleep(self._rng() * period)
        clock = self._clock
        base = clock.monotonic()
        anchor = grid_slot(base) * GRID  # ticks after the first: anchor + k * period, on the grid
        tick = 0
        self._scheduled = base
        self._extra = False  # the coming tick was asked for by trigger(), not by the schedule
        while True:
            self._triggered = False
            try:
                keep_going = await self._tick()
            except Exception:  # a bug must not end probing of this container: log and try again next period
                log.exception(
                    "Probe worker iteration failed pod=%s container=%s probe=%s",
                    self.view.uid,
                    self.container.name,
                    self.kind,
                )
                keep_going = True
            if not keep_going:
                log.debug(
                    "Probe worker ends pod=%s container=%s probe=%s", self.view.uid, self.container.name, self.kind
                )
                return
            now = clock.monotonic()
            if not self._triggered:
                # the next tick strictly after now (and after this one: a grid wakeup may come a hair early); missed
                # ticks are dropped
                tick = max(tick + 1, math.floor((now - anchor) / period) + 1)
                self._scheduled = anchor + tick * period
                await self._interruptible_sleep(max(0.0, self._scheduled - now))
                now = clock.monotonic()
                # woken by the schedule, or by trigger() in the same slot: a scheduled tick
                self._extra = self._triggered and grid_slot(now) < grid_slot(self._scheduled)
                if not self._extra:
                    continue
            # trigger(): a tick now, and the schedule starts again from it
            anchor, tick, self._scheduled, self._extra = grid_slot(now) * GRID, 0, now, True

    def trigger(self) -> None:
        """Probe once now, outside the schedule (the kubelet's manual readiness trigger); ignored while on hold."""
        self._triggered = True
        sleeping = self._sleeping
        if sleeping is not None and not sleeping.done():
            sleeping.set_result(None)

    async def _interruptible_sleep(self, seconds: float) -> None:
        """The clock's sleep, cut short by trigger(). RealClock's sleep is a plain future that trigger() resolves;
        another clock's awaitable is awaited in a task that a future of ours races."""
        sleep = self._clock.sleep(seconds)
        inner: asyncio.Future[None] | None = None
        if isinstance(sleep, asyncio.Future) and not isinstance(sleep, asyncio.Task):
            fut = sleep
        else:
            fut = asyncio.get_running_loop().create_future()
            inner = asyncio.ensure_future(sleep)
            inner.add_done_callback(lambda _: None if fut.done() else fut.set_result(None))
        self._sleeping = fut
        try:
            await fut
        finally:
            self._sleeping = None
            if not fut.done():
                fut.cancel()
            if inner is not None and not inner.done():
                inner.cancel()

    # ----------------------------------------------------------------------------------------------------- tick

    async def _tick(self) -> bool:
        """One kubelet doProbe: False ends the worker."""
        view = self.view
        if view.finished():
            return False
        cv = view.container_view(self.container.name)
        if cv is None or not cv.container_id:
            return True  # not created yet: wait
        if cv.container_id != self.container_id:
            self._new_container(cv)
        if not cv.running:
            self._first_seen_running = None
            if self.kind is ProbeKind.READINESS:
                self._publish(ProbeResult.FAILURE, "container is not running")
            return cv.will_restart
        if self.on_hold:
            return True
        if view.deleting() and self.kind is not ProbeKind.READINESS:
            self._publish(ProbeResult.SUCCESS, "pod is being deleted")  # a quiet shutdown: no kills from now on
            return False
        if self._in_initial_delay(cv.started_at):
            return True
        if self.kind is ProbeKind.STARTUP:
            if cv.started:
                return True  # started: the startup probe rests until the next container instance
        elif not cv.started:
            return True  # liveness and readiness wait for the startup probe
        await self._probe_once()
        return True

    def _new_container(self, cv: ContainerView) -> None:
        self.container_id = cv.container_id
        self.on_hold = False
        self.last_result = None
        self.result_run = 0
        self.published = None
        self._first_seen_running = None
        initial = _INITIAL[self.kind]
        keep = self._keep_ready_before
        if self.kind is ProbeKind.READINESS and keep is not None and cv.started_at is not None and cv.started_at < keep:
            initial = ProbeResult.SUCCESS if cv.ready else ProbeResult.FAILURE  # adopted after a daemon restart
        if initial is not None:
            self._publish(initial, "")

    def _in_initial_delay(self, started_at: float | None) -> bool:
        delay = self.probe.initial_delay_seconds
        now = self._clock.time()
        if started_at is None:
            if self._first_seen_running is None:
                self._first_seen_running = now
            started_at = self._first_seen_running
        return delay > 0 and int(now - started_at) < delay

    async def _probe_once(self) -> None:
        if self._on_probe_start is not None and self._scheduled is not None and not self._extra:
            self._on_probe_start(max(0.0, self._clock.monotonic() - self._scheduled))
        started = self._clock.monotonic()
        outcome = await self._run_with_retries()
        self.probes_run += 1
        view, name, kind = self.view, self.container.name, self.kind
        log.debug(
            "Probe ran pod=%s container=%s probe=%s result=%s warning=%s error=%s output=%r",
            view.uid,
            name,
            kind,
            outcome.result,
            outcome.warning,
            outcome.error,
            outcome.output,
        )
        if outcome.error:
            state = outcome.result.value.lower()
            message = f"{kind} probe errored and resulted in {state} state: {outcome.output}"
            view.record_event("Warning", "Unhealthy", message, name)
            return  # thrown away: does not count towards the thresholds
        if outcome.warning:
            view.record_event("Warning", "ProbeWarning", f"{kind} probe warning: {outcome.output}", name)
        if outcome.result is ProbeResult.FAILURE:
            view.record_event("Warning", "Unhealthy", f"{kind} probe failed: {outcome.output}", name)
        result = ProbeResult.SUCCESS if outcome.result is ProbeResult.SUCCESS else ProbeResult.FAILURE
        if self._on_probe_done is not None:
            self._on_probe_done(result, self._clock.monotonic() - started)
        if result is self.last_result:
            self.result_run += 1
        else:
            self.last_result = result
            self.result_run = 1
        threshold = self.probe.failure_threshold if result is ProbeResult.FAILURE else self.probe.success_threshold
        if self.result_run < threshold:
            return
        self._publish(result, outcome.output, crossed=True)
        if (kind is ProbeKind.LIVENESS and result is ProbeResult.FAILURE) or kind is ProbeKind.STARTUP:
            self.on_hold = True  # until a new container instance: never probe one that is being killed
            self.result_run = 0

    async def _run_with_retries(self) -> Outcome:
        guard = self.probe.timeout_seconds + GUARD_SLACK
        outcome = Outcome(ProbeResult.UNKNOWN, "not run", error=True)
        for _ in range(MAX_RETRIES):
            try:
                async with self._clock.timeout(guard):
                    outcome = await self._runner(self.probe, self.container, self.view)
            except TimeoutError:
                return Outcome(ProbeResult.UNKNOWN, f"probe did not complete within {guard:g}s", error=True)
            if not outcome.error:
                return outcome
        return outcome

    def _publish(self, result: ProbeResult, message: str, *, crossed: bool = False) -> None:
        """Tell the pod worker, only if the published result changes. ``crossed``: a probe threshold was met."""
        if result is self.published:
            return
        self.published = result
        uid, name, kind = self.view.uid, self.container.name, self.kind
        if crossed and result is ProbeResult.FAILURE:
            log.warning("Probe failed threshold pod=%s container=%s probe=%s output=%r", uid, name, kind, message)
        elif crossed:
            log.info("Probe succeeded threshold pod=%s container=%s probe=%s", uid, name, kind)
        else:
            log.debug("Probe result set pod=%s container=%s probe=%s result=%s", uid, name, kind, result)
        self.view.probe_result(name, kind, result, message)
