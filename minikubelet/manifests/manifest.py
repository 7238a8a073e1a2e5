"""Manifest bytes (YAML or JSON, one or more documents) → validated, defaulted ``Pod`` objects.

Pipeline per document: size/encoding checks → ``yaml.compose`` (libyaml) → alias-bomb and duplicate-key checks on
the node graph → construct → kind/apiVersion → strict type check against ``schema.POD`` (unknown fields rejected
with a did-you-mean) → defaults as the API server applies them → ``validation.validate_pod`` → ``Pod``. Every
problem is collected; each names the document (when the file has several), the YAML line when known, the field path
and what is allowed.

Accepted fields (the full table with comments is ``schema.py``):

- metadata: name, namespace, labels, annotations, uid (replaces the computed uid); ignored but echoed:
  creationTimestamp, resourceVersion, generation, selfLink, ownerReferences, finalizers, managedFields.
- spec: containers, initContainers, restartPolicy, terminationGracePeriodSeconds, activeDeadlineSeconds,
  nodeSelector, hostname, securityContext (runAsUser/runAsGroup/runAsNonRoot apply to every container),
  shareProcessNamespace (true or absent), volumes (emptyDir and hostPath: ``volumes.py``); ignored but echoed:
  nodeName (overwritten with this node), dnsPolicy, schedulerName, tolerations, priority, priorityClassName,
  preemptionPolicy, enableServiceLinks, automountServiceAccountToken, subdomain, topologySpreadConstraints, os,
  overhead.
- container: name, image, command, args, env (value or valueFrom.fieldRef with metadata.name, metadata.namespace,
  metadata.uid, spec.nodeName, status.podIP, status.hostIP), workingDir, ports (containerPort, name, protocol,
  hostPort, hostIP), securityContext (runAsUser, runAsGroup, runAsNonRoot; privileged, allowPrivilegeEscalation,
  readOnlyRootFilesystem, capabilities are recorded), volumeMounts (name, mountPath, subPath, readOnly,
  mountPropagation None), livenessProbe/readinessProbe/startupProbe (exec, httpGet, tcpSocket); ignored but
  echoed: imagePullPolicy, resources, resizePolicy, terminationMessagePath, terminationMessagePolicy.
- status: accepted and dropped (the API reports live status).

Rejected with a reason when set: metadata.generateName; spec.serviceAccountName, serviceAccount, imagePullSecrets,
affinity, ephemeralContainers, hostNetwork, hostPID, hostIPC, hostAliases, dnsConfig, runtimeClassName,
readinessGates, shareProcessNamespace: false; volume sources other than emptyDir and hostPath; container envFrom,
volumeDevices, lifecycle, restartPolicy; volumeMounts subPathExpr, recursiveReadOnly; env valueFrom other than
fieldRef; grpc probes. Any other field is an unknown field.

Deliberate differences from the kubelet's file source: every ``---`` document is read (not just the first), and pod
names are not suffixed with the node name. The uid hashes only the defaulted spec (see ``pod_uid``).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from typing import Any

import yaml

from minikubelet.cgroups.resources import parse_resources
from minikubelet.errors import ManifestError
from minikubelet.manifests.schema import POD, TypeChecker
from minikubelet.manifests.unenforced import NODE_FILESYSTEM
from minikubelet.manifests.validation import fmt_value, invalid, required, validate_pod
from minikubelet.manifests.volumes import default_volumes, validate_volumes_and_mounts
from minikubelet.pod.spec import Container, ContainerPort, EnvVar, HTTPHeader, Pod, PodSpec, Probe, RestartPolicy

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_MANIFEST_BYTES = 10 * 1024 * 1024
MAX_EXPANDED_NODES = 100_000  # per document, once YAML aliases are expanded (alias bombs)
MAX_NESTING = 100  # levels of maps and lists, for manifest files and API bodies alike (a Pod needs about 15)
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
CONFIG_HASH_ANNOTATION = "kubernetes.io/config.hash"
_KIND_MESSAGE = "minikubelet runs only kind Pod (apiVersion v1)"
_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
_PATH_PART = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


# --- public API ------------------------------------------------------------------------------------------------------


def load_pods(source: str, data: bytes, node_name: str) -> list[Pod]:
    """Parse a manifest file's bytes into pods; raise ``ManifestError`` listing every problem. Empty → ``[]``."""
    text = _decode(source, data)
    loader, nodes = _compose_all(source, text)
    multi = len(nodes) > 1
    pods: list[Pod] = []
    problems: list[str] = []
    defined: dict[str, int] = {}
    for number, node in enumerate(nodes, 1):
        prefix = f"document {number}: " if multi else ""
        pod, doc_problems = _load_document(loader, node, source, node_name)
        if pod is not None and pod.key in defined:
            dup = f'metadata.name: Duplicate value: "{pod.name}": pod {pod.key} is already defined'
            doc_problems.append(dup + (f" in document {defined[pod.key]}" if multi else ""))
            pod = None
        located = sorted((_locate(p, node) for p in doc_problems), key=_line_number)
        problems += [prefix + p for p in located]
        if pod is not None:
            defined[pod.key] = number
            pods.append(pod)
    if problems:
        raise ManifestError(source, problems)
    return pods


