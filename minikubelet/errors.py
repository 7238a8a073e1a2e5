"""The few exceptions minikubelet raises. Runtime failures become status, not exceptions (house-style §3)."""

from __future__ import annotations


class MinikubeletError(Exception):
    """Base class of every error minikubelet raises on purpose."""


class ManifestError(MinikubeletError):
    """A manifest (file or API body) is not a valid Pod. ``problems`` lists every finding, one sentence each,
    each naming the field path and what is allowed; ``source`` is the file path (or "request")."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class SandboxError(MinikubeletError):
    """Creating or entering a pod sandbox failed."""


class ContainerStartError(MinikubeletError):
    """A container process could not be started (exec failed, bad user, bad working dir...)."""

    def __init__(self, message: str, reason: str = "RunContainerError") -> None:
        self.reason = reason
        super().__init__(message)


class NetworkError(MinikubeletError):
    """Pod network set-up or tear-down failed."""


class VolumeError(MinikubeletError):
    """Setting up (or tearing down) a pod volume on the host failed; the pod worker retries.

    ``volume`` names the volume ("" for the pod's shm or a whole pod directory); ``setup_failed()`` is the kubelet's
    FailedMount event message."""

    def __init__(self, message: str, volume: str = "") -> None:
        self.message = message
        self.volume = volume
        super().__init__(message)

    def setup_failed(self) -> str:
        return f'MountVolume.SetUp failed for volume "{self.volume}" : {self.message}'
