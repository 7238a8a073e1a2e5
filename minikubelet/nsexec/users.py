"""The container's user: the image's ``User`` (or runAsUser/runAsGroup) looked up in the image's own files.

Runs after ``pivot_root``, so ``/etc/passwd`` and ``/etc/group`` are the image's. They are parsed by hand: Python's
``pwd``/``grp`` go through NSS, which would ``dlopen`` the image's ``libnss_*`` into this process.

Rules (containerd ``WithUser``/``WithAdditionalGIDs``, runc ``GetExecUser``): the forms ``user``, ``uid``,
``user:group``, ``uid:gid``, ``uid:group``, ``user:gid``; a numeric uid takes its gid from its passwd entry, 0 when
it has none; a name must exist; supplementary groups are the /etc/group entries listing the user's name, unless a
group was given; HOME is the passwd entry's, else ``/``. IDs are at most MaxInt32.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_ID = 2**31 - 1


class UserError(Exception):
    """The user or group cannot be resolved; the message is runc's."""


class Identity(NamedTuple):
    uid: int
    gid: int
    groups: list[int]
    home: str


class Passwd(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str


class Group(NamedTuple):
    name: str
    gid: int
    members: list[str]


def _fields(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    return [line.split(":") for line in lines if line.strip() and not line.startswith("#")]


def read_passwd(path: str = "/etc/passwd") -> list[Passwd]:
    entries = []
    for f in _fields(path):
        f += [""] * (7 - len(f))
        if f[2].isdigit() and f[3].isdigit():
            entries.append(Passwd(f[0], int(f[2]), int(f[3]), f[5]))
    return entries


def read_group(path: str = "/etc/group") -> list[Group]:
    entries = []
    for f in _fields(path):
        f += [""] * (4 - len(f))
        if f[2].isdigit():
            entries.append(Group(f[0], int(f[2]), [m.strip() for m in f[3].split(",") if m.strip()]))
    return entries


def _id(text: str) -> int | None:
    """``text`` as an ID if it is numeric (range-checked), else None (a name)."""
    if not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise UserError(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def split_user(image_user: str, uid: int | None, gid: int | None) -> tuple[str, str]:
    """(user, group) to resolve: runAsUser replaces the image's user and group, runAsGroup the group only."""
    if uid is not None:
        return str(uid), "" if gid is None else str(gid)
    user, _, group = image_user.partition(":")
    return user, group if gid is None else str(gid)


def resolve(image_user: str, uid: int | None = None, gid: int | None = None, passwd: str = "/etc/passwd",
            group: str = "/etc/group") -> Identity:
    """The identity the container's process takes (see the module's rules)."""
    user_text, group_text = split_user(image_user, uid, gid)
    if image_user.count(":") > 1 and uid is None:
        raise UserError(f"invalid USER value {image_user}")
    users = read_passwd(passwd)
    numeric = _id(user_text or "0")
    if numeric is None:
        entry = next((u for u in users if u.name == user_text), None)
        if entry is None:
            raise UserError(f"unable to find user {user_text}: no matching entries in passwd file")
    else:
        entry = next((u for u in users if u.uid == numeric), None)
    the_uid = numeric if numeric is not None else entry.uid if entry else 0
    the_gid = entry.gid if entry is not None and user_text else 0
    groups: list[int] = []
    all_groups = read_group(group)
    if group_text:
        wanted = _id(group_text)
        if wanted is None:
            found = next((g for g in all_groups if g.name == group_text), None)
            if found is None:
                raise UserError(f"unable to find group {group_text}: no matching entries in group file")
            wanted = found.gid
        the_gid = wanted
    elif entry is not None:
        for g in all_groups:
            if entry.name in g.members and g.gid not in groups:
                groups.append(g.gid)
    if the_uid > MAX_ID or the_gid > MAX_ID or any(g > MAX_ID for g in groups):
        raise UserError(f"uids and gids must be in range 0-{MAX_ID}")
    return Identity(the_uid, the_gid, groups, entry.home if entry is not None and entry.home else "/")
