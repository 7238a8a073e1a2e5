"""Cgroups: the kubelet's cgroupfs layout, limits from ``resources``, QoS, OOM counters and usage, on v1 and v2.

Owns: the pure formulas (``resources``: quantities, defaulting and validation of ``resources``, cpu shares / v2
weight / CFS quota, QoS class, oom_score_adj, pod-level sums), detection of the host's cgroup mode (``detect``) and
the one interface above v1 and v2 that creates, limits, reads and removes cgroups (``tree``).
May import: errors, pod.spec. Pod, node and the daemon import it; it imports none of them.
"""
