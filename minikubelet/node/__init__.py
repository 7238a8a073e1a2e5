"""The node: its Node object, labels and nodeSelector admission, and how people reach its API.

Owns: ``node`` (default and user labels persisted in <data-dir>/node-labels.json, the v1 Node object, admission
of a pod's nodeSelector) and ``kubeconfig`` (token, TLS certificate, the kubeconfig file).
May import: errors, settings, timefmt, fileio, pod.spec, and the package version.
"""
