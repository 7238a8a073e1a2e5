"""The kubelet's prober metrics in Prometheus text (probe/metrics.py)."""

from __future__ import annotations

from minikubelet.pod.spec import ProbeKind
from minikubelet.probe import ProbeResult
from minikubelet.probe.metrics import ProbeMetrics, Series

WEB = Series(ProbeKind.LIVENESS, "web", "p1", "default", "uid-1")
ODD = Series(ProbeKind.READINESS, 'a"b', "p\\2", "ns", "uid-2")


def test_render_counts_results_and_durations_of_successes_only() -> None:
    m = ProbeMetrics(started=1700000000.5)
    m.observe(WEB, ProbeResult.SUCCESS, 0.003)
    m.observe(WEB, ProbeResult.SUCCESS, 0.2)
    m.observe(WEB, ProbeResult.FAILURE, 1.0)  # counted, not timed (as the kubelet)
    text = m.render()
    lines = text.splitlines()
    assert "process_start_time_seconds 1700000000.5" in lines
    assert "# TYPE prober_probe_total counter" in lines
    assert "# TYPE prober_probe_duration_seconds histogram" in lines
    labels = 'container="web",namespace="default",pod="p1",pod_uid="uid-1",probe_type="Liveness"'
    assert f'prober_probe_total{{{labels},result="successful"}} 2' in lines
    assert f'prober_probe_total{{{labels},result="failed"}} 1' in lines
    h = 'container="web",namespace="default",pod="p1",probe_type="Liveness"'
    assert f'prober_probe_duration_seconds_bucket{{{h},le="0.005"}} 1' in lines
    assert f'prober_probe_duration_seconds_bucket{{{h},le="0.1"}} 1' in lines
    assert f'prober_probe_duration_seconds_bucket{{{h},le="0.25"}} 2' in lines
    assert f'prober_probe_duration_seconds_bucket{{{h},le="+Inf"}} 2' in lines
    assert f"prober_probe_duration_seconds_count{{{h}}} 2" in lines
    assert f"prober_probe_duration_seconds_sum{{{h}}} 0.203" in lines
    assert text.endswith("\n")


def test_label_values_are_escaped_and_series_are_forgotten() -> None:
    m = ProbeMetrics()
    m.observe(ODD, ProbeResult.FAILURE, 0.1)
    m.observe(WEB, ProbeResult.SUCCESS, 0.1)
    assert 'container="a\\"b",namespace="ns",pod="p\\\\2"' in m.render()
    m.forget(ODD)
    text = m.render()
    assert "uid-2" not in text and "uid-1" in text
