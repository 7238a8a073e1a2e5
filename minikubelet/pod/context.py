"""The seams of a pod worker: the node facts it is given, the prober it feeds, and the hooks its parts call back.

These are small types so that the worker's parts (pod/sandbox.py, pod/containers.py) and its readers
(pod/apiview.py, pod/exec.py) never import the worker itself. Imports pod.spec and probe (the PodView seam) only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from minikubelet.images.content import ResolvedImage
from minikubelet.pod.spec import Container, Pod
from minikubelet.probe import PodView


def _admit_all(_pod: Pod) -> tuple[bool, str, str]:
    return True, "", ""


@dataclass(slots=True)
class NodeFacts:
    """What a pod needs to know of its node: name, host IP, and nodeSelector admission ((ok, reason, message))."""

    name: str
    host_ip: str
    admit: Callable[[Pod], tuple[bool, str, str]] = _admit_all
    admit_resources: Callable[[Pod], tuple[bool, str, str]] = _admit_all  # requests against what is left


class Prober(Protocol):
    """What the pod worker needs of the probe manager (probe/manager.py)."""

    def add_pod(self, view: PodView, pod: Pod) -> None: ...

    def remove_pod(self, uid: str) -> None: ...

    def trigger_readiness(self, uid: str, container: str) -> None: ...


class ImageProvider(Protocol):
    """What the container start path needs of images (images/manager.py): an image ready to run.

    ``ensure`` applies the pull policy, pulls (sharing one pull between pods), unpacks the layers, records the
    Pulling/Pulled/Failed/BackOff events through ``event`` and raises ImagePullError with the container's waiting
    reason when the image cannot be had (yet). It never blocks the loop and may take long: callers run it in a
    task of their own so that termination and other pods are never delayed.
    """

    async def ensure(
        self, pod: Pod, container: Container, event: Callable[[str, str, str], None]
    ) -> ResolvedImage: ...

    def in_use(self, pod_uid: str, image_ids: set[str]) -> None:
        """The images a pod's containers run now (for garbage collection); an empty set releases them."""
        ...


class WorkerHooks(Protocol):
    """What the sandbox and container parts of a worker call back into it for."""

    def event(self, type_: str, reason: str, message: str, container: str = "") -> None:
        """Record a Kubernetes event about the pod (or one of its containers)."""
        ...

    def persist(self) -> None:
        """Save the pod's record (after a change a restarted daemon must know of)."""
        ...

    def changed(self) -> None:
        """The pod's API object changed: take a new resourceVersion and tell the watchers."""
        ...

    def wake(self) -> None:
        """Run the worker's sync again now."""
        ...

    def wake_in(self, seconds: float) -> None:
        """Run the worker's sync again in ``seconds`` at the latest."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the worker owns (settle() waits for all of them)."""
        ...

    async def settle(self) -> None:
        """Wait for every task spawn() started."""
        ...
