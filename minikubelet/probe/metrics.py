"""The kubelet's prober metrics, served as Prometheus text on ``GET /metrics/probes`` (kubelet-semantics.md §2.4).

- ``prober_probe_total`` (counter, BETA): every probe that ran, by ``probe_type``, ``result`` (successful, failed,
  unknown), ``container``, ``pod``, ``namespace``, ``pod_uid``. A probe that errored (could not run) is not counted.
- ``prober_probe_duration_seconds`` (histogram, ALPHA, Prometheus' default buckets): the probe's duration by
  ``probe_type``, ``container``, ``pod``, ``namespace``, observed for successful and unknown results only.
- ``process_start_time_seconds`` (gauge, ALPHA).

A worker's series are deleted when the worker ends, as the kubelet does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from minikubelet.pod.spec import ProbeKind
from minikubelet.probe import ProbeResult

__all__ = ["BUCKETS", "CONTENT_TYPE", "ProbeMetrics", "Series"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # prometheus.DefBuckets
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_RESULT = {ProbeResult.SUCCESS: "successful", ProbeResult.FAILURE: "failed", ProbeResult.UNKNOWN: "unknown"}


@dataclass(frozen=True, slots=True)
class Series:
    """Whose probes: one worker's labels."""

    kind: ProbeKind
    container: str
    pod: str
    namespace: str
    pod_uid: str


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))  # per bucket, not cumulative
    total: float = 0.0
    n: int = 0


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class ProbeMetrics:
    def __init__(self, started: float | None = None) -> None:
        self.started = time.time() if started is None else started
        self._totals: dict[tuple[Series, str], int] = {}
        self._durations: dict[Series, _Histogram] = {}

    def observe(self, series: Series, result: ProbeResult, seconds: float) -> None:
        """One probe that ran (not one that errored): its result and how long it took."""
        label = _RESULT[result]
        key = (series, label)
        self._totals[key] = self._totals.get(key, 0) + 1
        if result is ProbeResult.FAILURE:
            return
        hist = self._durations.get(series)
        if hist is None:
            hist = self._durations[series] = _Histogram()
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                hist.counts[i] += 1
                break
        hist.total += seconds
        hist.n += 1

    def forget(self, series: Series) -> None:
        """The worker ended: its series go."""
        for label in _RESULT.values():
            self._totals.pop((series, label), None)
        self._durations.pop(series, None)

    def render(self) -> str:
        out = [
            "# HELP process_start_time_seconds [ALPHA] Start time of the process since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {_number(self.started)}",
            "# HELP prober_probe_duration_seconds [ALPHA] Duration in seconds for a probe response.",
            "# TYPE prober_probe_duration_seconds histogram",
        ]
        for s, hist in sorted(self._durations.items(), key=lambda kv: _order(kv[0])):
            labels = (
                f"container={_quote(s.container)},namespace={_quote(s.namespace)},pod={_quote(s.pod)},"
                f"probe_type={_quote(s.kind.value)}"
            )
            cumulative = 0
            for bound, count in zip(BUCKETS, hist.counts, strict=True):
                cumulative += count
                out.append(f'prober_probe_duration_seconds_bucket{{{labels},le="{_number(bound)}"}} {cumulative}')
            out.append(f'prober_probe_duration_seconds_bucket{{{labels},le="+Inf"}} {hist.n}')
            out.append(f"prober_probe_duration_seconds_sum{{{labels}}} {_sum(hist.total)}")
            out.append(f"prober_probe_duration_seconds_count{{{labels}}} {hist.n}")
        out += [
            "# HELP prober_probe_total [BETA] Cumulative number of a liveness, readiness or startup probe for a "
            "container by result.",
            "# TYPE prober_probe_total counter",
        ]
        for (s, result), n in sorted(self._totals.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])):
            out.append(
                f"prober_probe_total{{container={_quote(s.container)},namespace={_quote(s.namespace)},"
                f"pod={_quote(s.pod)},pod_uid={_quote(s.pod_uid)},probe_type={_quote(s.kind.value)},"
                f"result={_quote(result)}}} {n}"
            )
        return "\n".join(out) + "\n"


def _order(s: Series) -> tuple[str, str, str, str, str]:
    return (s.container, s.namespace, s.pod, s.pod_uid, s.kind.value)


def _sum(value: float) -> str:
    return "0" if value == 0 else (repr(value) if math.isfinite(value) else "NaN")
