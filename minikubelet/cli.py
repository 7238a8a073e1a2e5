"""``minikubelet run|reset|kubeconfig|get``: map flags to Settings and start the Daemon (uvicorn's main.py)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Any

from minikubelet import __version__
from minikubelet.cgroups.admission import parse_reserved
from minikubelet.errors import MinikubeletError
from minikubelet.node.kubeconfig import (
    is_loopback,
    kubeconfig_path,
    parse_group,
    parse_mode,
    write_user_kubeconfig,
)
from minikubelet.settings import Settings, parse_listen

log = logging.getLogger("minikubelet")


def _common(p: argparse.ArgumentParser) -> None:
    d = Settings()
    p.add_argument("--manifests", type=Path, default=d.manifests, metavar="DIR",
                   help="directory of Pod YAML/JSON files (default: %(default)s)")
    p.add_argument("--data-dir", type=Path, default=d.data_dir, metavar="DIR", help="default: %(default)s")
    p.add_argument("--run-dir", type=Path, default=d.run_dir, metavar="DIR", help="default: %(default)s")
    p.add_argument("--log-dir", type=Path, default=d.log_dir, metavar="DIR", help="pod logs (default: %(default)s)")
    p.add_argument("--node-name", default="", metavar="NAME", help="default: the hostname")
    # default None: a given value is told apart from the default (reset ignores one the record contradicts)
    p.add_argument("--bridge", default=None, metavar="NAME", help=f"pod bridge (default: {d.bridge})")
    p.add_argument("--pod-cidr", default=None, metavar="CIDR", help=f"default: {d.pod_cidr}")
    p.add_argument("--listen", default="127.0.0.1:10250", metavar="HOST:PORT", help="API (default: %(default)s)")
    p.add_argument("--rescan-interval", type=float, default=d.rescan_interval, metavar="SECONDS",
                   help="full manifest rescan period (default: %(default)s)")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                   help="serve HTTPS with this PEM certificate (required when --listen is beyond loopback)")
    p.add_argument("--tls-key", type=Path, default=None, metavar="FILE", help="the PEM private key of --tls-cert")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--write-kubeconfig-mode", default="600", metavar="MODE",
                   help="octal mode of <data-dir>/kubeconfig, as k3s (default: %(default)s; whoever can read it "
                        "can use the API)")
    p.add_argument("--write-kubeconfig-group", default=None, metavar="GROUP",
                   help="group of <data-dir>/kubeconfig (with a mode such as 640: that group's users run kubectl)")
    p.add_argument("--registries", type=Path, default=d.registries, metavar="FILE",
                   help="k3s-format registries.yaml: mirrors, auth, tls (default: %(default)s, optional)")
    p.add_argument("--disable-default-registry-endpoint", action="store_true",
                   help="pull only from the mirrors of registries.yaml, never from the registry itself")
    p.add_argument("--image-gc-high-threshold", type=int, default=d.image_gc_high_threshold, metavar="PERCENT",
                   help="disk usage that starts image garbage collection (default: %(default)s)")
    p.add_argument("--image-gc-low-threshold", type=int, default=d.image_gc_low_threshold, metavar="PERCENT",
                   help="disk usage image garbage collection frees down to (default: %(default)s)")
    p.add_argument("--cgroup-root", default=d.cgroup_root, metavar="PATH",
                   help="pods' cgroups go under PATH/kubepods on every hierarchy (default: %(default)s)")
    p.add_argument("--pod-pids-limit", type=int, default=d.pod_pids_limit, metavar="N",
                   help="most processes per pod (the kubelet's podPidsLimit; default: %(default)s, unlimited)")
    p.add_argument("--max-pods", type=int, default=d.max_pods, metavar="N",
                   help="pods this node admits at once, as the kubelet's flag (default: %(default)s)")
    for flag in ("--system-reserved", "--kube-reserved"):
        p.add_argument(flag, default="", metavar="cpu=Q,memory=Q",
                       help="taken off the node's allocatable, as the kubelet's flag (e.g. cpu=500m,memory=1Gi)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minikubelet", description="Run Kubernetes pods as real Linux processes.")
    p.add_argument("--version", action="version", version=f"minikubelet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("run", help="run the daemon"))
    _common(sub.add_parser(
        "reset", help="stop every pod of this daemon and remove all it created",
        description="Stop the daemon of these directories and every pod it runs, and remove what it created. Only "
                    "the directory flags matter: the bridge and pod CIDR are read from what the daemon recorded "
                    "(a --bridge or --pod-cidr that contradicts the record is ignored with a warning); the other "
                    "flags are accepted and ignored."))
    kc = sub.add_parser("kubeconfig", help="print the path of the kubeconfig the daemon writes (use as KUBECONFIG)")
    kc.add_argument("--data-dir", type=Path, default=Settings().data_dir, metavar="DIR", help="default: %(default)s")
    kc.add_argument("--user", default=None, metavar="NAME",
                    help="write the kubeconfig into NAME's ~/.kube/config (merged, owned by NAME; run as root)")
    get = sub.add_parser(
        "get", help="print the daemon's pods, events or refused manifests (JSON, read with the API token)",
        description="Read the daemon's debug endpoints /pods, /events or /manifests/errors with the bearer token in "
                    "<data-dir>/token (every endpoint but /healthz needs it, loopback included).")
    get.add_argument("what", choices=sorted(GET_PATHS), help="what to print")
    get.add_argument("--data-dir", type=Path, default=Settings().data_dir, metavar="DIR", help="default: %(default)s")
    get.add_argument("--listen", default="127.0.0.1:10250", metavar="HOST:PORT",
                     help="the daemon's --listen (default: %(default)s)")
    images = sub.add_parser("images", help="pull, list and remove images in <data-dir>/images (like crictl)")
    isub = images.add_subparsers(dest="images_command", required=True)
    for name, help_ in (("pull", "pull an image as the daemon would"), ("list", "list stored images"),
                        ("rm", "remove images (their blobs no other image needs go too)"),
                        ("prune", "remove blobs no image needs")):
        ip = isub.add_parser(name, help=help_)
        _common(ip)
        if name in ("pull", "rm"):
            ip.add_argument("image", nargs="+" if name == "rm" else None, help="image reference, e.g. nginx:1.14")
    return p


def images_command(args: argparse.Namespace) -> int:
    from minikubelet.images import tool
    from minikubelet.images.registries import RegistriesError
    from minikubelet.images.registries import load as load_registries

    store = tool.store_at(args.data_dir.absolute())
    if args.images_command == "list":
        return tool.list_images(store)
    if args.images_command == "rm":
        return tool.remove(store, args.image)
    if args.images_command == "prune":
        return tool.prune(store)
    try:
        regs = load_registries(args.registries, required=args.registries != Settings().registries,
                               disable_default_endpoint=args.disable_default_registry_endpoint)
    except RegistriesError as e:
        raise SystemExit(f"minikubelet: --registries: {e}") from None
    return asyncio.run(tool.pull(store, regs, args.image))


GET_PATHS = {"pods": "/pods", "events": "/events", "manifest-errors": "/manifests/errors"}


def get_command(args: argparse.Namespace) -> None:
    """``minikubelet get``: one GET of a debug endpoint with the token, printed as indented JSON."""
    import json
    import urllib.error
    import urllib.request

    token_path = args.data_dir.absolute() / "token"
    try:
        token = token_path.read_text().strip()
    except OSError as e:
        raise SystemExit(f"minikubelet: cannot read the API token {token_path}: {e.strerror or e} (the daemon "
                         "writes it at start; give the daemon's --data-dir, and run as root)") from None
    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        raise SystemExit(f"minikubelet: {e}") from None
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{GET_PATHS[args.what]}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"minikubelet: {url} answered {e.code} {e.reason}") from None
    except (OSError, ValueError) as e:
        raise SystemExit(f"minikubelet: cannot read {url}: {e} (is the daemon running with --listen "
                         f"{args.listen}?)") from None
    print(json.dumps(body, indent=2))


def settings_from(args: argparse.Namespace) -> Settings:
    d = Settings()
    bridge = d.bridge if args.bridge is None else args.bridge
    given = frozenset(flag for flag, value in (("--bridge", args.bridge), ("--pod-cidr", args.pod_cidr))
                      if value is not None)
    try:
        cidr = d.pod_cidr if args.pod_cidr is None else ipaddress.IPv4Network(args.pod_cidr, strict=True)
    except ValueError as e:
        raise SystemExit(f"minikubelet: --pod-cidr {args.pod_cidr!r}: {e}") from None
    if not 1 <= len(bridge) <= 15:
        raise SystemExit(f"minikubelet: --bridge {bridge!r}: a Linux interface name has 1 to 15 characters")
    dirs = {"manifests": args.manifests.absolute(), "data_dir": args.data_dir.absolute(),
            "run_dir": args.run_dir.absolute(), "log_dir": args.log_dir.absolute()}
    root = str(args.cgroup_root)
    if not root.startswith("/") or ".." in root.split("/") or root.strip("/") == "":
        raise SystemExit(f"minikubelet: --cgroup-root {root!r}: give an absolute path below the cgroup mounts, "
                         "e.g. /minikubelet")
    if args.pod_pids_limit == 0 or args.pod_pids_limit < -1:
        raise SystemExit(f"minikubelet: --pod-pids-limit {args.pod_pids_limit}: give a positive number, or -1 for "
                         "unlimited")
    if args.max_pods < 1:
        raise SystemExit(f"minikubelet: --max-pods {args.max_pods}: give a positive number (the kubelet's default is "
                         "110)")
    for flag, value in (("--system-reserved", args.system_reserved), ("--kube-reserved", args.kube_reserved)):
        try:
            parse_reserved(flag, value)
        except ValueError as e:
            raise SystemExit(f"minikubelet: {e}") from None
    dirs = {**dirs, "cgroup_root": root, "pod_pids_limit": args.pod_pids_limit,
            "system_reserved": args.system_reserved, "kube_reserved": args.kube_reserved, "max_pods": args.max_pods}
    if args.command == "reset":  # reset serves no API: --listen and TLS are ignored, not checked
        return Settings(**dirs, node_name=args.node_name, bridge=bridge, pod_cidr=cidr, given=given)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        raise SystemExit(f"minikubelet: {e}") from None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("minikubelet: give both --tls-cert and --tls-key, or neither")
    try:
        kubeconfig_mode = parse_mode(args.write_kubeconfig_mode)
        kubeconfig_group = None if args.write_kubeconfig_group is None else parse_group(args.write_kubeconfig_group)
    except ValueError as e:
        raise SystemExit(f"minikubelet: {e}") from None
    if args.tls_cert is None and not is_loopback(host):
        raise SystemExit(f"minikubelet: --listen {args.listen} is beyond loopback: give --tls-cert and --tls-key "
                         "(HTTPS) so the API token never crosses the network in clear")
    return Settings(
        **dirs, node_name=args.node_name, bridge=bridge, pod_cidr=cidr, given=given,
        listen_host=host, listen_port=port, rescan_interval=args.rescan_interval,
        tls_cert=args.tls_cert.absolute() if args.tls_cert else None,
        tls_key=args.tls_key.absolute() if args.tls_key else None,
        kubeconfig_mode=kubeconfig_mode, kubeconfig_group=kubeconfig_group,
        **image_settings(args),
    )


def image_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The image flags, checked (GC thresholds as the kubelet: 0..100 and low < high)."""
    high, low = args.image_gc_high_threshold, args.image_gc_low_threshold
    if not 0 <= high <= 100 or not 0 <= low <= 100:
        raise SystemExit("minikubelet: --image-gc-high-threshold and --image-gc-low-threshold are percentages 0-100")
    if low >= high and high != 100:
        raise SystemExit(f"minikubelet: --image-gc-low-threshold {low} must be less than --image-gc-high-threshold "
                         f"{high}")
    return {"registries": args.registries.absolute(),
            "disable_default_registry_endpoint": args.disable_default_registry_endpoint,
            "image_gc_high_threshold": high, "image_gc_low_threshold": low}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "kubeconfig" and args.user is not None:
        try:
            target = write_user_kubeconfig(args.data_dir.absolute(), args.user)
        except MinikubeletError as e:
            raise SystemExit(f"minikubelet: {e}") from None
        print(target)
        print(f"minikubelet: {args.user} can now run kubectl (context minikubelet) with no KUBECONFIG",
              file=sys.stderr)
        return
    if args.command == "kubeconfig":
        path = kubeconfig_path(args.data_dir.absolute())
        print(path)
        if not path.exists():
            print(f"minikubelet: {path} does not exist yet; it is written when the daemon starts", file=sys.stderr)
        return
    if args.command == "get":
        get_command(args)
        return
    if args.command == "images":
        sys.exit(images_command(args))
    if os.geteuid() != 0:
        raise SystemExit("minikubelet: needs root (it creates namespaces, veths and a bridge): run it with sudo")
    settings = settings_from(args)
    from minikubelet.daemon import Daemon

    daemon = Daemon(settings)
    try:
        if args.command == "run":
            asyncio.run(daemon.run())
        elif args.command == "reset":
            asyncio.run(daemon.reset())
    except MinikubeletError as e:
        log.error("%s", e)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
