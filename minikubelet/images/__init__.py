"""OCI images: references, the registry client and its configuration, the content store, unpacked layers.

Owns: image references (``reference``), what an image is once stored (``content``: config, layers, chain IDs),
the registry client (aiohttp), ``registries.yaml``, the content-addressed store under ``<data-dir>/images/``,
unpacked layers shared per chain ID, garbage collection, and the per-pod pull decisions (policy, back-off, events).
May import: errors, fileio, timefmt, version. Never pod, api or runtime: the pod worker reaches images through
the ``ImageProvider`` seam in pod/context.py.
"""
