"""Pure formulas from the kubelet: quantities, defaulting and validation of ``resources``, QoS, oom_score_adj, and
the cgroup values of a container and of a pod (k/k ``pkg/kubelet/cm/helpers_linux.go``,
``pkg/apis/core/v1/helper/qos/qos.go``, ``pkg/kubelet/qos/policy.go``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from minikubelet.pod.spec import Container, PodSpec

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1000
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000
SANDBOX_OOM_SCORE_ADJ = -998
COMPUTE = ("cpu", "memory")
KNOWN_RESOURCES = ("cpu", "memory", "ephemeral-storage")

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
QUANTITY_REGEX = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"  # the message the API server prints
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}


class QOSClass(StrEnum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BESTEFFORT = "BestEffort"


def parse_quantity(text: object) -> Fraction:
    """A Kubernetes quantity ("250m", "64Mi", "1e3", 2) as an exact number; ValueError when it is not one."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"not a quantity: {text!r}")
    s = str(text).strip() if not isinstance(text, float) else repr(text)
    m = _QUANTITY.match(s)
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def milli(q: Fraction) -> int:
    """Quantity.MilliValue: rounded up to a whole milli-unit."""
    return math.ceil(q * 1000)


def whole(q: Fraction) -> int:
    """Quantity.Value: rounded up to a whole unit (bytes for memory)."""
    return math.ceil(q)


@dataclass(frozen=True, slots=True)
class Resources:
    """A container's requests and limits after defaulting (requests default to limits), as exact quantities."""

    requests: Mapping[str, Fraction] = field(default_factory=dict)
    limits: Mapping[str, Fraction] = field(default_factory=dict)

    def request_milli_cpu(self) -> int:
        return milli(self.requests.get("cpu", Fraction(0)))

    def limit_milli_cpu(self) -> int:
        return milli(self.limits.get("cpu", Fraction(0)))

    def request_memory(self) -> int:
        return whole(self.requests.get("memory", Fraction(0)))

    def limit_memory(self) -> int:
        return whole(self.limits.get("memory", Fraction(0)))


def parse_resources(raw: Any, path: str) -> tuple[Resources, list[str]]:
    """Default and validate one container's ``resources`` as the API server does; problems name the field."""
    problems: list[str] = []
    if raw is None:
        return Resources(), problems
    if not isinstance(raw, Mapping):
        return Resources(), [f"{path}: Invalid value: {raw!r}: must be an object with requests and/or limits"]
    parsed: dict[str, dict[str, Fraction]] = {"requests": {}, "limits": {}}
    for part in ("requests", "limits"):
        section = raw.get(part)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            problems.append(f"{path}.{part}: Invalid value: {section!r}: must be a map of resource name to quantity")
            continue
        for name, value in section.items():
            where = f"{path}.{part}[{name}]"
            try:
                q = parse_quantity(value)
            except ValueError:
                problems.append(f"{where}: Invalid value: \"{value}\": quantities must match the regular expression "
                                f"'{QUANTITY_REGEX}'")
                continue
            if q < 0:
                problems.append(f"{where}: Invalid value: \"{value}\": must be greater than or equal to 0")
                continue
            parsed[part][str(name)] = q
    requests, limits = parsed["requests"], parsed["limits"]
    for name, limit in limits.items():
        requests.setdefault(name, limit)  # the API server's defaulting: a limit without a request is the request
    for name, request in requests.items():
        if name in limits and request > limits[name]:
            problems.append(f"{path}.requests: Invalid value: \"{_fmt(raw, 'requests', name, request)}\": must be "
                            f"less than or equal to {name} limit of {_fmt(raw, 'limits', name, limits[name])}")
    return Resources(requests, limits), problems


def _fmt(raw: Mapping[str, Any], part: str, name: str, q: Fraction) -> str:
    section = raw.get(part)
    if isinstance(section, Mapping) and name in section:
        return str(section[name])
    return str(q)


def milli_cpu_to_shares(m: int) -> int:
    if m == 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, m * SHARES_PER_CPU // 1000))


