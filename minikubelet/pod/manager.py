"""PodManager: the sync loop. Turns PodUpdates into pod workers, re-adopts pods after a restart, cleans leftovers.

It is the only owner of the worker table. Updates come from an unbounded queue (the file source never waits on
us); a spec edit arrives as REMOVE(old uid) + ADD(new uid), and the new pod starts only after the old one with the
same namespace/name has terminated, as the kubelet does for static pods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from minikubelet.manifests.sources import PodUpdate, UpdateOp
from minikubelet.pod.spec import Container, Pod, PodSpec
from minikubelet.pod.worker import PodWorker, WorkerContext
from minikubelet.runtime.linux import Sandbox

log = logging.getLogger(__name__)


class PodManager:
    def __init__(self, ctx: WorkerContext, updates: asyncio.Queue[PodUpdate]) -> None:
        self.ctx = ctx
        self.updates = updates
        self.workers: dict[str, PodWorker] = {}  # uid -> worker (including terminating ones)
        self._records: dict[str, dict[str, Any]] = {}  # uid -> record of a previous daemon, until claimed
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Condition()

    # ----- start-up ------------------------------------------------------------------------------------------

    def load_records(self) -> None:
        """Read what the previous daemon left under <run-dir>/pods (before the source's first scan)."""
        pods_dir = self.ctx.runtime.run_dir / "pods"
        if not pods_dir.is_dir():
            return
        runtime = self.ctx.runtime
        for d in sorted(pods_dir.iterdir()):
            try:
                record = json.loads((d / "record.json").read_text())
            except (OSError, ValueError):
                runtime.kill_unrecorded_pause(d.name, None)
                log.warning("Removing pod state without a readable record dir=%s", d)
                shutil.rmtree(d, ignore_errors=True)
                continue
            sandbox = record.get("sandbox")
            runtime.kill_unrecorded_pause(d.name, Sandbox(**sandbox) if sandbox else None)
            self._records[d.name] = record
        known = {(int(r["sandbox"]["pid"]), int(r["sandbox"]["start"])) for r in self._records.values()
                 if isinstance(r.get("sandbox"), dict) and "pid" in r["sandbox"] and "start" in r["sandbox"]}
        runtime.kill_unknown_pauses(known)
        if self._records:
            log.info("Found pods of a previous run count=%d", len(self._records))

    def drain(self) -> None:
        """Apply every queued update now (used after the source's first scan)."""
        while not self.updates.empty():
            self._apply(self.updates.get_nowait())

    async def reconcile_leftovers(self) -> None:
        """After the first scan: stop pods whose manifests are gone, then remove veths and leases nobody owns."""
        for uid, record in list(self._records.items()):
            log.info(
                "Stopping a pod whose manifest is gone uid=%s pod=%s/%s",
                uid,
                record.get("namespace"),
                record.get("name"),
            )
            worker = PodWorker(_pod_from_record(record), self.ctx, record)
            self.workers[uid] = worker
            worker.start()
            worker.terminate(int(record.get("grace", 30)))
            self._reap_when_done(worker)
        self._records.clear()
        runtime = self.ctx.runtime
        known = set(self.workers)
        owned_veths = {runtime.network.veth_name(uid) for uid in known}
        for veth in await runtime.network.list_veths():
            if veth not in owned_veths:
                log.info("Removing a leftover veth veth=%s", veth)
                await runtime.network.detach(veth)
        for uid in list(runtime.ipam.leases()):
            if uid not in known:
                log.info("Releasing a leftover IP lease uid=%s", uid)
                runtime.ipam.release(uid)

    # ----- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            update = await self.updates.get()
            try:
                self._apply(update)
            except Exception:
                log.exception("Could not apply a pod update op=%s pod=%s", update.op, update.pod.key)

    def _apply(self, update: PodUpdate) -> None:
        pod = update.pod
        worker = self.workers.get(pod.uid)
        if update.op is UpdateOp.REMOVE:
            if worker is not None:
                log.info("Pod removed from its manifest; terminating pod=%s uid=%s", pod.key, pod.uid)
                worker.terminate()
            return
        if update.op is UpdateOp.UPDATE and worker is not None:
            log.info("Pod metadata updated pod=%s uid=%s", pod.key, pod.uid)
            worker.update_metadata(pod)
            return
        if worker is not None and worker.state.terminating is None:
            worker.update_metadata(pod)
            return
        record = self._records.pop(pod.uid, None)
        new = PodWorker(pod, self.ctx, record)
        previous = [w for w in self.workers.values() if w.pod.key == pod.key and w is not worker]
        if worker is not None:
            previous.append(worker)
        self.workers[pod.uid] = new
        self._notify()
        task = asyncio.create_task(self._start_after(new, previous))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_after(self, worker: PodWorker, previous: list[PodWorker]) -> None:
        for old in previous:
            if not old.done.is_set():
                log.info(
                    "Waiting for the previous instance to terminate pod=%s old=%s new=%s",
                    worker.pod.key,
                    old.pod.uid,
                    worker.pod.uid,
                )
                await old.done.wait()
        worker.start()
        self._reap_when_done(worker)

    def _reap_when_done(self, worker: PodWorker) -> None:
        async def reap() -> None:
            await worker.done.wait()
            if self.workers.get(worker.pod.uid) is worker:
                del self.workers[worker.pod.uid]
                self.ctx.removed(worker)
                self._notify()

        task = asyncio.create_task(reap())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        self.ctx.changed(None)

    def wake_all(self) -> None:
        """Re-run every worker's sync now (e.g. node labels changed, so a waiting nodeSelector may match)."""
        for worker in self.workers.values():
            worker.wake()

    # ----- queries -------------------------------------------------------------------------------------------

    def pods(self) -> list[PodWorker]:
        return sorted(self.workers.values(), key=lambda w: (w.pod.namespace, w.pod.name, w.state.created_at))

    async def shutdown(self, *, stop_pods: bool) -> None:
        """Daemon exit. Pods keep running unless ``stop_pods`` (minikubelet reset)."""
        for task in list(self._tasks):
            task.cancel()
        workers = list(self.workers.values())
        if stop_pods:
            events = [w.terminate() for w in workers]
            await asyncio.gather(*(e.wait() for e in events))
        for w in workers:
            if w.task is not None and not w.done.is_set():
                w.task.cancel()
        await asyncio.gather(*(w.task for w in workers if w.task is not None), return_exceptions=True)


def _pod_from_record(record: dict[str, Any]) -> Pod:
    """A minimal Pod for a record whose manifest is gone: enough to terminate it and clean up."""
    names = list((record.get("containers") or {}).keys())
    containers = tuple(Container(name=n, image="") for n in names) or (Container(name="unknown", image=""),)
    spec = PodSpec(containers=containers, termination_grace_period_seconds=int(record.get("grace", 30)))
    return Pod(
        namespace=str(record.get("namespace", "default")),
        name=str(record.get("name", "unknown")),
        uid=str(record["uid"]),
        spec=spec,
        source=str(record.get("source", "")),
        manifest=record.get("manifest") or {},
    )


def run_dir_pods(run_dir: Path) -> list[str]:
    d = run_dir / "pods"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
