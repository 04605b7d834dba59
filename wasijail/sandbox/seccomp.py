"""seccomp: the child's allow-list as a filter, loaded last, and violations named.

`seccomp_policy.py` holds the policy as data; `build_filter()` turns it into
a pyseccomp filter. The fork server compiles the program once
(`prebuild_seccomp`), each child patches its own pid in and loads it in
`apply()`, the lockdown's last step, after `sigsys.install()` set up the
handler that names a forbidden syscall. The supervisor names what the
child wrote with `describe_violation()`. `probe()` asks the kernel what
filters it supports, for `wasijail doctor`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import struct
from dataclasses import dataclass

from ..sonames import sonames_first
from . import Layer, LayerStatus, sigsys
from .mounts import ARTIFACT_PATH
from . import seccomp_policy as policy
from .kernel import (
    IS_X86_64, PR_GET_SECCOMP, PR_SET_NO_NEW_PRIVS, SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_GET_ACTION_AVAIL,
    SECCOMP_SET_MODE_FILTER, SYS_SECCOMP, check, errname, libc,
)

# Imported here, at module import time, on purpose: lockdown forbids starting processes
# (find_library's `ldconfig -p`) and opening files.
with sonames_first():
    import pyseccomp

__all__ = [
    "apply", "probe", "build_filter", "export_program", "prebuild_seccomp", "program_for",
    "syscall_name", "parse_violations", "describe_violation", "VIOLATION_EXIT_STATUS",
]

# 128 + SIGSYS: what the supervisor reports for a seccomp violation.
VIOLATION_EXIT_STATUS = 128 + signal.SIGSYS


# -- the filter ---------------------------------------------------------------------


_OPS = {
    "eq": pyseccomp.EQ,
    "ne": pyseccomp.NE,
    "masked_eq": pyseccomp.MASKED_EQ,
}


def _syscall_number(name: str) -> int | None:
    nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    if nr >= 0:
        return nr
    if IS_X86_64:
        return policy.X86_64_EXTRA_SYSCALLS.get(name)
    return None


def _args(conds, pid: int) -> list:
    out = []
    for cond in conds:
        arg, op = cond[0], cond[1]
        values = [pid if v == policy.SELF_PID else v for v in cond[2:]]
        out.append(pyseccomp.Arg(arg, _OPS[op], *values))
    return out


def build_filter(pid: int, forbidden_action: int, open_artifact: bool = False) -> pyseccomp.SyscallFilter:
    """The allow-list as a pyseccomp filter (not loaded); `open_artifact`: with the one open
    of the mounted artifact allowed (policy.ARTIFACT_OPEN), every other open still forbidden."""
    f = pyseccomp.SyscallFilter(pyseccomp.ERRNO(errno.EPERM))
    f.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    f.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    try:
        f.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)  # binary tree (libseccomp >= 2.5)
    except OSError:
        pass

    def add(action: int, name: str, conds=()) -> None:
        nr = _syscall_number(name)
        if nr is not None:
            f.add_rule(action, nr, *_args(conds, pid))

    for name in policy.ALLOW:
        add(pyseccomp.ALLOW, name)
    for name, conds in policy.ALLOW_IF:
        add(pyseccomp.ALLOW, name, conds)
    for name, err in policy.ERRNO:
        add(pyseccomp.ERRNO(err), name)
    opened = policy.ARTIFACT_OPEN[0] if open_artifact else None
    if opened is not None:
        (arg, _, flags), = policy.ARTIFACT_OPEN[1]
        add(pyseccomp.ALLOW, opened, policy.ARTIFACT_OPEN[1])
        add(forbidden_action, opened, ((arg, "ne", flags),))
    for name in policy.FORBID + policy.FORBID_NEW:
        if name != opened:
            add(forbidden_action, name)
    for name, conds in policy.FORBID_IF:
        add(forbidden_action, name, conds)
    return f


# Stands for the child's pid in a filter compiled before the child exists;
# patched in the BPF program after fork (it occurs nowhere else in the policy).
_PID_PLACEHOLDER = 0x3ABCDEF1
_BPF_INSN = struct.Struct("<HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_JMP = 0x05


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class _Prebuilt:
    program: bytes  # the BPF program, with _PID_PLACEHOLDER where the pid goes
    pid_offsets: tuple[int, ...]  # byte offsets of those `k` fields


_PREBUILT: dict[tuple[int, bool], _Prebuilt] = {}  # by forbidden action, open_artifact


def export_program(pid: int, forbidden_action: int, open_artifact: bool = False) -> bytes:
    """The filter as the BPF program libseccomp would load (for prebuilding and for tests)."""
    # A memory file, not a pipe: a program larger than a pipe's buffer would block the export.
    with os.fdopen(os.memfd_create("wasijail-seccomp", os.MFD_CLOEXEC), "w+b") as sink:
        build_filter(pid, forbidden_action, open_artifact).export_bpf(sink)
        sink.seek(0)
        return sink.read()


def prebuild_seccomp() -> None:
    """Compile the filter once, before any child is forked (the fork server calls this).

    libseccomp spends milliseconds building and optimising the program; each
    child then only patches its own pid in and loads it.
    """
    for action in (pyseccomp.TRAP, pyseccomp.KILL_PROCESS):
        for open_artifact in (False, True):
            program = export_program(_PID_PLACEHOLDER, action, open_artifact)
            offsets = tuple(
                i * _BPF_INSN.size for i, (code, _, _, k) in enumerate(_BPF_INSN.iter_unpack(program))
                if k == _PID_PLACEHOLDER and code & 0x07 == _BPF_JMP)
            _PREBUILT[action, open_artifact] = _Prebuilt(program, offsets)


def program_for(pid: int, forbidden_action: int, open_artifact: bool = False) -> bytes | None:
    """The prebuilt program with `pid` patched in, or None when none was prebuilt."""
    prebuilt = _PREBUILT.get((forbidden_action, open_artifact))
    if prebuilt is None:
        return None
    program = bytearray(prebuilt.program)
    for offset in prebuilt.pid_offsets:
        struct.pack_into("<I", program, offset + 4, pid)
    return bytes(program)


def _load_program(program: bytes) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, TSYNC, program), as libseccomp's load() does."""
    nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "seccomp")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _BPF_INSN.size, ctypes.addressof(buffer))
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.syscall(nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def apply(violation_fd: int | None, open_artifact: bool = False) -> LayerStatus:
    """Name violations on `violation_fd` (sigsys.py) where possible, then load the filter (TSYNC);
    `open_artifact`: the one open of the artifact mounts.py put in the empty root is allowed."""
    reporter_problem = sigsys.install(violation_fd)
    if reporter_problem is None:
        action = pyseccomp.TRAP
        naming = f"forbidden syscalls: SIGSYS, named on fd {violation_fd}"
    else:
        action = pyseccomp.KILL_PROCESS
        naming = f"forbidden syscalls: SIGSYS, not named ({reporter_problem})"
    try:
        program = program_for(os.getpid(), action, open_artifact)
        if program is not None:
            _load_program(program)
        else:
            build_filter(os.getpid(), action, open_artifact).load()
    except OSError as exc:
        return LayerStatus("seccomp", False, f"loading the filter failed: {exc}")
    return LayerStatus("seccomp", True,
                       f"allow-list (default EPERM), TSYNC; {naming}"
                       + (f"; openat O_RDONLY|O_CLOEXEC allowed (for {ARTIFACT_PATH})" if open_artifact else "")
                       + ("; compiled once in the fork server" if program is not None else ""))


# -- what the host provides (`wasijail doctor`) ----------------------------------


_ACTIONS = {
    "kill_process": 0x80000000,
    "trap": 0x00030000,
    "errno": 0x00050000,
    "allow": 0x7FFF0000,
}


def probe() -> Layer:
    if not IS_X86_64:
        return Layer("seccomp", False, f"probe only written for x86_64, not {platform.machine()}")
    mode = libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0)
    if mode < 0:
        return Layer("seccomp", False,
                     f"prctl(PR_GET_SECCOMP): {errname(ctypes.get_errno())} "
                     "(kernel built without CONFIG_SECCOMP)")
    missing = []
    for name, action in _ACTIONS.items():
        value = ctypes.c_uint32(action)
        if libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_uint(SECCOMP_GET_ACTION_AVAIL),
                        ctypes.c_uint(0), ctypes.byref(value)) != 0:
            if ctypes.get_errno() == errno.ENOSYS:
                return Layer("seccomp", False, "no seccomp(2) syscall (kernel < 3.17)")
            missing.append(name)
    if missing:
        return Layer("seccomp", False, f"filter actions unavailable: {', '.join(missing)}")
    # A NULL program with a known flag fails with EFAULT; an unknown flag
    # with EINVAL.  Nothing is installed either way.
    rc = libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                      ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), None)
    if not (rc != 0 and ctypes.get_errno() == errno.EFAULT):
        return Layer("seccomp", False, "SECCOMP_FILTER_FLAG_TSYNC unsupported")
    detail = f"filter mode, TSYNC, kill_process/trap/errno; {_libseccomp_version()}"
    if mode == 2:
        detail += "; this process is already filtered (filters stack)"
    return Layer("seccomp", True, detail)