def milli_cpu_to_quota(m: int, period: int = CFS_PERIOD_US) -> int:
    """0 means "no quota" (-1 on v1, "max" on v2)."""
    if m == 0:
        return 0
    return max(MIN_QUOTA_US, m * period // 1000)


def shares_to_weight(shares: int) -> int:
    """cgroup v2 cpu.weight from v1 shares, the 2025 conversion (opencontainers/cgroups#20, runc >= 1.3.2)."""
    if shares == 0:
        return 0
    if shares <= MIN_SHARES:
        return 1
    if shares >= MAX_SHARES:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def qos_class(containers: Iterable[Resources]) -> QOSClass:
    """GetPodQOS over init and app containers, looking only at cpu and memory."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in containers:
        for name in COMPUTE:
            if c.requests.get(name, 0):
                requests[name] = requests.get(name, Fraction(0)) + c.requests[name]
            if c.limits.get(name, 0):
                limits[name] = limits.get(name, Fraction(0)) + c.limits[name]
        if not all(c.limits.get(name, 0) for name in COMPUTE):
            guaranteed = False
    if not requests and not limits:
        return QOSClass.BESTEFFORT
    if guaranteed and requests == limits:
        return QOSClass.GUARANTEED
    return QOSClass.BURSTABLE


def oom_score_adj(qos: QOSClass, memory_request: int, memory_capacity: int) -> int:
    """pkg/kubelet/qos/policy.go GetContainerOOMScoreAdjust."""
    if qos is QOSClass.GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos is QOSClass.BESTEFFORT:
        return BESTEFFORT_OOM_SCORE_ADJ
    adj = 1000 - (1000 * memory_request) // max(1, memory_capacity)
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adj == BESTEFFORT_OOM_SCORE_ADJ:
        return adj - 1
    return adj


@dataclass(frozen=True, slots=True)
class CgroupConfig:
    """What one cgroup gets: None leaves a knob as the kernel has it."""

    cpu_shares: int | None = None
    cpu_quota_us: int | None = None  # 0 = unlimited
    cpu_period_us: int = CFS_PERIOD_US
    memory_limit: int | None = None
    pids_max: int | None = None
    oom_group: bool = False


def container_config(r: Resources, *, v2: bool) -> CgroupConfig:
    """calculateLinuxResources: shares from the request (from the limit when only that is set), quota from the cpu
    limit, memory from the memory limit; memory.oom.group on v2."""
    req, lim = r.request_milli_cpu(), r.limit_milli_cpu()
    shares = milli_cpu_to_shares(lim if req == 0 and lim else req)
    memory = r.limit_memory() or None
    return CgroupConfig(cpu_shares=shares, cpu_quota_us=milli_cpu_to_quota(lim), memory_limit=memory, oom_group=v2)


def pod_totals(init: Iterable[Resources], app: Iterable[Resources], part: str) -> dict[str, Fraction]:
    """PodRequests / PodLimits: max(sum over app containers, each init container) per resource."""
    out: dict[str, Fraction] = {}
    for c in app:
        for k, v in getattr(c, part).items():
            out[k] = out.get(k, Fraction(0)) + v
    for c in init:
        for k, v in getattr(c, part).items():
            out[k] = max(out.get(k, Fraction(0)), v)
    return out


def pod_config(init: list[Resources], app: list[Resources], pids_limit: int | None) -> CgroupConfig:
    """ResourceConfigForPod: shares from summed requests; quota/memory for Guaranteed, and for Burstable only when
    every container declares that limit; BestEffort gets the minimum shares."""
    qos = qos_class([*init, *app])
    pids = pids_limit if pids_limit and pids_limit > 0 else None
    if qos is QOSClass.BESTEFFORT:
        return CgroupConfig(cpu_shares=MIN_SHARES, pids_max=pids)
    requests, limits = pod_totals(init, app, "requests"), pod_totals(init, app, "limits")
    shares = milli_cpu_to_shares(milli(requests.get("cpu", Fraction(0))))
    quota = milli_cpu_to_quota(milli(limits.get("cpu", Fraction(0))))
    memory = whole(limits.get("memory", Fraction(0))) or None
    if qos is QOSClass.BURSTABLE:
        everyone = [*init, *app]
        if not all(c.limits.get("cpu") for c in everyone):
            quota = 0
        if not all(c.limits.get("memory") for c in everyone):
            memory = None
    return CgroupConfig(cpu_shares=shares, cpu_quota_us=quota, memory_limit=memory, pids_max=pids)


def of_container(c: Container) -> Resources:
    """A parsed container's resources (the manifest loader has validated and defaulted them)."""
    requests = {k: parse_quantity(v) for k, v in c.requests}
    limits = {k: parse_quantity(v) for k, v in c.limits}
    return Resources({**limits, **requests}, limits)


def pod_qos(spec: PodSpec) -> QOSClass:
    return qos_class(of_container(c) for c in (*spec.init_containers, *spec.containers))
