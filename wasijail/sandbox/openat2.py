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
import struct

from . import Layer
from .kernel import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, SYS_OPENAT2, errname, libc

__all__ = ["openat2", "available", "probe"]


# struct open_how {u64 flags; u64 mode; u64 resolve;}, packed per call (the kernel copies it
# in), and syscall(2) with its argument types declared once: ~0.9 us less a call than a
# ctypes Structure and wrapped arguments, on every path the broker opens.
_OPEN_HOW = struct.Struct("=QQQ")
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
_syscall = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                            ctypes.c_size_t, use_errno=True)(("syscall", libc))


def openat2(dirfd: int, path: bytes, flags: int, mode: int) -> int:
    """One openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS); OSError with the raw kernel errno."""
    how = _OPEN_HOW.pack(flags, mode, _RESOLVE)
    while True:
        fd = _syscall(SYS_OPENAT2, dirfd, path, how, _OPEN_HOW.size)
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
