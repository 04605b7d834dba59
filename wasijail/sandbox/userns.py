"""The user namespace: the child is root inside it and its host uid outside.

The lockdown enters it together with the other namespaces (one unshare, see
lockdown.py) and then calls `apply()` to write the uid/gid maps; `probe()`
tries the same in a throw-away child. Some hosts forbid unprivileged user
namespaces (Ubuntu 23.10+ by default): `hints()` names the knobs that say so.
"""

from __future__ import annotations

import ctypes
import os

from . import Layer, probing
from .kernel import CLONE_NEWUSER, errname, libc, read_text, write_text

__all__ = ["apply", "hints", "probe", "try_enter", "can_create", "NEEDS_USERNS"]

# What the layers entered inside a user namespace say when there is none.
NEEDS_USERNS = "needs a user namespace (lockdown creates them together)"

_KNOBS = (
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
)


def apply(uid: int, gid: int) -> None:
    """Map root inside to `uid`/`gid` outside, in a user namespace just entered.

    /proc/self is written now: there is no /proc (and no open()) later.
    """
    write_text("/proc/self/setgroups", "deny")
    write_text("/proc/self/uid_map", f"0 {uid} 1\n")
    write_text("/proc/self/gid_map", f"0 {gid} 1\n")


def hints() -> str:
    """" [unprivileged_userns_clone=1, ...]": the host's knobs on user namespaces.

    Read in the host's namespace: a user namespace has its own max_user_namespaces.
    """
    found = []
    for path in _KNOBS:
        value = read_text(path)
        if value is not None:
            found.append(f"{os.path.basename(path)}={value}")
    return f" [{', '.join(found)}]" if found else ""


def try_enter() -> tuple[bool, str]:
    """Enter a new user namespace with maps, as lockdown does (for a probe's child)."""
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return False, f"unshare(CLONE_NEWUSER): {errname(ctypes.get_errno())}"
    try:
        apply(uid, gid)
    except OSError as exc:
        return False, f"user namespace created but the uid/gid map was refused: {exc}"
    who = "as root; unprivileged users may differ" if uid == 0 else "unprivileged"
    return True, f"user namespaces ({who}; uid {uid} mapped to 0)"


def probe() -> Layer:
    available, detail = probing.in_child(try_enter)
    if not available or os.getuid() == 0:
        detail += hints()
    return Layer("userns", available, detail)


def can_create(uid: int) -> tuple[bool, str]:
    """Whether a process running as host `uid` can create a user namespace here (probed in a child)."""

    def attempt() -> tuple[bool, str]:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        except OSError:
            return False, f"could not become host uid {uid}"
        if libc.unshare(CLONE_NEWUSER) != 0:
            return False, ""  # the parent names the host's knobs
        return True, f"host uid {uid} may create user namespaces"

    works, detail = probing.in_child(attempt)
    return works, detail or f"host uid {uid} may not create user namespaces{hints()}"
