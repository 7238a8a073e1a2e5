"""A container's process from its image config and its spec (pure): argv, environment, working directory, user.

containerd's rules (``internal/cri/opts/spec_opts.go`` ``WithProcessArgs``, ``container_create.go``), as the
kubelet's runtime applies them:

| spec                  | process             |
|-----------------------|---------------------|
| neither command/args  | Entrypoint + Cmd    |
| command only          | command             |
| args only             | Entrypoint + args   |
| both                  | command + args      |

``$(VAR)`` in command and args expands from the container's ``env`` only (not the image's), as the kubelet does.
The environment is ``HOSTNAME``, then the image's ``Env``, then the container's ``env`` (later wins), with the
default ``PATH`` when neither sets one. Imports pod.env and images.content only.
"""

from __future__ import annotations

from dataclasses import dataclass

from minikubelet.images.content import ImageConfig
from minikubelet.pod.env import DEFAULT_PATH, expand
from minikubelet.pod.spec import Container


@dataclass(frozen=True, slots=True)
class Process:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    image_user: str  # the image's User ("" = root), applied unless securityContext sets runAsUser/runAsGroup


def argv_of(container: Container, config: ImageConfig, container_env: dict[str, str]) -> list[str]:
    entrypoint = list(config.entrypoint or ())
    if entrypoint == [""]:
        entrypoint = []
    command = [expand(a, container_env) for a in container.command]
    args = [expand(a, container_env) for a in container.args]
    if command:
        return command + args
    if args:
        return entrypoint + args
    return entrypoint + list(config.cmd or ())


def env_of(hostname: str, config: ImageConfig, container_env: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {"HOSTNAME": hostname}
    for item in config.env:
        name, sep, value = item.partition("=")
        if name and sep:
            env[name] = value
    env.update(container_env)
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def process_of(container: Container, config: ImageConfig, hostname: str, container_env: dict[str, str]) -> Process:
    """``container_env`` is the container's own ``env`` resolved (pod/env.py ``build_env`` without defaults)."""
    return Process(
        argv=argv_of(container, config, container_env),
        env=env_of(hostname, config, container_env),
        cwd=container.working_dir or config.working_dir or "/",
        image_user=config.user,
    )
