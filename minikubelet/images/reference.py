"""Image references, normalised as Docker and containerd do (distribution's ``reference`` + ``splitDockerDomain``).

``nginx:1.14`` is ``docker.io/library/nginx:1.14``, ``user/app`` is ``docker.io/user/app:latest``; a first
component with a ``.`` or ``:``, ``localhost``, or an uppercase letter is a registry host. Short names always
mean docker.io (containerd's rule), never a search. A digest pin wins over a tag for fetching; the tag is kept for
display. Pure functions, no imports of the package: the manifest validator uses it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_DOMAIN_ONLY = re.compile(rf"^{_DOMAIN}$")
_ANCHORED_ID = re.compile(r"^[a-f0-9]{64}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


class InvalidReference(ValueError):
    """A reference that cannot be parsed; ``str()`` is distribution's message (``invalid reference format``)."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference: ``domain``/``path`` with a tag (``latest`` when neither tag nor digest) and/or digest."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``docker.io/library/nginx``."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> str:
        """``docker.io/library/nginx@sha256:…`` (the imageID form)."""
        return f"{self.name}@{digest}"


def parse(image: str) -> Reference:
    """Normalise ``image`` (ParseNormalizedNamed + the kubelet's default tag); raises InvalidReference."""
    if not image:
        raise InvalidReference("invalid reference format")
    if _ANCHORED_ID.match(image):
        raise InvalidReference(f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(image)
    name_only = remainder.split("@", 1)[0]
    colon = name_only.rfind(":")
    if colon > name_only.rfind("/"):
        name_only = name_only[:colon]
    if name_only.lower() != name_only:
        # the path must be lowercase (an uppercase first component is taken as a domain by the split above)
        raise InvalidReference("invalid reference format: repository name must be lowercase")
    full = f"{domain}/{remainder}"
    m = _REFERENCE.match(full)
    if m is None:
        raise InvalidReference("invalid reference format")
    if len(m.group("name")) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    digest = m.group("digest") or ""
    if digest.startswith("sha256:") and not _SHA256.match(digest):
        raise InvalidReference("invalid checksum digest format")
    path = m.group("name")[len(domain) + 1 :]
    tag = m.group("tag") or ""
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i]
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1 :]
        if not _DOMAIN_ONLY.match(domain):
            raise InvalidReference("invalid reference format")
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def invalid_image_message(image: str) -> str | None:
    """The kubelet's InvalidImageName message for ``image``, or None when it parses."""
    try:
        parse(image)
    except InvalidReference as e:
        return f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {e}'
    return None


def default_pull_policy(image: str) -> str:
    """k/k SetDefaults_Container: Always for ``:latest`` or no tag (and no digest), else IfNotPresent."""
    try:
        ref = parse(image)
    except InvalidReference:
        return "IfNotPresent"
    return "Always" if ref.tag == DEFAULT_TAG else "IfNotPresent"