def pod_from_dict(obj: Any, source: str, node_name: str, *, strict: bool = True) -> Pod:
    """Validate and default one decoded object (e.g. a ``kubectl create`` body); ``strict=False`` drops unknowns."""
    pod, problems = _pod_from_object(obj, source, node_name, strict=strict)
    if pod is None:
        raise ManifestError(source, problems)
    return pod


def nesting_problem(obj: Any, limit: int = MAX_NESTING) -> str | None:
    """Why ``obj`` nests too deep for a manifest or request body (the same limit for both), or None; iterative, so a
    10,000-deep body is a clear error, never a RecursionError."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return f"the document nests maps and lists more than {limit} levels deep; a Pod needs far fewer"
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def pod_uid(node_name: str, source: str, namespace: str, name: str, spec_dict: dict[str, Any]) -> str:
    """MD5 hex over node, source, namespace/name and the canonical JSON of the defaulted spec only."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in (f"host:{node_name}", f"file:{source}", f"pod:{namespace}/{name}"):
        digest.update(part.encode() + b"\n")
    digest.update(json.dumps(spec_dict, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


# --- bytes and YAML --------------------------------------------------------------------------------------------------


def _decode(source: str, data: bytes) -> str:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            source, [f"file is {len(data)} bytes; manifests are limited to {MAX_MANIFEST_BYTES} bytes (10 MiB)"]
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in data:
        raise ManifestError(source, ["file contains NUL bytes: binary data, not a YAML or JSON manifest"])
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        problem = f"line {line}: not valid UTF-8 (byte 0x{byte} at offset {exc.start})"
        raise ManifestError(source, [problem + "; manifests must be UTF-8 YAML or JSON"]) from None


def _compose_all(source: str, text: str) -> tuple[_Loader, list[yaml.Node]]:
    loader = _Loader(text)
    nodes: list[yaml.Node] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                nodes.append(node)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [_yaml_error(exc, text)]) from None
    return loader, nodes


def _yaml_error(exc: yaml.YAMLError, text: str) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"invalid YAML: {exc}"
    mark = exc.problem_mark
    msg = f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        where = f"line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        msg += f" ({exc.context} at {where})"
    if exc.problem == "could not find expected ':'" and exc.context_mark is not None:
        msg += f"; is the ':' after the key on line {exc.context_mark.line + 1} missing?"
    lines = text.splitlines()[max(0, mark.line - 1) : mark.line + 1]
    if "tab" in (exc.problem or "") or any("\t" in ln[: len(ln) - len(ln.lstrip())] for ln in lines):
        msg += "; tabs are not allowed in YAML indentation, indent with spaces"
    return msg


def _node_problems(root: yaml.Node) -> list[str]:
    """Refuse alias bombs and recursive aliases (by expanded size, linear in the node count) and duplicate keys."""
    sizes: dict[int, int] = {}
    problems: list[str] = []
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1  # in progress: meeting it again below means a recursive alias
        if any(sizes.get(id(c)) == -1 for c in children):
            return [f"line {node.start_mark.line + 1}: YAML alias refers to itself (recursive document)"]
        stack.append((node, True))
        stack += [(c, False) for c in children if id(c) not in sizes]
        if isinstance(node, yaml.MappingNode):
            problems += _duplicate_keys(node)
    expanded = sizes[id(root)]
    if expanded > max(MAX_EXPANDED_NODES, len(sizes)):
        return [f"document expands to {expanded} YAML nodes through aliases (limit {MAX_EXPANDED_NODES}): alias bomb?"]
    return problems


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _duplicate_keys(node: yaml.MappingNode) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            continue
        line = key.start_mark.line + 1
        if key.value in first:
            problems.append(f'line {line}: mapping key "{key.value}" already defined at line {first[key.value]}')
        first.setdefault(key.value, line)
    return problems


def _locate(problem: str, root: yaml.Node) -> str:
    """Prefix ``line N: `` for the deepest node of the problem's field path (the text before the first ': ')."""
    if problem.startswith("line "):
        return problem
    path = problem.split(": ", 1)[0]
    node, line = root, root.start_mark.line + 1
    for match in _PATH_PART.finditer(path):
        part = match.group(1) if match.group(1) is not None else match.group(2)
        found = _child(node, part, bracket=match.group(1) is not None)
        if found is None:
            break
        node, line = found
    if isinstance(node, yaml.MappingNode):  # map-level errors (labels, annotations): find the offending entry
        line = _entry_line(node, problem) or line
    return f"line {line}: {problem}"


def _entry_line(node: yaml.MappingNode, problem: str) -> int | None:
    match = re.search(r': Invalid value: "((?:[^"\\]|\\.)*)"', problem)
    if match is None:
        return None
    for key, value in node.value:
        if match.group(1) in (getattr(key, "value", None), getattr(value, "value", None)):
            return int(key.start_mark.line) + 1
    return None


def _line_number(problem: str) -> int:
    match = re.match(r"line (\d+)", problem)
    return int(match.group(1)) if match else 0


def _child(node: yaml.Node, part: str, *, bracket: bool) -> tuple[yaml.Node, int] | None:
    if isinstance(node, yaml.SequenceNode) and bracket and part.isdigit() and int(part) < len(node.value):
        item = node.value[int(part)]
        return item, item.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value, key.start_mark.line + 1
    return None


def _load_document(loader: _Loader, node: yaml.Node, source: str, node_name: str) -> tuple[Pod | None, list[str]]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return None, []  # empty document
    problems = _node_problems(node)
    if problems:
        return None, problems
    try:
        obj = loader.construct_document(node)
    except yaml.YAMLError as exc:
        return None, [_yaml_error(exc, "")]
    return _pod_from_object(obj, source, node_name, strict=True)


# --- object → Pod ----------------------------------------------------------------------------------------------------


def _pod_from_object(obj: Any, source: str, node_name: str, *, strict: bool) -> tuple[Pod | None, list[str]]:
    if not isinstance(obj, dict):
        kind = "a list" if isinstance(obj, list) else f"a scalar ({fmt_value(obj)})"
        return None, [f"the document is {kind}, not a mapping; each YAML document must be one Pod object (kind: Pod)"]
    deep = nesting_problem(obj)
    if deep is not None:
        return None, [deep]
    problems = _kind_problems(obj)
    if any(p.startswith("kind:") for p in problems):
        return None, problems
    checker = TypeChecker(strict=strict)
    pod = checker.check(obj, POD, "")
    problems += checker.problems
    apply_defaults(pod, node_name)
    problems += [p for p in validate_pod(pod) + validate_volumes_and_mounts(pod["spec"])
                 if not _under(p.split(": ", 1)[0], checker.bad_paths)]
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(NODE_FILESYSTEM, "")).lower() == "true":  # no image to tell the user: refuse root now
        problems += _run_as_non_root_problems(pod["spec"])
    problems += [p for p in _resources_problems(pod["spec"]) if not _under(p.split(": ", 1)[0], checker.bad_paths)]
    if problems:
        return None, problems
    return _build_pod(pod, source, node_name), []


