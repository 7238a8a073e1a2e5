"""OpenAPI v3 for ``/openapi/v3/api/v1``: Pod and Node schemas generated from the project's own Pod schema.

``kubectl explain`` renders these (field names, types, required fields, descriptions), ``kubectl create``/``apply``
read the Pod PATCH operation's ``fieldValidation`` parameter (so validation stays on the server, contract §4), and
client-side ``kubectl apply`` computes its strategic merge patches from the ``x-kubernetes-patch-*`` and list-type
metadata here instead of its built-in types. So every list of the Pod schema carries the merge key and strategy of
Kubernetes' ``core/v1`` types: a wrong key would change what apply sends.

The schema is built once from ``manifests.schema.POD`` (what minikubelet reads): fields it refuses say so in their
description, fields it accepts but does not enforce say that too.
"""

from __future__ import annotations

import functools
from typing import Any

from minikubelet import __version__
from minikubelet.manifests import schema as s

CORE = "io.k8s.api.core.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# schema dict (by identity) -> component name, as the API server names them
_NAMED: list[tuple[dict[str, s.Schema], str, str]] = [
    (s.POD, CORE + "Pod", "A Pod: one or more containers that share network, IPC, UTS and process namespaces and "
     "run together on this node. minikubelet runs pods from files in its manifest directory; kubectl create, apply, "
     "replace, patch and delete write those files."),
    (s.POD_SPEC, CORE + "PodSpec", "The desired behaviour of a pod: its containers and how they run."),
    (s.CONTAINER, CORE + "Container", "One application container of the pod."),
    (s.PROBE, CORE + "Probe", "A health check run by the kubelet against a container: exactly one of exec, httpGet "
     "or tcpSocket, with its timing and thresholds."),
    (s.HTTP_GET, CORE + "HTTPGetAction", "An HTTP GET from the node to the pod; a status of 200-399 is success."),
    (s.ENV_VAR, CORE + "EnvVar", "An environment variable of a container."),
    (s.CONTAINER_SECURITY_CONTEXT, CORE + "SecurityContext", "Security options of one container; they override the "
     "pod's securityContext."),
    (s.POD_SECURITY_CONTEXT, CORE + "PodSecurityContext", "Security options that apply to every container of the "
     "pod unless a container sets its own."),
    (s.TOLERATION, CORE + "Toleration", "A toleration of a node taint (accepted; this node has no taints)."),
    (s.METADATA, META + "ObjectMeta", "Standard object metadata: name, namespace, labels, annotations, uid."),
]

def _merged(key: str, *map_keys: str, strategy: str = "merge") -> dict[str, Any]:
    """A list merged by ``key`` (patchStrategy/patchMergeKey) and a +listType=map keyed by ``map_keys``."""
    return {"x-kubernetes-patch-strategy": strategy, "x-kubernetes-patch-merge-key": key,
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(map_keys or (key,))}


_ATOMIC: dict[str, Any] = {"x-kubernetes-list-type": "atomic"}

# (component, field) -> strategic merge metadata of Kubernetes' core/v1 types (types.go patchStrategy/patchMergeKey
# tags and +listType/+listMapKey markers). Lists not named here are atomic.
_LISTS: dict[tuple[str, str], dict[str, Any]] = {
    ("PodSpec", "containers"): _merged("name"),
    ("PodSpec", "initContainers"): _merged("name"),
    ("PodSpec", "ephemeralContainers"): _merged("name"),
    ("PodSpec", "volumes"): _merged("name", strategy="merge,retainKeys"),
    ("PodSpec", "imagePullSecrets"): _merged("name"),
    ("PodSpec", "hostAliases"): _merged("ip"),
    ("PodSpec", "schedulingGates"): _merged("name"),
    ("PodSpec", "topologySpreadConstraints"): _merged("topologyKey", "topologyKey", "whenUnsatisfiable"),
    ("PodSpec", "resourceClaims"): _merged("name", strategy="merge,retainKeys"),
    ("PodSpec", "tolerations"): _ATOMIC,
    ("PodSpec", "readinessGates"): _ATOMIC,
    ("Container", "ports"): _merged("containerPort", "containerPort", "protocol"),
    ("Container", "env"): _merged("name"),
    ("Container", "volumeMounts"): _merged("mountPath"),
    ("Container", "volumeDevices"): _merged("devicePath"),
    ("Container", "envFrom"): _ATOMIC,
    ("Container", "resizePolicy"): _ATOMIC,
    ("ObjectMeta", "finalizers"): {"x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set"},
    ("ObjectMeta", "ownerReferences"): _merged("uid"),
}

_REQUIRED: dict[str, list[str]] = {
    "PodSpec": ["containers"], "Container": ["name"], "EnvVar": ["name"], "HTTPGetAction": ["port"],
    "Toleration": [],
}

