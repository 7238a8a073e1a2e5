"""The manifest directory and its files: from a file on disk to validated Pods, and back.

Owns: watching the directory (``inotify``, ``sources``: FileSource turns it into PodUpdate ADD/UPDATE/REMOVE),
parsing (``manifest``: YAML/JSON → ``pod.spec`` dataclasses, UID), the field schema and Kubernetes' validation rules
(``schema``, ``validation``), and the API's writes to the directory (``store``, with ``yamledit`` keeping comments).
May import: errors, fileio, pod.spec. Nothing here knows of running pods.
"""
