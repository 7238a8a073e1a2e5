"""``python -m minikubelet.nsexec zygote FD PARENT_PID``: the stdlib-only helper entry point."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "zygote":
        sys.exit("usage: python -m minikubelet.nsexec zygote SOCKET_FD PARENT_PID")
    from minikubelet.nsexec.zygote import main

    main(sys.argv[2:])