def _libseccomp_version() -> str:
    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib = getattr(pyseccomp, "_libseccomp", None)
    try:
        fn = lib.seccomp_version
        fn.restype = ctypes.POINTER(_Version)
        fn.argtypes = ()
        v = fn().contents
        return f"libseccomp {v.major}.{v.minor}.{v.micro}"
    except (AttributeError, ValueError):
        return "libseccomp (version unknown)"


# -- naming violations (the supervisor) -------------------------------------------


def syscall_name(nr: int) -> str:
    """Syscall number -> name on this architecture ("syscall 999" if unknown)."""
    try:
        return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, int(nr)).decode()
    except (ValueError, OSError):
        pass
    if IS_X86_64:
        for name, number in policy.X86_64_EXTRA_SYSCALLS.items():
            if number == nr:
                return name
    return f"syscall {nr}"


def parse_violations(data: bytes) -> list[int]:
    """Syscall numbers from what the child wrote to its violation fd.

    Malformed lines are ignored (the child may be compromised)."""
    numbers = []
    for line in data.split(b"\n"):
        if line.startswith(b"violation:"):
            digits = line[len(b"violation:"):]
            if digits.isdigit() and len(digits) <= 10:
                numbers.append(int(digits))
    return numbers


def describe_violation(violation: int | bytes | str | None) -> str:
    """"sandbox violation: execve" from a syscall number, a siginfo-like
    object (``si_syscall``), or the bytes read from the violation fd;
    "sandbox violation (SIGSYS)" when nothing names it."""
    nr: int | None
    if violation is None:
        nr = None
    elif isinstance(violation, int):
        nr = violation
    elif isinstance(violation, (bytes, bytearray, str)):
        raw = violation.encode() if isinstance(violation, str) else bytes(violation)
        found = parse_violations(raw)
        nr = found[0] if found else None
    else:
        nr = getattr(violation, "si_syscall", None)
    if nr is None:
        return "sandbox violation (SIGSYS)"
    return f"sandbox violation: {syscall_name(nr)}"
