"""CrashLoopBackOff timing, as client-go's flowcontrol.Backoff is used by the kubelet (pure, clock injected).

Per key (a container of a pod): the first restart is immediate, then each exit waits 10 s, 20 s, 40 s ... capped
at 300 s, measured from the exit (``finishedAt``). An exit more than 600 s after the last back-off step (the
container ran about ten minutes) starts over at 10 s.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_SECONDS = 10.0
MAX_SECONDS = 300.0
RESET_SECONDS = 600.0


@dataclass(slots=True)
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(
        self, initial: float = INITIAL_SECONDS, cap: float = MAX_SECONDS, reset_after: float = RESET_SECONDS
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.reset_after = reset_after
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, event_time: float) -> bool:
        return event_time - entry.last_update > self.reset_after

    def remaining(self, key: str, event_time: float, now: float) -> float:
        """Seconds left before a restart after an exit at ``event_time`` is allowed (0 when it is allowed now)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return 0.0
        return max(0.0, entry.delay - (now - event_time))

    def next(self, key: str, event_time: float) -> float:
        """Record a restart for the exit at ``event_time``; returns the delay the next exit will wait."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            entry = self._entries[key] = _Entry(self.initial, event_time)
        else:
            entry.delay = min(entry.delay * 2, self.cap)
            entry.last_update = event_time
        return entry.delay

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [e.delay, e.last_update] for k, e in self._entries.items()}

    def load(self, data: dict[str, list[float]]) -> None:
        self._entries = {k: _Entry(float(v[0]), float(v[1])) for k, v in data.items()}