# (component, field) -> description, in minikubelet's words
_FIELDS: dict[tuple[str, str], str] = {
    ("Pod", "apiVersion"): "The schema version of this object: always v1 for a Pod.",
    ("Pod", "kind"): "The kind of this object: Pod.",
    ("Pod", "metadata"): "Name, namespace, labels and annotations of the pod.",
    ("Pod", "spec"): "What the pod should run: its containers, restart policy, node selector and more.",
    ("Pod", "status"): "What the pod is doing now (set by minikubelet, read only): phase, conditions, IPs and the "
                       "state of every container.",
    ("ObjectMeta", "name"): "The pod's name, unique in its namespace (a DNS-1123 subdomain).",
    ("ObjectMeta", "namespace"): "The namespace of the pod (default: default). Namespaces exist as soon as a pod "
                                 "names one.",
    ("ObjectMeta", "labels"): "Key/value pairs to organise and select pods (kubectl get -l, --show-labels). Changing "
                              "only labels never restarts a pod.",
    ("ObjectMeta", "annotations"): "Key/value notes for people and tools; not used to select objects.",
    ("ObjectMeta", "uid"): "The pod's unique id. minikubelet computes it from the spec, so an edit of the spec makes "
                           "a new pod.",
    ("ObjectMeta", "generateName"): "Not supported in manifest files: set metadata.name.",
    ("PodSpec", "containers"): "The application containers of the pod; at least one. They share localhost and see "
                               "each other's processes.",
    ("PodSpec", "initContainers"): "Containers run one after another, each to completion, before the application "
                                   "containers start.",
    ("PodSpec", "restartPolicy"): "When to restart containers that exit: Always (default), OnFailure or Never.",
    ("PodSpec", "terminationGracePeriodSeconds"): "Seconds between the stop signal and SIGKILL when the pod is "
                                                  "deleted (default 30).",
    ("PodSpec", "nodeSelector"): "Labels this node must have for the pod to run (kubectl label node); until they "
                                 "match the pod stays Pending.",
    ("PodSpec", "hostname"): "The pod's hostname (default: the pod's name).",
    ("PodSpec", "nodeName"): "The node the pod runs on: always this node (set by minikubelet).",
    ("PodSpec", "securityContext"): "Security options for every container of the pod.",
    ("PodSpec", "shareProcessNamespace"): "minikubelet always shares the process namespace between a pod's "
                                          "containers; true or unset.",
    ("Container", "name"): "The container's name, unique in the pod (a DNS-1123 label).",
    ("Container", "image"): "The container image reference, e.g. nginx:1.14.",
    ("Container", "imagePullPolicy"): "When to pull the image: Always, IfNotPresent or Never (default: Always for "
                                      ":latest or no tag, else IfNotPresent).",
    ("Container", "command"): "The program to run and its arguments; replaces the image's ENTRYPOINT. $(VAR) "
                              "expands from the container's env.",
    ("Container", "args"): "Arguments to the command; replace the image's CMD.",
    ("Container", "env"): "Environment variables of the container.",
    ("Container", "workingDir"): "The container's working directory.",
    ("Container", "ports"): "Ports the container listens on (informational; the pod IP is reachable from the node).",
    ("Container", "securityContext"): "Security options of this container.",
    ("Container", "livenessProbe"): "A failing liveness probe kills the pod and recreates it.",
    ("Container", "readinessProbe"): "A failing readiness probe marks the container not ready; nothing restarts.",
    ("Container", "startupProbe"): "Until the startup probe succeeds, liveness and readiness probes wait.",
    ("Container", "stdin"): "Keep a stdin open for the container (kubectl run -i, attach).",
    ("Container", "tty"): "Give the container a terminal (kubectl run -t).",
    ("Probe", "exec"): "Run a command in the container; exit code 0 is success.",
    ("Probe", "httpGet"): "An HTTP GET to the pod IP; a status of 200-399 is success.",
    ("Probe", "tcpSocket"): "A TCP connect to the pod IP; a connection is success.",
    ("Probe", "initialDelaySeconds"): "Seconds after the container starts before the first probe.",
    ("Probe", "periodSeconds"): "Seconds between probes (default 10).",
    ("Probe", "timeoutSeconds"): "Seconds a probe may take (default 1).",
    ("Probe", "successThreshold"): "Consecutive successes to count as passing after a failure (default 1).",
    ("Probe", "failureThreshold"): "Consecutive failures to count as failing (default 3).",
    ("HTTPGetAction", "path"): "The path to request (default /).",
    ("HTTPGetAction", "port"): "The port number or the name of a container port.",
    ("HTTPGetAction", "host"): "The host to connect to (default: the pod IP).",
    ("HTTPGetAction", "scheme"): "HTTP (default) or HTTPS (certificates are not checked).",
    ("HTTPGetAction", "httpHeaders"): "Extra request headers.",
    ("EnvVar", "name"): "The variable's name.",
    ("EnvVar", "value"): "The variable's value; $(OTHER) expands from variables defined before it.",
    ("EnvVar", "valueFrom"): "Take the value from a field of the pod (fieldRef).",
    ("SecurityContext", "runAsUser"): "The user id the container's process runs as.",
    ("SecurityContext", "runAsGroup"): "The group id the container's process runs as.",
    ("SecurityContext", "runAsNonRoot"): "Refuse to start the container if it would run as root.",
    ("SecurityContext", "readOnlyRootFilesystem"): "Mount the container's root filesystem read-only.",
}

