"""The native SIGSYS handler that names a seccomp violation before the child dies.

How a violation gets its name.  SECCOMP_RET_KILL_PROCESS leaves the parent
nothing but "killed by SIGSYS" (the syscall number only reaches the audit
log).  SECCOMP_RET_TRAP instead delivers SIGSYS synchronously to the
offending thread with si_syscall set.  A Python-level signal handler runs
later, between bytecodes, and never when the offender is a JIT/worker
thread; a ctypes CFUNCTYPE handler would have to take the GIL from inside a
signal handler (a possible deadlock if another thread holds it, and
malloc in PyGILState_Ensure).  So the handler is 220 bytes of native
x86_64 code, assembled from the listing below and mapped read+exec before
the filter is loaded.  It takes no locks and calls no libc:

    mov r8d,[rsi+24]            ; siginfo->si_syscall
    (format "violation:<nr>\\n" on the stack)
    write(violation_fd, msg, len)
    rt_sigaction(SIGSYS, {SIG_DFL}, NULL, 8)
    tgkill(getpid(), gettid(), SIGSYS)       ; pending: SIGSYS is blocked
    rt_sigprocmask(SIG_UNBLOCK, {SIGSYS})    ; -> dies by SIGSYS now
    exit_group(159)                          ; not reached

The process therefore still dies by SIGSYS (exit status 159 = 128+SIGSYS)
and the parent reads the number from the pipe.  The forbidden syscall is
never executed either way; the only thing TRAP gives up compared with
KILL_PROCESS is that code which already controls the process could install
its own SIGSYS handler and keep running after a refused call, which gains
it nothing the EPERM default would not.  The violation message comes from
the (possibly compromised) child: it names the syscall, it does not prove
anything.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import signal

from .kernel import IS_X86_64, libc

__all__ = ["install", "HANDLER_X86_64", "HANDLER_FD_OFFSET"]

HANDLER_X86_64 = bytes.fromhex(
    "448b46184883e4f04883ec40488d7c243fc6070a4489c0b90a00000048ffcf31d2f7"
    "f180c230881785c075f04883ef0a48b876696f6c6174696f48890766c747086e3a48"
    "8d5424404829fa4889fe8b3d84000000b8010000000f0531c0488904244889442408"
    "48894424104889442418bf1f0000004889e631d241ba08000000b80d0000000f05b8"
    "270000000f054189c1b8ba0000000f0589c64489cfba1f000000b8ea0000000f0548"
    "c7042400000040bf010000004889e631d241ba08000000b80e0000000f05bf9f0000"
    "00b8e70000000f050f0b6690ffffffff"
)
HANDLER_FD_OFFSET = 0xD8  # the int32 slot read by "mov edi,[rip+...]"

_SA_SIGINFO = 0x4
_SA_ONSTACK = 0x08000000


class _Sigaction(ctypes.Structure):  # glibc's struct sigaction, x86_64
    _fields_ = [("sa_handler", ctypes.c_void_p),
                ("sa_mask", ctypes.c_uint8 * 128),
                ("sa_flags", ctypes.c_int),
                ("sa_restorer", ctypes.c_void_p)]


_handler_page: int | None = None  # kept mapped for the life of the process


def install(violation_fd: int | None) -> str | None:
    """Install the native SIGSYS handler; returns None when installed, else
    why violations will not be named."""
    global _handler_page
    if violation_fd is None:
        return "no violation_fd configured"
    if not IS_X86_64:
        return f"no native SIGSYS handler for {platform.machine()}"
    code = bytearray(HANDLER_X86_64)
    code[HANDLER_FD_OFFSET:HANDLER_FD_OFFSET + 4] = violation_fd.to_bytes(4, "little")
    page = libc.mmap(None, 4096, 0x1 | 0x2, 0x02 | 0x20, -1, 0)  # RW, PRIVATE|ANON
    if page in (None, ctypes.c_void_p(-1).value):
        return f"mmap for the SIGSYS handler failed: {os.strerror(ctypes.get_errno())}"
    ctypes.memmove(page, bytes(code), len(code))
    if libc.mprotect(page, 4096, 0x1 | 0x4) != 0:  # R+X, never W+X
        return f"mprotect for the SIGSYS handler failed: {os.strerror(ctypes.get_errno())}"
    _handler_page = page
    # never block the dying child on a full pipe (stdio is left alone: the
    # flag belongs to the shared file description)
    flags = _fcntl_getfl(violation_fd) if violation_fd > 2 else None
    if flags is not None:
        _fcntl_setfl(violation_fd, flags | os.O_NONBLOCK)
    action = _Sigaction()
    action.sa_handler = page
    ctypes.memset(action.sa_mask, 0xFF, 128)  # every signal blocked inside
    action.sa_flags = _SA_SIGINFO | _SA_ONSTACK
    if libc.sigaction(signal.SIGSYS, ctypes.byref(action), None) != 0:
        return f"sigaction(SIGSYS) failed: {os.strerror(ctypes.get_errno())}"
    return None


def _fcntl_getfl(fd: int) -> int | None:
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return None


def _fcntl_setfl(fd: int, flags: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    except OSError:
        pass
