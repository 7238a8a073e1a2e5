"""The container runtime: pod sandboxes (pause + network) and container processes, seen from the daemon.

Owns: ``linux`` (LinuxRuntime: the per-pod run directory, sandboxes, starting and exec'ing processes through the
zygote, exit records, logs layout), ``zygote`` (the daemon's side of the nsexec zygote), ``proc`` (pidfd-based
process handles: never a bare PID), ``owned`` (this daemon's pauses, found by the mark in their environ) and
``pausebin`` (finding the compiled pause).
May import: errors, network, pod.spec. Never setns/unshare/fork here: that is nsexec's, in a fresh process.
"""