_NOT_ENFORCED = "Accepted and kept, but minikubelet does not act on it."

# fields manifests/schema.py accepts without acting on them (its "# ignored" comments)
_IGNORED: set[tuple[str, str]] = {
    ("PodSpec", "activeDeadlineSeconds"), ("PodSpec", "dnsPolicy"), ("PodSpec", "schedulerName"),
    ("PodSpec", "tolerations"), ("PodSpec", "priority"), ("PodSpec", "priorityClassName"),
    ("PodSpec", "preemptionPolicy"), ("PodSpec", "enableServiceLinks"), ("PodSpec", "automountServiceAccountToken"),
    ("PodSpec", "subdomain"), ("PodSpec", "topologySpreadConstraints"), ("PodSpec", "os"), ("PodSpec", "overhead"),
    ("PodSecurityContext", "fsGroup"), ("PodSecurityContext", "fsGroupChangePolicy"),
    ("PodSecurityContext", "supplementalGroups"), ("PodSecurityContext", "supplementalGroupsPolicy"),
    ("PodSecurityContext", "sysctls"), ("Container", "resizePolicy"), ("Container", "terminationMessagePath"),
    ("Container", "terminationMessagePolicy"), ("SecurityContext", "privileged"),
    ("SecurityContext", "allowPrivilegeEscalation"), ("SecurityContext", "capabilities"),
    ("SecurityContext", "procMount"),
}
_IGNORED_ANYWHERE = {"seccompProfile", "seLinuxOptions", "appArmorProfile", "windowsOptions"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": "#/components/schemas/" + name}


class _Builder:
    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self._names = {id(d): (name, doc) for d, name, doc in _NAMED}

    def component(self, schema: dict[str, s.Schema]) -> str:
        name, doc = self._names[id(schema)]
        if name not in self.components:
            self.components[name] = {}  # reserve first: schemas may nest themselves
            self.components[name] = self.object(schema, name.rsplit(".", 1)[1], doc)
        return name

    def object(self, schema: dict[str, s.Schema], owner: str, doc: str = "") -> dict[str, Any]:
        props = {field: self.field(sub, owner, field) for field, sub in schema.items()}
        out: dict[str, Any] = {"type": "object", "properties": props}
        if doc:
            out["description"] = doc
        required = _REQUIRED.get(owner)
        if required:
            out["required"] = required
        return out

    def field(self, schema: s.Schema, owner: str, field: str) -> dict[str, Any]:
        out = self.value(schema, f"{owner}.{field}")
        parts = [_FIELDS.get((owner, field), "")]
        if isinstance(schema, s.Rejected):
            parts.append(f"minikubelet refuses this field when it is set: {schema.reason}.")
        elif (owner, field) in _IGNORED or (field in _IGNORED_ANYWHERE):
            parts.append(_NOT_ENFORCED)
        desc = " ".join(p for p in parts if p)
        if desc:
            out["description"] = desc
        out.update(_LISTS.get((owner, field), {}))
        return out

    def value(self, schema: s.Schema, where: str) -> dict[str, Any]:
        if isinstance(schema, dict):
            if id(schema) in self._names:
                return {"allOf": [_ref(self.component(schema))]}
            return self.object(schema, where.rsplit(".", 1)[-1][:1].upper() + where.rsplit(".", 1)[-1][1:])
        if isinstance(schema, list):
            return {"type": "array", "items": self.value(schema[0], where)}
        if isinstance(schema, s.Rejected):
            field = where.rsplit(".", 1)[-1]
            return {"type": "array", "items": {"type": "object"}} if field in _REJECTED_LISTS else {"type": "object"}
        if schema == s.INT_OR_STR:
            self.components[INT_OR_STRING] = {"format": "int-or-string", "description": "A number, or a name (for "
                                              "a port: the name of a container port)."}
            return {"allOf": [_ref(INT_OR_STRING)]}
        out = dict(_SCALARS[schema])
        enum = _ENUMS.get(where)
        if enum:
            out["enum"] = enum
        return out


INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_REJECTED_LISTS = {"volumes", "volumeMounts", "volumeDevices", "imagePullSecrets", "ephemeralContainers", "hostAliases",
                   "envFrom", "readinessGates"}
_ENUMS: dict[str, list[str]] = {
    "PodSpec.restartPolicy": ["Always", "Never", "OnFailure"],
    "Container.imagePullPolicy": ["Always", "IfNotPresent", "Never"],
    "Ports.protocol": ["SCTP", "TCP", "UDP"],
    "HTTPGetAction.scheme": ["HTTP", "HTTPS"],
    "PodSpec.dnsPolicy": ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
}

_SCALARS: dict[str, dict[str, Any]] = {
    s.STR: {"type": "string"},
    s.INT: {"type": "integer", "format": "int64"},
    s.BOOL: {"type": "boolean"},
    s.STR_MAP: {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
    s.STR_LIST: {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"},
    s.ANY: {"type": "object"},
}

_NODE_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "apiVersion": ("The schema version of this object: v1.", {"type": "string"}),
    "kind": ("The kind of this object: Node.", {"type": "string"}),
    "metadata": ("The node's name (the hostname unless --node-name says otherwise) and labels; kubectl label node "
                 "changes are kept in <data-dir>/node-labels.json.", {"allOf": [_ref(META + "ObjectMeta")]}),
    "spec": ("The node's spec (empty: this node takes no taints and has no podCIDR of its own in the API).",
             {"type": "object"}),
    "status": ("What the node is now: capacity, allocatable resources, conditions, addresses, system info, "
               "images.", {"allOf": [_ref(CORE + "NodeStatus")]}),
}

_NODE_STATUS: dict[str, tuple[str, dict[str, Any]]] = {
    "capacity": ("The node's total resources (cpu, memory, pods, ephemeral-storage).",
                 {"type": "object", "additionalProperties": {"type": "string"}}),
    "allocatable": ("The resources available to pods: capacity minus what is reserved.",
                    {"type": "object", "additionalProperties": {"type": "string"}}),
    "conditions": ("The node's conditions (Ready).", {"type": "array", "items": {"type": "object"},
                                                      "x-kubernetes-patch-strategy": "merge",
                                                      "x-kubernetes-patch-merge-key": "type",
                                                      "x-kubernetes-list-type": "map",
                                                      "x-kubernetes-list-map-keys": ["type"]}),
    "addresses": ("The node's addresses (InternalIP, Hostname).",
                  {"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-strategy": "merge",
                   "x-kubernetes-patch-merge-key": "type", "x-kubernetes-list-type": "map",
                   "x-kubernetes-list-map-keys": ["type"]}),
    "daemonEndpoints": ("Where the kubelet listens.", {"type": "object"}),
    "nodeInfo": ("Kernel, OS image, kubelet and runtime versions, architecture.", {"type": "object"}),
    "images": ("Images stored on this node.", {"type": "array", "items": {"type": "object"},
                                                "x-kubernetes-list-type": "atomic"}),
}


def _node_components() -> dict[str, dict[str, Any]]:
    def obj(fields: dict[str, tuple[str, dict[str, Any]]], doc: str) -> dict[str, Any]:
        return {"type": "object", "description": doc,
                "properties": {k: dict(schema, description=desc) for k, (desc, schema) in fields.items()}}

    node = obj(_NODE_FIELDS, "This node: the one machine minikubelet runs pods on.")
    node["x-kubernetes-group-version-kind"] = [{"group": "", "kind": "Node", "version": "v1"}]
    return {CORE + "Node": node, CORE + "NodeStatus": obj(_NODE_STATUS, "The observed state of the node.")}


def _op(kind: str) -> dict[str, Any]:
    return {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
            "parameters": [{"name": "fieldValidation", "in": "query",
                            "description": "Strict (default for kubectl), Warn or Ignore: what to do with unknown "
                                           "or duplicate fields.", "schema": {"type": "string"}}]}


@functools.cache
def document() -> dict[str, Any]:
    """The whole ``/openapi/v3/api/v1`` document (built once; the schema does not change at run time)."""
    b = _Builder()
    pod = b.component(s.POD)
    b.components[pod]["x-kubernetes-group-version-kind"] = [{"group": "", "kind": "Pod", "version": "v1"}]
    components = dict(sorted({**b.components, **_node_components()}.items()))
    return {
        "openapi": "3.0.0",
        "info": {"title": "minikubelet", "version": __version__},
        "paths": {
            "/api/v1/namespaces/{namespace}/pods": {"post": _op("Pod")},
            "/api/v1/namespaces/{namespace}/pods/{name}": {"get": _op("Pod"), "patch": _op("Pod"),
                                                           "put": _op("Pod")},
            "/api/v1/nodes/{name}": {"get": _op("Node"), "patch": _op("Node")},
        },
        "components": {"schemas": components},
    }
