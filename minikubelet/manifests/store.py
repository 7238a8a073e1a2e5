"""The API's writer of the manifest directory, the single source of truth (issue 4, point 1).

``create``/``apply`` write ``<manifests>/<namespace>_<name>.yaml``; ``label``/``apply`` rewrite the file that defines
the pod (also a hand-written, multi-document one); ``delete`` removes the file or the pod's document from it. Every
write is atomic (temp file in the same directory, fsync, rename), so the FileSource never reads half a file. The
FileSource then loads the change like any edit by hand. Rewriting a hand-written YAML file keeps its comments, key
order, quoting and indentation and leaves its other documents byte for byte (``yamledit``); only if that result
would not read back as intended (checked with PyYAML, as the FileSource reads) is the file dumped plainly, with a
warning. JSON files keep their key order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from minikubelet.fileio import write_atomic
from minikubelet.manifests import yamledit

log = logging.getLogger(__name__)

# Server-populated fields never written to a manifest file.
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "selfLink", "managedFields",
                   "deletionTimestamp", "deletionGracePeriodSeconds")
SERVER_ANNOTATIONS = ("kubernetes.io/config.source", "kubernetes.io/config.hash")
MAX_FILENAME = 255


class StoreError(Exception):
    """The manifest file cannot be read or rewritten (message says which file and why)."""


def clean_document(obj: dict[str, Any]) -> dict[str, Any]:
    """A pod object as it belongs in a manifest file: no status, no server-set metadata."""
    doc: dict[str, Any] = json.loads(json.dumps(obj))
    doc.pop("status", None)
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_METADATA:
            meta.pop(key, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for key in SERVER_ANNOTATIONS:
                annotations.pop(key, None)
            if not annotations:
                meta.pop("annotations", None)
    spec = doc.get("spec")
    if isinstance(spec, dict):
        spec.pop("nodeName", None)
    return doc


def _matches(doc: Any, namespace: str, name: str) -> bool:
    if not isinstance(doc, dict):
        return False
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return False
    return meta.get("name") == name and (meta.get("namespace") or "default") == namespace


class ManifestStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).absolute()

    def path_for(self, namespace: str, name: str) -> Path:
        """``<ns>_<name>.yaml``; overlong names are shortened with a hash so the file name stays ≤ 255 bytes."""
        base = f"{namespace}_{name}"
        if len(base) + 5 > MAX_FILENAME:
            digest = hashlib.sha256(base.encode()).hexdigest()[:12]
            base = f"{base[:200]}-{digest}"
        return self.directory / f"{base}.yaml"

    def create(self, namespace: str, name: str, doc: dict[str, Any]) -> Path:
        """Write a new pod file; raises FileExistsError if the file is already there."""
        path = self.path_for(namespace, name)
        if os.path.lexists(path):
            raise FileExistsError(str(path))
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _dump([doc], json_file=False), 0o644)
        log.info("Pod manifest written file=%s pod=%s/%s", path, namespace, name)
        return path

    def _text(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8-sig")
        except OSError as e:
            raise StoreError(f"cannot read the manifest file {path}: {e.strerror}") from None

    @staticmethod
    def _parse(path: Path, text: str) -> list[Any]:
        try:
            return [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            raise StoreError(f"the manifest file {path} does not parse ({e}); fix it by hand first") from None

    def read(self, path: Path) -> list[Any]:
        return self._parse(path, self._text(path))

    def document(self, path: Path, namespace: str, name: str) -> dict[str, Any]:
        """The pod's own document in its file (as written, without defaults)."""
        for doc in self.read(path):
            if _matches(doc, namespace, name):
                return dict(doc)
        raise StoreError(f"pod {namespace}/{name} is no longer defined in {path}")

    def replace(self, path: Path, namespace: str, name: str, doc: dict[str, Any]) -> None:
        """Rewrite ``path`` with the pod's document replaced (other documents kept, in order, with comments)."""
        text = self._text(path)
        docs = self._parse(path, text)
        index = next((i for i, d in enumerate(docs) if _matches(d, namespace, name)), None)
        if index is None:
            raise StoreError(f"pod {namespace}/{name} is no longer defined in {path}")
        new = yamledit.ordered_like(docs[index], doc)
        wanted = [*docs[:index], new, *docs[index + 1:]]
        edited = None if path.suffix == ".json" else yamledit.replace_document(text, index, new)
        write_atomic(path, _render(path, edited, wanted), _mode(path))
        log.info("Pod manifest rewritten file=%s pod=%s/%s documents=%d", path, namespace, name, len(docs))

    def remove(self, path: Path, namespace: str, name: str) -> None:
        """Delete the pod from its file: unlink a file holding only it, else rewrite the file without it."""
        try:
            text = self._text(path)
            docs = self._parse(path, text)
        except StoreError:
            text, docs = "", []
        index = next((i for i, d in enumerate(docs) if _matches(d, namespace, name)), None)
        rest = [d for i, d in enumerate(docs) if i != index]
        if rest and index is not None:
            edited = None if path.suffix == ".json" else yamledit.remove_document(text, index)
            write_atomic(path, _render(path, edited, rest), _mode(path))
            log.info("Pod removed from its manifest file=%s pod=%s/%s documents=%d", path, namespace, name, len(rest))
            return
        if rest:
            raise StoreError(f"pod {namespace}/{name} is no longer defined in {path}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("Pod manifest removed file=%s pod=%s/%s", path, namespace, name)


def _render(path: Path, edited: str | None, wanted: list[Any]) -> bytes:
    """The format-keeping edit if it reads back as ``wanted`` (with PyYAML, like the FileSource), else a dump."""
    json_file = path.suffix == ".json"
    if edited is not None:
        try:
            if yamledit.same([d for d in yaml.safe_load_all(edited) if d is not None], wanted):
                return edited.encode()
        except yaml.YAMLError:
            pass
    if not json_file:
        log.warning("Rewriting the manifest without its comments and layout, as they could not be kept file=%s",
                    path)
    return _dump(wanted, json_file=json_file)


def _mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode) & ~0o022
    except OSError:
        return 0o644


def _dump(docs: list[Any], *, json_file: bool) -> bytes:
    if json_file and len(docs) == 1:
        return json.dumps(docs[0], indent=2).encode() + b"\n"
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096).encode()
