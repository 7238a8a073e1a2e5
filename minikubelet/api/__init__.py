"""The HTTP API kubectl talks to (aiohttp): discovery, pods, nodes, events, logs, exec, port-forward, metrics.

Owns: ``app`` (ApiServer: routes, middlewares, the snapshot cache, daemon hooks), the route modules (``pods``,
``podpatch``, ``nodes``, ``events``, ``access``, ``metrics``, ``logs``, ``exec``, ``portforward``), their shared
context (``context``: ApiContext, which ApiServer implements, so no route module imports ``app``), and the wire
helpers (``errors``, ``tables``, ``selectors``, ``watch``, ``pollwatch``, ``patch``, ``jsonpatch``, ``spdy``,
``auth``, ``listener``, ``discovery``).
May import: anything below it (pod, node, manifests, events, probe, runtime, errors); never daemon or cli.
"""
