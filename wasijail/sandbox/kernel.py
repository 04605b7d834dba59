"""The Linux ABI the layers speak: libc, syscall numbers, flags, defined once.

Numbers the stdlib does not name. Syscall numbers marked x86_64 are that
table's; the others are in every table numbered since Linux 5.1 (the
"generic" range, 424 and up). Pure constants and a few thin helpers: each
layer module imports what it uses from here, and nothing else defines them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

IS_X86_64 = platform.machine() == "x86_64"

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)

# syscall numbers
SYS_CAPSET = 126  # x86_64
SYS_PIVOT_ROOT = 155  # x86_64
SYS_GETDENTS64 = 217  # x86_64
SYS_SECCOMP = 317  # x86_64
SYS_OPENAT2 = 437  # generic (not alpha/mips)
SYS_LANDLOCK_CREATE_RULESET = 444  # generic
SYS_LANDLOCK_ADD_RULE = 445  # generic
SYS_LANDLOCK_RESTRICT_SELF = 446  # generic

# clone(2) / unshare(2) flags
CLONE_THREAD = 0x00010000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) / umount2(2)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_GET_SECCOMP = 21
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# seccomp(2)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1

# openat2(2) resolve flags
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08


def errname(err: int) -> str:
    """EPERM for 1: what the layers' details name an errno by."""
    return errno.errorcode.get(err, str(err))


def check(result: int, what: str) -> None:
    """Raise OSError(errno, "what: strerror") for a libc call that returned non-zero."""
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def read_text(path: str) -> str | None:
    """A small /proc or /sys file, stripped; None if it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def write_text(path: str, text: str) -> None:
    """Write a /proc file in one write(2), as the kernel wants uid_map and friends."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
