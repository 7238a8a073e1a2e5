"""The distribution v2 registry client (aiohttp): resolve a reference, fetch and verify its blobs into the store.

Auth: the ``WWW-Authenticate`` challenge of a 401 picks Bearer (token from the realm with service and scope,
anonymous or Basic to the realm, cached until ``expires_in``) or Basic. Manifests are asked for with the four
manifest media types; an index is narrowed to the node's platform. Every manifest, config and blob is verified
against its digest and size while streaming; layers download in parallel (3 per image), into ``ingest/`` partials
resumed with ``Range``; a blob becomes visible only once verified. aiohttp drops ``Authorization`` on redirects to
another origin (blob storage). Timeouts: connect, and a stall timeout on every read instead of a total one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from minikubelet.images.content import ImageContent
from minikubelet.images.reference import Reference
from minikubelet.images.store import ImageStore, RefRecord, content_from_blobs

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, "*/*"])
MAX_MANIFEST = 4 * 1048 * 1048  # containerd's MaxManifestSize
LAYER_PARALLELISM = 3  # containerd's max_concurrent_downloads
CHUNK = 1 << 20
_CHALLENGE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"|(\w+)=([^,\s]+)')


class RegistryError(Exception):
    """A pull failed; the message is what the user sees after ``Failed to pull image "x": ``."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to pull a registry's repositories from (a mirror or the registry itself)."""

    url: str  # scheme://host[:port]
    username: str = ""
    password: str = ""
    identity_token: str = ""
    ssl: Any = None  # an ssl.SSLContext, False to skip verification, None for the default


def default_endpoint(domain: str) -> Endpoint:
    """The registry itself: docker.io is registry-1.docker.io; loopback with a port speaks http (containerd)."""
    if domain == "docker.io":
        return Endpoint("https://registry-1.docker.io")
    host = domain.rsplit(":", 1)[0]
    if host in ("localhost", "127.0.0.1", "[::1]") and ":" in domain and not domain.endswith(":443"):
        return Endpoint(f"http://{domain}")
    return Endpoint(f"https://{domain}")


def node_platform() -> tuple[str, str, str]:
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return "linux", arch, "v8" if arch == "arm64" else ""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE.finditer(rest):
        if m.group(1):
            params[m.group(1).lower()] = m.group(2).replace('\\"', '"')
        else:
            params[m.group(3).lower()] = m.group(4)
    return scheme.lower(), params


@dataclass
class Progress:
    """Bytes done of total for one pull (the manager logs it every few seconds; the CLI draws a bar)."""

    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)