def _under(path: str, bad_paths: set[str]) -> bool:
    """Whether ``path`` is, or lies inside, a field the type checker already reported (avoids follow-on errors)."""
    return any(path == bad or path.startswith((bad + ".", bad + "[")) for bad in bad_paths)


def _kind_problems(obj: dict[str, Any]) -> list[str]:
    problems = []
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind is None:
        problems.append(required("kind", _KIND_MESSAGE))
    elif kind != "Pod":
        problems.append(f"kind: Unsupported value: {fmt_value(kind)}: {_KIND_MESSAGE}")
    if api_version is None:
        problems.append(required("apiVersion", 'must be "v1"'))
    elif api_version != "v1":
        problems.append(f'apiVersion: Unsupported value: {fmt_value(api_version)}: supported values: "v1"')
    return problems


def _run_as_non_root_problems(spec: dict[str, Any]) -> list[str]:
    """On the node's filesystem processes run as the daemon's user (root) unless runAsUser says otherwise: refuse a
    root pod marked non-root. On an image the container start checks the image's user (the kubelet's rule)."""
    pod_sc = spec.get("securityContext") or {}
    problems = []
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or []):
            sc = {**pod_sc, **(c.get("securityContext") or {})}
            if sc.get("runAsNonRoot") and not sc.get("runAsUser"):
                path = f"spec.{field}[{i}].securityContext.runAsNonRoot"
                problems.append(invalid(path, True, "the container would run as root (uid 0); set runAsUser"))
    return problems


