"""Daemon: builds the components, starts them in order, handles signals, shuts down (pods outlive it)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import itertools
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import IO, Any

import psutil

from minikubelet.api.app import ApiServer
from minikubelet.cgroups.admission import parse_reserved
from minikubelet.cgroups.pods import open_cgroups
from minikubelet.cgroups.stats import StatsReader
from minikubelet.errors import MinikubeletError, NetworkError, VolumeError
from minikubelet.events import EventRecorder
from minikubelet.images.layers import LayerStore
from minikubelet.images.manager import ImageManager
from minikubelet.images.registries import RegistriesError
from minikubelet.images.registries import load as load_registries
from minikubelet.images.store import ImageStore
from minikubelet.manifests.sources import FileSource, PodUpdate
from minikubelet.manifests.store import ManifestStore
from minikubelet.network.bridge import BridgeNetwork
from minikubelet.network.ipam import Ipam
from minikubelet.network.record import (
    NetworkRecord,
    mismatch_error,
    recorded_network,
    remove_network_file,
    write_network_file,
)
from minikubelet.node.kubeconfig import retry_kubeconfig, setup_access
from minikubelet.node.node import Node
from minikubelet.pod.context import NodeFacts
from minikubelet.pod.manager import PodManager, run_dir_pods
from minikubelet.pod.spec import Pod
from minikubelet.pod.volumes import reset_host_mounts
from minikubelet.pod.worker import PodWorker, WorkerContext
from minikubelet.probe.manager import ProbeManager
from minikubelet.runtime.linux import LinuxRuntime
from minikubelet.runtime.owned import owner_marker
from minikubelet.runtime.pausebin import find_pause_binary
from minikubelet.runtime.zygote import Zygote
from minikubelet.settings import Settings

log = logging.getLogger(__name__)

# The daemon keeps ~150k long-lived objects with hundreds of pods; at the default threshold (700) a full collection
# ran every 2-3 s under 500 probes a second, stopping the loop for 100-500 ms while freeing next to nothing.
GC_THRESHOLD = (10_000, 10, 10)


def install_child_watcher() -> None:
    """3.11: reap our own children through pidfds in the loop (no thread per child, no SIGCHLD handler)."""
    if hasattr(asyncio, "PidfdChildWatcher"):
        with contextlib.suppress(AttributeError):
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(watcher)  # type: ignore[attr-defined,unused-ignore]


def host_ip(bridge: str) -> str:
    """The node's first non-loopback IPv4 address outside minikubelet's bridges and veths."""
    for name, addrs in psutil.net_if_addrs().items():
        if name == "lo" or name == bridge or name.startswith(("v", "mk")):
            continue
        for a in addrs:
            if a.family.name == "AF_INET" and not a.address.startswith("127."):
                return a.address
    return "127.0.0.1"


class DaemonLock:
    """One daemon per run directory: an flock on <run-dir>/daemon.lock that holds the daemon's pid."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "daemon.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        try:
            os.ftruncate(f.fileno(), 0)
            os.pwrite(f.fileno(), f"{os.getpid()}\n".encode(), 0)  # unbuffered: nothing left to fail at close
        except OSError as e:  # the flock is the lock; the pid in it only names the holder (reset stops it by it)
            log.warning("Could not write the daemon's pid into its lock file path=%s error=%s", self.path, e)
        self._file = f
        return True

    def holder(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._versions = itertools.count(1)
        self.version = 0
        self.stop_event = asyncio.Event()
        self.lock = DaemonLock(settings.run_dir)

    def next_version(self) -> int:
        self.version = next(self._versions)
        api: ApiServer | None = getattr(self, "api", None)
        if api is not None:
            api.hub.poke()  # node and event watches look now
        return self.version

    async def build(self, *, serve: bool = True) -> None:
        """Build the components; ``serve`` (run, not reset): check the flags against the recorded network before
        anything is touched, record it, and build the API (reset serves none, so --listen and TLS play no part)."""
        s = self.settings
        if serve:
            await self.check_recorded_network()
        if not self.lock.acquire():
            raise MinikubeletError(
                f"another minikubelet (pid {self.lock.holder()}) already runs with --run-dir {s.run_dir}; "
                "stop it first or give this one its own --run-dir, --data-dir and --bridge"
            )
        for d, mode in ((s.run_dir, 0o700), (s.data_dir, 0o700), (s.log_dir, 0o755)):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        if serve and write_network_file(s.data_dir, s.bridge, s.pod_cidr):
            log.info("Recorded the pod network dir=%s bridge=%s podCIDR=%s", s.data_dir, s.bridge, s.pod_cidr)
        self.ipam = Ipam(s.pod_cidr, s.data_dir / "ipam.json")
        self.network = BridgeNetwork(s.bridge, s.pod_cidr)
        await self.network.open()
        self.zygote = Zygote(owner=owner_marker(s.run_dir))  # the mark reset finds pauses by
        self.runtime = LinuxRuntime(s.run_dir, s.log_dir, self.zygote, self.network, self.ipam, s.data_dir)
        self.runtime.pause_bin = find_pause_binary()
        self.runtime.cgroups = open_cgroups(s.cgroup_root, s.pod_pids_limit)
        self.events = EventRecorder(self.next_version)
        node_ip = host_ip(s.bridge)
        self.node = Node(s.node, s.data_dir, node_ip, on_labels_changed=lambda: self.manager.wake_all())
        self.node.max_pods = s.max_pods
        self.node.reserved = [parse_reserved("--system-reserved", s.system_reserved),
                              parse_reserved("--kube-reserved", s.kube_reserved)]
        self.ctx = WorkerContext(self.runtime, self.events, NodeFacts(s.node, node_ip, self.node.admit,
                                                                     self._admit_resources),
                                 self.next_version, changed=self._changed, removed=self._removed)
        self.updates: asyncio.Queue[PodUpdate] = asyncio.Queue()
        self.source = FileSource(s.manifests, s.node, self.updates, rescan_interval=s.rescan_interval)
        self.manager = PodManager(self.ctx, self.updates)
        self.source.on_refused = self._manifest_refused
        self.node.refused = self.source.errors
        self.probes = ProbeManager()
        self.ctx.probes = self.probes
        if not serve:
            return
        self.images = build_image_manager(s)
        self.ctx.images = self.images
        self.node.images = self.images.node_images
        access = self.access = setup_access(s, node_ip)
        self.api = ApiServer(s.listen_host, s.listen_port, self.manager.pods, lambda: self.version, self.events,
                             s.node, self.source.errors, node=self.node, store=ManifestStore(s.manifests),
                             defined=self.source.pod_by_key, next_version=self.next_version, token=access.token,
                             ssl_context=access.ssl_context,
                             probe_stats=self._probe_stats, probe_metrics=self.probes.metrics.render)
        if self.runtime.cgroups is not None:  # kubectl top from the cgroups' counters (working set, cpu usage)
            self.api.metrics.cgroup_usage = self.runtime.cgroups.usage_of_pid
            self.api.metrics.cgroup_stats = StatsReader(self.runtime.cgroups)  # /stats/summary's figures

    def _manifest_refused(self, path: str, message: str) -> None:
        """A refused manifest reaches kubectl users: a Warning event on the Node (describe node shows the file)."""
        if message:  # "" when the refusal cleared: only the node changes (its refused-manifests annotation)
            text = message if message.startswith(path) else f"{path}: {message}"
            self.events.record_node(self.settings.node, "Warning", "FailedManifest", f"Manifest not applied: {text}")
        self.node.version = self.next_version()

    def _probe_stats(self) -> dict[str, Any]:
        stats = getattr(self.probes, "stats", None)
        return dict(stats()) if callable(stats) else {}

    def _admit_resources(self, pod: Pod) -> tuple[bool, str, str]:
        """Resource admission of ``pod`` against the pods admitted before it that have not finished."""
        others = [w.pod for w in self.manager.pods() if w.state.admitted and w.state.rejected is None
                  and not w.state.terminal and w.pod.uid != pod.uid]
        return self.node.admit_resources(pod, others)

    def _changed(self, worker: PodWorker | None) -> None:
        api: ApiServer | None = getattr(self, "api", None)  # reset builds no API
        if worker is None:
            self.next_version()
            if api is not None:
                api.pods_changed()
        elif api is not None:
            api.pod_changed(worker)

    def _removed(self, worker: PodWorker) -> None:
        self.next_version()
        api: ApiServer | None = getattr(self, "api", None)
        if api is not None:
            api.pod_deleted(worker)

    async def check_recorded_network(self) -> None:
        """``run``: a --bridge or --pod-cidr (given or default) that differs from what the daemon of these
        directories recorded is one clear error, before anything is touched."""
        s = self.settings
        record = await asyncio.to_thread(lambda: recorded_network(s.data_dir, run_dir_pods(s.run_dir)))
        differences = record.differences(s.bridge, s.pod_cidr)
        if differences:
            raise mismatch_error(differences, {"--bridge", "--pod-cidr"} - s.given, s.reset_command())

    async def adopt_recorded_network(self) -> None:
        """``reset``: take the bridge and pod CIDR from the record; a flag that contradicts it is ignored with a
        warning naming both values. A record file that does not parse is reported and left out (reset removes it)."""
        s = self.settings
        unreadable: list[Path] = []

        def corrupt(error: NetworkError, path: Path) -> None:
            log.warning("%s; reset goes on without it and removes it", error)
            unreadable.append(path)

        record: NetworkRecord = await asyncio.to_thread(
            lambda: recorded_network(s.data_dir, run_dir_pods(s.run_dir), on_corrupt=corrupt))
        for path in unreadable:  # what it named is found through the other records; reset would remove it anyway
            with contextlib.suppress(OSError):
                path.unlink()
        for d in record.differences(s.bridge, s.pod_cidr):
            if d.flag in s.given:
                log.warning("Ignoring %s %s: the daemon of these directories recorded %s %s (in %s), and reset "
                            "removes what it created with that", d.flag, d.given, d.what, d.recorded, d.source)
        if record.bridge is None:
            log.info("No bridge recorded in dir=%s; removing bridge=%s (%s)", s.data_dir, s.bridge,
                     "--bridge" if "--bridge" in s.given else "the default")
        self.settings = dataclasses.replace(s, bridge=record.bridge or s.bridge, pod_cidr=record.pod_cidr or s.pod_cidr)

    async def run(self) -> None:
        install_child_watcher()
        gc.set_threshold(*GC_THRESHOLD)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        await self.build()
        # modules, classes and the components just built live as long as the daemon: no collection need scan them
        # (frozen before any pod exists, so nothing that can become garbage is frozen)
        gc.freeze()
        s = self.settings
        try:
            await self.network.ensure_bridge()
            await self.zygote.start()
            await self.probes.start()
            self.manager.load_records()
            await self.source.start()
            self.manager.drain()
            await self.manager.reconcile_leftovers()
            manager_task = asyncio.create_task(self.manager.run(), name="pod manager")
            self.images.start_gc(s.image_gc_high_threshold, s.image_gc_low_threshold)
            await self.api.start()
            kubeconfig_task = None  # a full disk refused the kubeconfig: write it once it can be
            if self.access.kubeconfig_pending is not None:
                kubeconfig_task = asyncio.create_task(
                    retry_kubeconfig(self.access.kubeconfig, self.access.kubeconfig_pending,
                                     mode=s.kubeconfig_mode, gid=s.kubeconfig_group), name="kubeconfig")
            log.info("minikubelet is running node=%s manifests=%s bridge=%s podCIDR=%s", s.node, s.manifests,
                     s.bridge, s.pod_cidr)
            await self.stop_event.wait()
            log.info("Shutting down; pods keep running and will be re-adopted on the next start")
            manager_task.cancel()
            if kubeconfig_task is not None:
                kubeconfig_task.cancel()
            await asyncio.gather(manager_task, *[kubeconfig_task] if kubeconfig_task else [], return_exceptions=True)
        finally:
            await self.shutdown(stop_pods=False)

    async def shutdown(self, *, stop_pods: bool) -> None:
        with contextlib.suppress(Exception):
            await self.api.stop()
        with contextlib.suppress(Exception):
            await self.source.stop()
        await self.manager.shutdown(stop_pods=stop_pods)
        await self.probes.stop()
        await self.zygote.stop()
        await self.network.close()
        if getattr(self, "images", None) is not None:
            with contextlib.suppress(Exception):
                await self.images.close()
        self.lock.release()

    async def reset(self) -> None:
        """Stop every pod of this daemon and remove what it created: processes, veths, bridge, leases, host mounts
        under the pods' directories, <data-dir>/pods/, run state."""
        install_child_watcher()
        if not self.lock.acquire():
            pid = self.lock.holder()
            log.info("Stopping the running daemon first pid=%s", pid)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if self.lock.acquire():
                    break
                await asyncio.sleep(0.1)
            else:
                raise MinikubeletError(f"the daemon (pid {pid}) did not stop within 30 s; stop it, then run reset")
        self.lock.release()
        await self.adopt_recorded_network()
        await self.build(serve=False)
        s = self.settings
        log.info("Resetting bridge=%s podCIDR=%s data=%s run=%s", s.bridge, s.pod_cidr, s.data_dir, s.run_dir)
        self.manager.load_records()
        count = len(self.manager._records)
        log.info("Stopping pods count=%d", count)
        await self.manager.reconcile_leftovers()
        await self.manager.shutdown(stop_pods=True)
        await self.zygote.start()  # tmpfs of emptyDir Memory volumes and pods' shm, then <data-dir>/pods/
        try:
            await reset_host_mounts(self.runtime, s.data_dir, s.run_dir)
        except VolumeError as e:
            log.warning("%s; run reset again", e)
        finally:
            await self.zygote.stop()
        if self.runtime.cgroups is not None and not await self.runtime.cgroups.remove_all():
            log.warning("Some cgroups under root=%s are still busy; run reset again", s.cgroup_root)
        await self.network.remove_bridge()
        await self.network.close()
        for uid in list(self.ipam.leases()):
            self.ipam.release(uid)
        with contextlib.suppress(FileNotFoundError):
            (s.data_dir / "ipam.json").unlink()
        self.lock.release()
        shutil.rmtree(s.run_dir, ignore_errors=True)
        remove_network_file(s.data_dir)  # last: a reset that failed before here finds the record again
        log.info("Reset done: pods stopped, bridge %s and run state %s removed", s.bridge, s.run_dir)


def build_image_manager(s: Settings) -> ImageManager:
    """The image store under <data-dir>/images/ and the registries of --registries (a bad file stops the start)."""
    try:
        regs = load_registries(s.registries, required=s.registries != Settings().registries,
                               disable_default_endpoint=s.disable_default_registry_endpoint)
    except RegistriesError as e:
        raise MinikubeletError(f"--registries: {e}") from None
    root = s.data_dir / "images"
    return ImageManager(ImageStore(root), regs, layers=LayerStore(root / "layers"))
