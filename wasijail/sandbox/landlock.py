"""Landlock: the child gets a ruleset that handles every right its ABI knows and grants none.

No filesystem access at all (the broker opens every path) but reading the
cached artifact where mounts.py put one, no TCP bind or connect (ABI 4+),
no abstract unix sockets or signals outside the domain (ABI 6+). `apply()` is the lockdown's "landlock" step; `probe()` and
`abi()` ask the kernel without changing the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

from . import Layer, LayerStatus
from .kernel import (
    IS_X86_64, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_RESTRICT_SELF, check, libc,
)
from .mounts import ARTIFACT_PATH

__all__ = ["abi", "apply", "probe"]

# include/uapi/linux/landlock.h
_CREATE_RULESET_VERSION = 1
# filesystem rights by the ABI version that introduced them
_FS_BY_ABI = {
    1: (1 << 13) - 1,   # EXECUTE .. MAKE_SYM
    2: 1 << 13,         # REFER
    3: 1 << 14,         # TRUNCATE
    5: 1 << 15,         # IOCTL_DEV
}
_ACCESS_FS_READ_FILE = 1 << 2
_RULE_PATH_BENEATH = 1
_NET_BIND_TCP = 1 << 0
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1

# What each ABI version added, for `wasijail doctor`.
_FEATURES = {
    1: "filesystem",
    2: "file reparenting",
    3: "truncate",
    4: "TCP bind/connect",
    5: "device ioctl",
    6: "scoping (abstract unix sockets, signals)",
    7: "audit logging",
}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def abi() -> tuple[int, str]:
    """(ABI version, "") or (0, why Landlock is unusable)."""
    if not IS_X86_64:
        return 0, f"syscall numbers only known for x86_64, not {platform.machine()}"
    version = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None,
                           ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if version >= 1:
        return int(version), ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, ("kernel without Landlock (landlock_create_ruleset: ENOSYS;"
                   " needs 5.13+ with CONFIG_SECURITY_LANDLOCK)")
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock disabled at boot (add 'landlock' to the lsm= kernel parameter)"
    return 0, f"landlock_create_ruleset: {os.strerror(err)}"


def probe() -> Layer:
    version, why = abi()
    if version < 1:
        return Layer("landlock", False, why)
    features = [f for v, f in _FEATURES.items() if v <= version]
    return Layer("landlock", True, f"ABI {version}: {', '.join(features)}")


def _ruleset(version: int) -> tuple[_RulesetAttr, int, list[str]]:
    """Every right the ABI knows, and the struct size that ABI expects."""
    fs = 0
    for introduced, bits in _FS_BY_ABI.items():
        if version >= introduced:
            fs |= bits
    attr = _RulesetAttr(fs, 0, 0)
    size = 8
    handled = [f"fs=0x{fs:x}"]
    if version >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
        handled.append("net=bind,connect TCP")
    if version >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = 24
        handled.append("scoped=abstract unix sockets,signals")
    return attr, size, handled


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _allow_reading_artifact(ruleset_fd: int) -> None:
    """The one rule: read the mounted artifact (ARTIFACT_PATH), nothing beside or beneath it."""
    fd = os.open(ARTIFACT_PATH, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(_ACCESS_FS_READ_FILE, fd)
        check(libc.syscall(ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset_fd),
                           ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)),
              "landlock_add_rule")
    finally:
        os.close(fd)


def apply(artifact: bool = False) -> LayerStatus:
    """Restrict the calling process (and its future threads) to nothing, or to reading the
    mounted artifact when `artifact`."""
    version, why = abi()
    if not version:
        return LayerStatus("landlock", False, why)
    attr, size, handled = _ruleset(version)
    fd = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                      ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        return LayerStatus("landlock", False, f"landlock_create_ruleset(ABI {version}): {os.strerror(err)}")
    rules = "no rules"
    try:
        if artifact:  # else no landlock_add_rule at all: nothing is granted
            try:
                _allow_reading_artifact(fd)
                rules = f"one rule: read {ARTIFACT_PATH}"
            except OSError as exc:  # no rule: the artifact stays unreadable, the child copies it
                rules = f"no rules ({ARTIFACT_PATH} not granted: {exc.strerror})"
        if libc.syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            return LayerStatus("landlock", False, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)
    return LayerStatus("landlock", True, f"ABI {version}, {rules}; handled {'; '.join(handled)}")