def _resources_problems(spec: dict[str, Any]) -> list[str]:
    """Bad quantities and requests above limits, each naming its field; defaults requests to limits in place."""
    problems: list[str] = []
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or []):
            if not isinstance(c, dict):
                continue
            raw = c.get("resources")
            found = parse_resources(raw, f"spec.{field}[{i}].resources")[1]
            problems += found
            if not found and isinstance(raw, dict):
                limits = raw.get("limits") or {}
                if limits:
                    raw["requests"] = {**limits, **(raw.get("requests") or {})}
    return problems


def apply_defaults(pod: dict[str, Any], node_name: str) -> None:
    """Fill in what the API server (and the kubelet's file source) would, in place."""
    meta = pod.setdefault("metadata", {})
    meta["namespace"] = meta.get("namespace") or "default"
    spec = pod.setdefault("spec", {})
    spec["restartPolicy"] = spec.get("restartPolicy") or "Always"
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec["dnsPolicy"] = spec.get("dnsPolicy") or "ClusterFirst"
    spec["schedulerName"] = spec.get("schedulerName") or "default-scheduler"
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec["nodeName"] = node_name
    default_volumes(spec)
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(container)


def _default_container(c: dict[str, Any]) -> None:
    c["imagePullPolicy"] = c.get("imagePullPolicy") or _default_pull_policy(c.get("image", ""))
    c["terminationMessagePath"] = c.get("terminationMessagePath") or "/dev/termination-log"
    c["terminationMessagePolicy"] = c.get("terminationMessagePolicy") or "File"
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port["protocol"] = port.get("protocol") or "TCP"
    for var in c.get("env") or []:
        field_ref = (var.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref["apiVersion"] = field_ref.get("apiVersion") or "v1"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.get(kind) is not None:
            _default_probe(c[kind])


def _default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(probe: dict[str, Any]) -> None:
    for field, default in _PROBE_DEFAULTS.items():
        probe[field] = probe.get(field) or default
    http = probe.get("httpGet")
    if http is not None:
        http["path"] = http.get("path") or "/"
        http["scheme"] = http.get("scheme") or "HTTP"


# --- defaulted dict → dataclasses ------------------------------------------------------------------------------------


def _build_pod(pod: dict[str, Any], source: str, node_name: str) -> Pod:
    meta, spec = pod["metadata"], pod["spec"]
    name, namespace = meta["name"], meta["namespace"]
    uid = meta.get("uid") or pod_uid(node_name, source, namespace, name, spec)
    labels, annotations = dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})
    meta["uid"] = uid
    meta["annotations"] = {**annotations, CONFIG_SOURCE_ANNOTATION: "file", CONFIG_HASH_ANNOTATION: uid}
    pod.pop("status", None)
    return Pod(
        namespace=namespace,
        name=name,
        uid=uid,
        spec=_build_spec(spec),
        source=source,
        labels=labels,
        annotations=annotations,
        manifest=pod,
    )


