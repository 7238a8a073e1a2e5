"""One pod's desired and observed state, and the workers that drive pods from spec to running processes.

Owns: the Pod dataclasses (``spec``), a pod's state (``state``: records, sandbox, conditions, back-off) and its
status rules (``status``, ``backoff``), the per-pod worker (``worker``) with its two parts (``sandbox``: pause,
network, recreation, teardown; ``containers``: start/restart decisions and exits), the seams they share
(``context``), the run-dir record (``record``), exec and logs (``exec``), env and $(VAR) (``env``), the v1 Pod
object (``apiview``) and the sync loop over all workers (``manager``).
May import: errors, events, timefmt, fileio, manifests (PodUpdate), runtime, network, probe, images. Only ``manager``,
the daemon and the API import ``worker``; its parts and readers take a ``PodState`` and the ``context`` types.
"""