class RegistryClient:
    """One aiohttp session for every pull; tokens cached per (realm, service, scope) until they expire."""

    def __init__(self, connect_timeout: float = 15.0, stall_timeout: float = 60.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=stall_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._auth: dict[tuple[str, str], str] = {}  # (endpoint url, repo) -> Authorization header
        self._blob_flights: dict[str, asyncio.Future[None]] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False)
        return self._session

    # --- auth ---------------------------------------------------------------------------------------------
    async def _authorize(self, ep: Endpoint, repo: str, challenge: str) -> None:
        scheme, params = parse_challenge(challenge)
        basic = ""
        if ep.username:
            basic = "Basic " + base64.b64encode(f"{ep.username}:{ep.password}".encode()).decode()
        if scheme == "basic":
            if not basic:
                raise RegistryError(f"{ep.url} asks for a username and password (Basic) and none is configured")
            self._auth[(ep.url, repo)] = basic
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{ep.url}: unsupported authentication challenge {challenge!r}")
        scope = params.get("scope") or f"repository:{repo}:pull"
        key = (params["realm"], params.get("service", ""), scope)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            self._auth[(ep.url, repo)] = f"Bearer {cached[0]}"
            return
        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        headers = {"Authorization": basic} if basic else {}
        async with self._sess().get(params["realm"], params=query, headers=headers, ssl=ep.ssl) as r:
            body = await r.read()
            if r.status != 200:
                raise RegistryError(
                    f"failed to fetch token from {params['realm']}: {r.status} {r.reason}: {body[:200]!r}"
                )
        doc = json.loads(body)
        token = doc.get("access_token") or doc.get("token")
        if not token:
            raise RegistryError(f"token server {params['realm']} answered without a token")
        expires = float(doc.get("expires_in") or 60)
        self._tokens[key] = (token, time.monotonic() + max(expires - 10, 1))
        self._auth[(ep.url, repo)] = f"Bearer {token}"

    async def _get(
        self, ep: Endpoint, repo: str, path: str, headers: dict[str, str], method: str = "GET"
    ) -> aiohttp.ClientResponse:
        """A request with auth; retried once after a 401 challenge. The caller releases the response."""
        url = f"{ep.url}/v2/{repo}/{path}"
        for attempt in range(2):
            h = dict(headers)
            auth = self._auth.get((ep.url, repo))
            if auth:
                h["Authorization"] = auth
            try:
                r = await self._sess().request(method, url, headers=h, ssl=ep.ssl)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise RegistryError(f"failed to do request: {method} {url}: {e or type(e).__name__}") from e
            if r.status == 401 and attempt == 0 and "WWW-Authenticate" in r.headers:
                challenge = r.headers["WWW-Authenticate"]
                r.release()
                await self._authorize(ep, repo, challenge)
                continue
            return r
        return r

    @staticmethod
    async def _error(r: aiohttp.ClientResponse, what: str) -> RegistryError:
        body = await r.read()
        detail = f"{r.status} {r.reason}"
        try:
            errs = json.loads(body).get("errors") or []
            if errs:
                detail += ": " + "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs)
        except (ValueError, AttributeError):
            pass
        r.release()
        if r.status in (401, 403):
            return RegistryError(
                f"{what}: pull access denied, repository does not exist or may require authorization: {detail}"
            )
        if r.status == 404:
            return RegistryError(f"{what}: not found")
        return RegistryError(f"{what}: unexpected status {detail}")

    # --- manifests ----------------------------------------------------------------------------------------
    async def _manifest(self, ep: Endpoint, repo: str, obj: str, what: str) -> tuple[str, str, bytes]:
        r = await self._get(ep, repo, f"manifests/{obj}", {"Accept": ACCEPT})
        if r.status != 200:
            raise await self._error(r, what)
        try:
            body = await r.content.read(MAX_MANIFEST + 1)
        finally:
            r.release()
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"{what}: manifest larger than {MAX_MANIFEST} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if obj.startswith("sha256:") and digest != obj:
            raise RegistryError(f"{what}: manifest digest mismatch: got {digest}, want {obj}")
        media = json.loads(body).get("mediaType") or r.headers.get("Content-Type", "").split(";")[0]
        return digest, media, body

    # --- blobs --------------------------------------------------------------------------------------------
    async def fetch_blob(
        self, ep: Endpoint, repo: str, digest: str, size: int, store: ImageStore, progress: Progress
    ) -> None:
        """Download ``digest`` into the store once, however many pulls want it at the same time."""
        if store.has_blob(digest):
            progress.done += size
            return
        flight = self._blob_flights.get(digest)
        if flight is not None:
            await asyncio.shield(flight)
            progress.done += size
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._blob_flights[digest] = fut
        try:
            await self._download(ep, repo, digest, size, store, progress)
            fut.set_result(None)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._blob_flights[digest]

    async def _download(
        self, ep: Endpoint, repo: str, digest: str, size: int, store: ImageStore, progress: Progress
    ) -> None:
        partial = store.partial_path(digest)
        for _attempt in range(3):
            h = hashlib.sha256()
            have = partial.stat().st_size if partial.exists() else 0
            if have > size:
                partial.unlink()
                have = 0
            if have:
                with open(partial, "rb") as f:  # hashlib state cannot be saved: re-hash what is there
                    while chunk := await asyncio.to_thread(f.read, CHUNK * 8):
                        h.update(chunk)
            headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
            r = await self._get(ep, repo, f"blobs/{digest}", headers)
            if r.status not in (200, 206):
                raise await self._error(r, f"failed to fetch blob {digest}")
            if have and r.status == 200:  # Range ignored: start again
                h, have = hashlib.sha256(), 0
            progress.done += have
            got = have
            try:
                with open(partial, "ab" if have else "wb") as f:
                    async for chunk in r.content.iter_chunked(CHUNK):
                        got += len(chunk)
                        if got > size:
                            raise RegistryError(f"blob {digest} is larger than its descriptor's {size} bytes")
                        h.update(chunk)
                        f.write(chunk)
                        progress.done += len(chunk)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                log.warning("Blob download broke, resuming digest=%s bytes=%d error=%s", digest, got, e)
                progress.done -= got
                continue
            finally:
                r.release()
            if got != size:
                progress.done -= got
                log.warning("Blob download ended short, resuming digest=%s bytes=%d size=%d", digest, got, size)
                continue
            actual = "sha256:" + h.hexdigest()
            if actual != digest:
                partial.unlink(missing_ok=True)
                raise RegistryError(f"blob {digest} failed verification: its content hashes to {actual}")
            await asyncio.to_thread(store.commit_partial, digest)
            return
        raise RegistryError(f"failed to fetch blob {digest}: the download broke three times")

    # --- pull ---------------------------------------------------------------------------------------------
    async def pull(
        self,
        ref: Reference,
        endpoints: list[Endpoint],
        store: ImageStore,
        progress: Progress | None = None,
        on_endpoint: Callable[[Endpoint], None] | None = None,
    ) -> ImageContent:
        """Pull ``ref`` from the first endpoint that has it; the last endpoint's error is raised."""
        progress = progress or Progress()
        errors: list[str] = []
        for ep in endpoints:
            if on_endpoint is not None:
                on_endpoint(ep)
            try:
                return await self._pull_from(ep, ref, store, progress)
            except RegistryError as e:
                errors.append(f"{e} (endpoint {ep.url})" if len(endpoints) > 1 else str(e))
                log.info("Pull from endpoint failed image=%s endpoint=%s error=%s", ref, ep.url, e)
        if not errors:
            raise RegistryError(f"no endpoint to pull {ref} from (mirrors none, default endpoint disabled)")
        raise RegistryError(f'failed to pull and unpack image "{ref}": ' + "; ".join(errors))

    async def _pull_from(self, ep: Endpoint, ref: Reference, store: ImageStore, progress: Progress) -> ImageContent:
        repo = ref.path
        what = f'failed to resolve reference "{ref}"'
        top_digest, media, body = await self._manifest(ep, repo, ref.object, what)
        await asyncio.to_thread(store.put_blob, top_digest, body)
        manifest_digest = top_digest
        if media in INDEX_TYPES:
            manifest_digest = self._select(json.loads(body))
            _, media, body = await self._manifest(ep, repo, manifest_digest, what)
            await asyncio.to_thread(store.put_blob, manifest_digest, body)
        if media not in MANIFEST_TYPES:
            raise RegistryError(f"media type {media!r} is not supported; please rebuild the image as OCI or schema 2")
        manifest = json.loads(body)
        cfg = manifest["config"]
        layers = manifest.get("layers") or []
        for layer in layers:
            if "encrypted" in layer.get("mediaType", ""):
                raise RegistryError(f"layer {layer['digest']} is encrypted ({layer['mediaType']}): not supported")
        progress.total = int(cfg["size"]) + sum(int(d["size"]) for d in layers)
        await self.fetch_blob(ep, repo, cfg["digest"], int(cfg["size"]), store, progress)
        sem = asyncio.Semaphore(LAYER_PARALLELISM)

        async def one(d: dict[str, Any]) -> None:
            async with sem:
                await self.fetch_blob(ep, repo, d["digest"], int(d["size"]), store, progress)

        await asyncio.gather(*(one(d) for d in layers))
        rec = RefRecord(
            manifest_digest=manifest_digest,
            repo_digest=ref.with_digest(top_digest),
            config_digest=cfg["digest"],
            pulled_at=time.time(),
            last_used=time.time(),
        )
        content = await asyncio.to_thread(content_from_blobs, store, str(ref), rec)
        await asyncio.to_thread(store.set_ref, str(ref), rec)
        return content

    @staticmethod
    def _select(index: dict[str, Any]) -> str:
        want_os, want_arch, want_variant = node_platform()
        for d in index.get("manifests") or []:
            p = d.get("platform") or {}
            if d.get("mediaType") not in MANIFEST_TYPES or p.get("os") != want_os:
                continue
            if p.get("architecture") != want_arch:
                continue
            if want_variant and p.get("variant") not in (None, "", want_variant):
                continue
            return str(d["digest"])
        raise RegistryError("no match for platform in manifest: not found")
