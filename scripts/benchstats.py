"""What every benchmark prints and polls with: medians and p95, a polling loop, a process's PSS."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(name: str, values: list[float], unit: str, target: str = "") -> dict[str, float]:
    med, p95 = statistics.median(values), pct(values, 0.95)
    print(f"{name:<44} median {med:8.2f} {unit}   p95 {p95:8.2f} {unit}   n={len(values)}   {target}")
    return {"median": med, "p95": p95}


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.0005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0
