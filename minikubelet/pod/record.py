"""A pod worker's record under <run-dir>/pods/<uid>/record.json: saved after every change, read on restart.

With it a restarted daemon re-adopts the same processes (pid + start time, never pid alone), learns the exits pause
recorded while it was down, and keeps restart counts, back-off and start times. Reads and loads a ``PodState``
(pod/state.py); imports nothing else of the pod package.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from minikubelet.pod.state import PodState
from minikubelet.pod.status import ContainerRecord
from minikubelet.runtime.linux import Sandbox

log = logging.getLogger(__name__)


def save(w: PodState, pod_dir: Path) -> None:
    """Write what a restarted daemon needs to re-adopt this pod into ``pod_dir`` (atomic replace)."""
    if not pod_dir.is_dir():
        return
    data = {
        "uid": w.pod.uid,
        "namespace": w.pod.namespace,
        "name": w.pod.name,
        "source": w.pod.source,
        "grace": w.pod.spec.termination_grace_period_seconds,
        "created_at": w.created_at,
        "start_time": w.start_time,
        "terminal": w.terminal,
        "sandbox": asdict(w.sandbox) if w.sandbox else None,
        "containers": {n: r.to_dict() for n, r in w.records.items()},
        "backoff": w.backoff.to_dict(),
        "conditions": {ctype: [value, since] for ctype, (value, since) in w.conditions.times.items()},
        "manifest": w.pod.manifest,
    }
    tmp = pod_dir / "record.json.tmp"
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, pod_dir / "record.json")
    except OSError as e:
        log.warning("Could not save the pod record pod=%s error=%s", w.pod.key, e)


def load(w: PodState, data: dict[str, Any]) -> None:
    """Take over the state of a pod a previous daemon started: same sandbox and processes, restart counts, back-off,
    start and condition times. The worker then follows the processes that still run (and learns what ended)."""
    w.created_at = float(data.get("created_at") or w.created_at)
    w.start_time = data.get("start_time")
    w.terminal = bool(data.get("terminal"))
    w.admitted = True
    w.backoff.load(data.get("backoff") or {})
    for ctype, kept in (data.get("conditions") or {}).items():  # lastTransitionTime survives the restart
        if isinstance(kept, list) and len(kept) == 2 and kept[0] in ("True", "False"):
            w.conditions.times[str(ctype)] = (str(kept[0]), float(kept[1]))
    for name, raw in (data.get("containers") or {}).items():
        if name in w.records:
            w.records[name] = ContainerRecord.from_dict(raw)
    sb = data.get("sandbox")
    if sb:
        w.sandbox = Sandbox(**sb)