def _build_spec(spec: dict[str, Any]) -> PodSpec:
    pod_sc = spec.get("securityContext") or {}
    return PodSpec(
        containers=tuple(_build_container(c, pod_sc) for c in spec["containers"]),
        init_containers=tuple(_build_container(c, pod_sc) for c in spec.get("initContainers") or []),
        restart_policy=RestartPolicy(spec["restartPolicy"]),
        termination_grace_period_seconds=spec["terminationGracePeriodSeconds"],
        node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
        hostname=spec.get("hostname") or None,
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
    )


def _build_container(c: dict[str, Any], pod_sc: dict[str, Any]) -> Container:
    sc = {**pod_sc, **(c.get("securityContext") or {})}
    caps = (c.get("securityContext") or {}).get("capabilities") or {}
    return Container(
        name=c["name"],
        image=c["image"],
        command=tuple(c.get("command") or ()),
        args=tuple(c.get("args") or ()),
        env=tuple(_build_env(v) for v in c.get("env") or []),
        working_dir=c.get("workingDir") or None,
        ports=tuple(_build_port(p) for p in c.get("ports") or []),
        run_as_user=sc.get("runAsUser"),
        run_as_group=sc.get("runAsGroup"),
        liveness_probe=_build_probe(c.get("livenessProbe")),
        readiness_probe=_build_probe(c.get("readinessProbe")),
        startup_probe=_build_probe(c.get("startupProbe")),
        run_as_non_root=sc.get("runAsNonRoot"),
        privileged=bool(sc.get("privileged")),
        allow_privilege_escalation=sc.get("allowPrivilegeEscalation"),
        read_only_root_filesystem=bool(sc.get("readOnlyRootFilesystem")),
        capabilities_add=tuple(caps.get("add") or ()),
        capabilities_drop=tuple(caps.get("drop") or ()),
        requests=_quantities(c, "requests"),
        limits=_quantities(c, "limits"),
        stdin=bool(c.get("stdin")),
        stdin_once=bool(c.get("stdinOnce")),
        tty=bool(c.get("tty")),
    )


def _quantities(c: dict[str, Any], part: str) -> tuple[tuple[str, str], ...]:
    section = (c.get("resources") or {}).get(part) or {}
    return tuple(sorted((str(k), str(v)) for k, v in section.items()))


def _build_env(var: dict[str, Any]) -> EnvVar:
    field_ref = (var.get("valueFrom") or {}).get("fieldRef")
    field_path = field_ref["fieldPath"] if field_ref else None
    return EnvVar(name=var["name"], value=var.get("value", ""), field_path=field_path)


def _build_port(port: dict[str, Any]) -> ContainerPort:
    return ContainerPort(
        container_port=port["containerPort"],
        name=port.get("name") or None,
        protocol=port["protocol"],
        host_port=port.get("hostPort") or None,
    )


def _build_probe(probe: dict[str, Any] | None) -> Probe | None:
    if probe is None:
        return None
    handler = next(h for h in ("exec", "httpGet", "tcpSocket") if probe.get(h) is not None)
    action = probe[handler]
    return Probe(
        handler=handler,
        port=action.get("port"),
        host=action.get("host") or None,
        path=action.get("path", "/"),
        scheme=action.get("scheme", "HTTP"),
        http_headers=tuple(HTTPHeader(h["name"], h.get("value", "")) for h in action.get("httpHeaders") or []),
        command=tuple(action.get("command") or ()),
        initial_delay_seconds=probe.get("initialDelaySeconds") or 0,
        period_seconds=probe["periodSeconds"],
        timeout_seconds=probe["timeoutSeconds"],
        success_threshold=probe["successThreshold"],
        failure_threshold=probe["failureThreshold"],
        termination_grace_period_seconds=probe.get("terminationGracePeriodSeconds"),
    )
