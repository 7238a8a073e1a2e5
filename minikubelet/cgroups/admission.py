"""Node allocatable and the kubelet's resource admission (``pkg/kubelet/lifecycle/predicate.go``), pure.

allocatable = capacity - system-reserved - kube-reserved; a pod whose requests (the init-container max rule) do not
fit what the admitted pods leave is refused with reason ``OutOf<resource>`` and the kubelet's message; the pod worker
then ends the pod Failed with that reason (node/node.py ``admit_resources``, pod/worker.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction

from minikubelet.cgroups.resources import milli, of_container, parse_quantity, pod_totals, whole
from minikubelet.pod.spec import Pod

MAX_PODS = 110


def parse_reserved(flag: str, text: str) -> dict[str, Fraction]:
    """``cpu=500m,memory=1Gi`` -> quantities; ValueError naming the flag and the bad pair."""
    out: dict[str, Fraction] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = pair.partition("=")
        if not sep or name not in ("cpu", "memory", "ephemeral-storage", "pid"):
            raise ValueError(f"{flag} {text!r}: {pair!r} is not NAME=QUANTITY with NAME one of cpu, memory, "
                             "ephemeral-storage, pid")
        try:
            out[name] = parse_quantity(value)
        except ValueError:
            raise ValueError(f"{flag} {text!r}: {value!r} is not a quantity (e.g. 500m, 1Gi)") from None
    return out


def allocatable(capacity: Mapping[str, Fraction], *reserved: Mapping[str, Fraction]) -> dict[str, Fraction]:
    out = dict(capacity)
    for r in reserved:
        for name, q in r.items():
            if name in out:
                out[name] = max(Fraction(0), out[name] - q)
    return out


def pod_requests(pod: Pod) -> dict[str, Fraction]:
    spec = pod.spec
    return pod_totals([of_container(c) for c in spec.init_containers], [of_container(c) for c in spec.containers],
                      "requests")


def _units(name: str, q: Fraction) -> int:
    return milli(q) if name == "cpu" else whole(q)


def admit(pod: Pod, others: Iterable[Pod], alloc: Mapping[str, Fraction]) -> tuple[bool, str, str]:
    """(ok, reason, message) as the kubelet's resource predicate: pods first, then cpu, memory, ephemeral-storage."""
    admitted = list(others)
    pods_cap = int(alloc.get("pods", MAX_PODS))
    if len(admitted) + 1 > pods_cap:
        return False, "OutOfpods", (f"Node didn't have enough resource: pods, requested: 1, used: {len(admitted)}, "
                                    f"capacity: {pods_cap}")
    want = pod_requests(pod)
    used: dict[str, Fraction] = {}
    for other in admitted:
        for name, q in pod_requests(other).items():
            used[name] = used.get(name, Fraction(0)) + q
    for name in ("cpu", "memory", "ephemeral-storage"):
        req = want.get(name, Fraction(0))
        if not req or name not in alloc:
            continue
        have = used.get(name, Fraction(0))
        if req + have > alloc[name]:
            return False, f"OutOf{name}", (
                f"Node didn't have enough resource: {name}, requested: {_units(name, req)}, "
                f"used: {_units(name, have)}, capacity: {_units(name, alloc[name])}")
    return True, "", ""
