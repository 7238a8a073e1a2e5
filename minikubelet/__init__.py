"""minikubelet: a real Linux mini-kubelet. This module must stay import-light (nsexec imports the package)."""

__version__ = "0.1.0"
