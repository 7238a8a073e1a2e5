"""Times as the Kubernetes API and the kubelet print them: RFC 3339 timestamps and Go durations. Imports nothing."""

from __future__ import annotations

import time


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String() for whole seconds: 10s, 5m0s, 1h0m0s."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"
