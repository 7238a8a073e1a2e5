"""The pod network: the bridge, one veth per pod, and IP leases from the pod CIDR.

Owns: ``bridge`` (bridge and veths with pyroute2's AsyncIPRoute), ``ipam`` (leases persisted in
<data-dir>/ipam.json), ``record`` (the bridge and pod CIDR the daemon ran with, <data-dir>/network.json) and
``neigh`` (the kernel ARP table's capacity).
May import: errors, fileio.
"""
