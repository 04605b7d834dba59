"""openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: the kernel resolves beneath a root.

The broker (broker/resolve.py) opens every guest path with `openat2()`
under its preopen's directory fd, or walks the path itself where
`available()` says no. `probe()` checks, for `wasijail doctor` and
`--require openat2`, that the kernel really refuses '..' out of the root.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

from . import Layer
from .kernel import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, SYS_OPENAT2, errname, libc

__all__ = ["openat2", "available", "probe"]


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def openat2(dirfd: int, path: bytes, flags: int, mode: int) -> int:
    """One openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS); OSError with the raw kernel errno."""
    how = _OpenHow(flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    while True:
        fd = libc.syscall(
            ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(path),
            ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), path)


@functools.cache
def available() -> bool:
    """Whether the broker may resolve with openat2: the probe's answer, so it is used only
    where the kernel has shown it refuses '..' (missing before Linux 5.6, or seccomp-denied)."""
    return probe().available


def probe() -> Layer:
    """openat2 opens '.' beneath a directory and refuses '..' with EXDEV."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        base = os.open(os.path.dirname(os.path.abspath(__file__)), flags)
    except OSError as exc:
        return Layer("openat2", False, f"cannot open a directory to probe beneath: {errname(exc.errno)}")
    try:
        try:
            os.close(openat2(base, b".", flags, 0))
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                return Layer("openat2", False, "no openat2(2) (kernel < 5.6): the broker "
                                               "falls back to its O_NOFOLLOW walk")
            return Layer("openat2", False, f"openat2(RESOLVE_BENEATH): {errname(exc.errno)}")
        try:
            os.close(openat2(base, b"..", flags, 0))
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                return Layer("openat2", False, f"openat2(RESOLVE_BENEATH, '..'): {errname(exc.errno)},"
                                               " expected EXDEV")
            return Layer("openat2", True, "RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS ('..' refused with EXDEV)")
        return Layer("openat2", False, "openat2 exists but RESOLVE_BENEATH let '..' out")
    finally:
        os.close(base)
