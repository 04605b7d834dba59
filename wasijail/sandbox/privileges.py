"""The lockdown's "capabilities" and "no_new_privs" steps.

Capabilities are dropped after the namespaces (those of the new user
namespace, or of a root parent where there is none); no_new_privs comes
before Landlock and seccomp, which need it unprivileged.
"""

from __future__ import annotations

import ctypes
import os

from . import LayerStatus
from .kernel import PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, SYS_CAPSET, libc

__all__ = ["drop_capabilities", "set_no_new_privs"]

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> LayerStatus:
    """Drop every capability: effective, permitted, inheritable and ambient."""
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.syscall(ctypes.c_long(SYS_CAPSET), ctypes.byref(header), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        return LayerStatus("capabilities", False, f"capset failed: {os.strerror(err)}")
    return LayerStatus("capabilities", True, "effective, permitted, inheritable, ambient cleared")


def set_no_new_privs() -> LayerStatus:
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        return LayerStatus("no_new_privs", False, f"prctl failed: {os.strerror(err)}")
    # Not dumpable: no core dump even through a core_pattern pipe (which
    # ignores RLIMIT_CORE 0), no ptrace or /proc/<pid>/mem by same-uid
    # processes.  After the namespace step: it makes /proc/self root-owned.
    detail = "PR_SET_NO_NEW_PRIVS"
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
        detail += ", PR_SET_DUMPABLE 0"
    else:
        detail += f"; PR_SET_DUMPABLE 0 failed: {os.strerror(ctypes.get_errno())}"
    return LayerStatus("no_new_privs", True, detail)
