"""Comment-preserving edits of hand-written YAML manifest files (ruamel.yaml round trip).

The file is cut into its ``---`` documents as text. Only the document that changes is parsed again with ruamel.yaml
and updated in place: values that stay equal keep their node (and with it comments, quoting, flow style and key
order), new keys go last, list items are matched by equality or by their merge key (``name``, ``containerPort``…).
Every other document, and any text between documents, is kept byte for byte. The caller checks the result by
parsing it with PyYAML (which the FileSource uses) and falls back to a plain dump when it does not read back equal;
``None`` from these functions means "cannot keep the format here".
"""

from __future__ import annotations

import io
import re
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

_SEPARATOR = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)
_SEQ_ITEM = re.compile(r"^( *)- ")
_IDENTITY_KEYS = ("name", "containerPort", "mountPath", "ip", "type", "conditionType")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


def segments(text: str) -> list[str]:
    """The text cut before every ``---`` line (the first piece may hold no separator, or only comments)."""
    cuts = [m.start() for m in _SEPARATOR.finditer(text) if m.start() > 0]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _documents(pieces: list[str]) -> list[tuple[int, Any]] | None:
    """(piece index, document) for every non-empty document, or None if a piece is not one whole document."""
    found: list[tuple[int, Any]] = []
    for i, piece in enumerate(pieces):
        try:
            docs = [d for d in yaml.safe_load_all(piece) if d is not None]
        except yaml.YAMLError:
            return None
        if len(docs) > 1:
            return None
        found.extend((i, d) for d in docs)
    return found


def replace_document(text: str, index: int, new: Any) -> str | None:
    """``text`` with its ``index``-th (non-empty) document changed to ``new``, keeping comments and layout."""
    pieces = segments(text)
    docs = _documents(pieces)
    if docs is None or index >= len(docs):
        return None
    where, old = docs[index]
    piece = pieces[where]
    y = _yaml_for(piece)
    try:
        data = y.load(piece)
        data = update(data, old, new)
        out = io.StringIO()
        y.dump(data, out)
    except (RuamelError, ValueError, TypeError, KeyError):
        return None
    rendered = out.getvalue()
    if not rendered.endswith("\n"):
        rendered += "\n"
    pieces[where] = rendered
    return "".join(pieces)


def remove_document(text: str, index: int) -> str | None:
    """``text`` without its ``index``-th (non-empty) document; the other documents are kept as they are."""
    pieces = segments(text)
    docs = _documents(pieces)
    if docs is None or index >= len(docs):
        return None
    del pieces[docs[index][0]]
    rest = "".join(pieces)
    if rest and not rest.endswith("\n"):
        rest += "\n"
    return rest


def _yaml_for(piece: str) -> YAML:
    """A round-trip YAML that writes the piece back with the indentation it was written with."""
    mapping, offset = _guess_indent(piece)
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    y.explicit_start = piece.startswith("---")
    return y


def _guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, block sequence dash offset) as used in the text; (2, 0) if it does not say."""
    mapping, offset = 0, -1
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        item = _SEQ_ITEM.match(line)
        if item and offset < 0 and previous.rstrip().endswith(":") and not previous.lstrip().startswith("- "):
            offset = max(0, len(item.group(1)) - (len(previous) - len(previous.lstrip(" "))))
        elif not item and indent > 0 and mapping == 0 and previous.rstrip().endswith(":"):
            mapping = indent - (len(previous) - len(previous.lstrip(" ")))
        previous = line
    return (mapping if mapping > 0 else 2), (offset if offset >= 0 else 0)


def same(a: Any, b: Any) -> bool:
    """Equal as YAML values: like ``==`` but ``True`` differs from ``1`` and ``1.0`` from ``1``."""
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def update(node: Any, old: Any, new: Any) -> Any:
    """The round-trip ``node`` (which reads as ``old``) changed in place so that it reads as ``new``."""
    if same(old, new):
        return node
    if isinstance(node, CommentedMap) and isinstance(old, dict) and isinstance(new, dict) and len(node) == len(old):
        keys = dict(zip(old.keys(), node.keys(), strict=True))
        for k in old:
            if k not in new:
                del node[keys[k]]
        for k, v in new.items():
            if k in keys:
                node[keys[k]] = update(node[keys[k]], old[k], v)
            else:
                node[fresh_key(k)] = fresh(v)
        return node
    if isinstance(node, CommentedSeq) and isinstance(old, list) and isinstance(new, list) and len(node) == len(old):
        return _update_seq(node, old, new)
    if isinstance(node, ScalarString) and isinstance(new, str) and "\n" not in new:
        return type(node)(new)
    return fresh(new)


def _identity(item: Any) -> tuple[str, Any] | None:
    if isinstance(item, dict):
        for key in _IDENTITY_KEYS:
            if key in item and not isinstance(item[key], (dict, list)):
                return key, item[key]
    return None


def _update_seq(node: CommentedSeq, old: list[Any], new: list[Any]) -> CommentedSeq:
    """Items that stay keep their node and comments; changed items are matched by merge key, then position."""
    used: set[int] = set()
    picks: list[int | None] = []
    for i, value in enumerate(new):
        j = next((j for j, o in enumerate(old) if j not in used and same(o, value)), None)
        if j is None and _identity(value) is not None:
            j = next((j for j, o in enumerate(old) if j not in used and _identity(o) == _identity(value)), None)
        if j is None and i < len(old) and i not in used and isinstance(value, dict) and isinstance(old[i], dict) \
                and _identity(old[i]) is None:
            j = i
        if j is not None:
            used.add(j)
        picks.append(j)
    items = [fresh(v) if j is None else update(node[j], old[j], v) for j, v in zip(picks, new, strict=True)]
    comments = {i: node.ca.items[j] for i, j in enumerate(picks) if j is not None and j in node.ca.items}
    list.__delitem__(node, slice(None))
    list.extend(node, items)
    node.ca.items.clear()
    node.ca.items.update(comments)
    return node


def needs_quotes(value: str) -> bool:
    """Would PyYAML (YAML 1.1, what the FileSource reads with) take this plain scalar for something else?"""
    return bool(_RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) != _STR_TAG)  # type: ignore[no-untyped-call]


def fresh_key(key: Any) -> Any:
    return DoubleQuotedScalarString(key) if isinstance(key, str) and needs_quotes(key) else key


def fresh(value: Any) -> Any:
    """A plain JSON value as round-trip nodes, quoting strings that YAML 1.1 would read as bool/number/null."""
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[fresh_key(k)] = fresh(v)
        return m
    if isinstance(value, list):
        return CommentedSeq(fresh(v) for v in value)
    if isinstance(value, str) and not isinstance(value, ScalarString) and needs_quotes(value):
        return DoubleQuotedScalarString(value)
    return value


def ordered_like(old: Any, new: Any) -> Any:
    """``new`` with its mapping keys in ``old``'s order where both have them (new keys last)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in old if k in new] + [k for k in new if k not in old]
        return {k: ordered_like(old.get(k), new[k]) for k in keys}
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i, v in enumerate(new):
            ident = _identity(v)
            match = next((o for o in old if ident is not None and _identity(o) == ident), None)
            out.append(ordered_like(match if match is not None else (old[i] if i < len(old) else None), v))
        return out
    return new
