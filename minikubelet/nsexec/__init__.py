"""The stdlib-only helper process: every setns, unshare, mount and fork happens here, never in the daemon.

Owns: the zygote (``zygote``: forks a fresh child per request), entering a pod and starting processes in it
(``spawn``), the pause (``pause.c``, and ``pause`` in Python as the fallback), in-namespace network set-up
(``netconf``) and the ctypes system calls (``_sys``).
May import: nothing of minikubelet outside nsexec (it runs as ``python -I -S``; keep it stdlib-only and fast).
"""
