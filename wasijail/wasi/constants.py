"""WASI constants shared by preview1 (`wasi_snapshot_preview1`) and preview0 (`wasi_unstable`).

The two snapshots agree on every number here except `fd_seek`'s whence, which
lives with the layouts in `layouts.py`. Nothing outside this package defines a
WASI constant.
"""

from __future__ import annotations

import errno as _host
import os as _os
import stat as _stat
import time as _time
from enum import IntEnum, IntFlag


class Errno(IntEnum):
    SUCCESS = 0
    TOOBIG = 1  # E2BIG
    ACCES = 2
    ADDRINUSE = 3
    ADDRNOTAVAIL = 4
    AFNOSUPPORT = 5
    AGAIN = 6
    ALREADY = 7
    BADF = 8
    BADMSG = 9
    BUSY = 10
    CANCELED = 11
    CHILD = 12
    CONNABORTED = 13
    CONNREFUSED = 14
    CONNRESET = 15
    DEADLK = 16
    DESTADDRREQ = 17
    DOM = 18
    DQUOT = 19
    EXIST = 20
    FAULT = 21
    FBIG = 22
    HOSTUNREACH = 23
    IDRM = 24
    ILSEQ = 25
    INPROGRESS = 26
    INTR = 27
    INVAL = 28
    IO = 29
    ISCONN = 30
    ISDIR = 31
    LOOP = 32
    MFILE = 33
    MLINK = 34
    MSGSIZE = 35
    MULTIHOP = 36
    NAMETOOLONG = 37
    NETDOWN = 38
    NETRESET = 39
    NETUNREACH = 40
    NFILE = 41
    NOBUFS = 42
    NODEV = 43
    NOENT = 44
    NOEXEC = 45
    NOLCK = 46
    NOLINK = 47
    NOMEM = 48
    NOMSG = 49
    NOPROTOOPT = 50
    NOSPC = 51
    NOSYS = 52
    NOTCONN = 53
    NOTDIR = 54
    NOTEMPTY = 55
    NOTRECOVERABLE = 56
    NOTSOCK = 57
    NOTSUP = 58
    NOTTY = 59
    NXIO = 60
    OVERFLOW = 61
    OWNERDEAD = 62
    PERM = 63
    PIPE = 64
    PROTO = 65
    PROTONOSUPPORT = 66
    PROTOTYPE = 67
    RANGE = 68
    ROFS = 69
    SPIPE = 70
    SRCH = 71
    STALE = 72
    TIMEDOUT = 73
    TXTBSY = 74
    XDEV = 75
    NOTCAPABLE = 76


class WasiErrno(Exception):
    """Answer the WASI call with this errno: raised by the child's host functions
    and by the broker's handlers alike (each turns it into its errno reply)."""

    def __init__(self, errno: int) -> None:
        self.errno = Errno(errno)
        super().__init__(self.errno.name)


# Host errno -> WASI errno, by name: both follow POSIX names.
_HOST_TO_WASI: dict[int, Errno] = {}
for _name, _value in Errno.__members__.items():
    _host_name = "E2BIG" if _name == "TOOBIG" else "E" + _name
    _code = getattr(_host, _host_name, None)
    if _code is not None:
        _HOST_TO_WASI[_code] = _value
_HOST_TO_WASI[_host.EOPNOTSUPP] = Errno.NOTSUP
_HOST_TO_WASI[_host.EWOULDBLOCK] = Errno.AGAIN


def errno_from_host(code: int | None) -> Errno:
    """The WASI errno for a host `OSError.errno` (EIO when there is no match)."""
    return _HOST_TO_WASI.get(code or 0, Errno.IO) if code else Errno.IO


class Rights(IntFlag):
    FD_DATASYNC = 1 << 0
    FD_READ = 1 << 1
    FD_SEEK = 1 << 2
    FD_FDSTAT_SET_FLAGS = 1 << 3
    FD_SYNC = 1 << 4
    FD_TELL = 1 << 5
    FD_WRITE = 1 << 6
    FD_ADVISE = 1 << 7
    FD_ALLOCATE = 1 << 8
    PATH_CREATE_DIRECTORY = 1 << 9
    PATH_CREATE_FILE = 1 << 10
    PATH_LINK_SOURCE = 1 << 11
    PATH_LINK_TARGET = 1 << 12
    PATH_OPEN = 1 << 13
    FD_READDIR = 1 << 14
    PATH_READLINK = 1 << 15
    PATH_RENAME_SOURCE = 1 << 16
    PATH_RENAME_TARGET = 1 << 17
    PATH_FILESTAT_GET = 1 << 18
    PATH_FILESTAT_SET_SIZE = 1 << 19
    PATH_FILESTAT_SET_TIMES = 1 << 20
    FD_FILESTAT_GET = 1 << 21
    FD_FILESTAT_SET_SIZE = 1 << 22
    FD_FILESTAT_SET_TIMES = 1 << 23
    PATH_SYMLINK = 1 << 24
    PATH_REMOVE_DIRECTORY = 1 << 25
    PATH_UNLINK_FILE = 1 << 26
    POLL_FD_READWRITE = 1 << 27
    SOCK_SHUTDOWN = 1 << 28
    SOCK_ACCEPT = 1 << 29  # preview1 only


class RightBits:
    """The Rights as plain ints, for the host's hot paths: IntFlag arithmetic costs ~30x more."""


for _right in Rights:
    setattr(RightBits, _right.name, int(_right))

ALL_RIGHTS = Rights((1 << 30) - 1)

# What each kind of descriptor can ever do; a guest asking for more simply
# gets the intersection, as in wasmtime.
FILE_RIGHTS = (
    Rights.FD_DATASYNC | Rights.FD_READ | Rights.FD_SEEK | Rights.FD_FDSTAT_SET_FLAGS
    | Rights.FD_SYNC | Rights.FD_TELL | Rights.FD_WRITE | Rights.FD_ADVISE
    | Rights.FD_ALLOCATE | Rights.FD_FILESTAT_GET | Rights.FD_FILESTAT_SET_SIZE
    | Rights.FD_FILESTAT_SET_TIMES | Rights.POLL_FD_READWRITE
)
DIRECTORY_RIGHTS = (
    Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_SYNC | Rights.FD_ADVISE
    | Rights.PATH_CREATE_DIRECTORY | Rights.PATH_CREATE_FILE | Rights.PATH_LINK_SOURCE
    | Rights.PATH_LINK_TARGET | Rights.PATH_OPEN | Rights.FD_READDIR
    | Rights.PATH_READLINK | Rights.PATH_RENAME_SOURCE | Rights.PATH_RENAME_TARGET
    | Rights.PATH_FILESTAT_GET | Rights.PATH_FILESTAT_SET_SIZE
    | Rights.PATH_FILESTAT_SET_TIMES | Rights.FD_FILESTAT_GET
    | Rights.FD_FILESTAT_SET_TIMES | Rights.PATH_SYMLINK
    | Rights.PATH_REMOVE_DIRECTORY | Rights.PATH_UNLINK_FILE
)
# Rights a read-only preopen keeps: everything that does not change the tree,
# nor gives one of its inodes a name elsewhere (no PATH_LINK_SOURCE, as wasmtime).
DIRECTORY_READONLY_RIGHTS = (
    Rights.FD_SYNC | Rights.FD_ADVISE | Rights.PATH_OPEN
    | Rights.FD_READDIR | Rights.PATH_READLINK | Rights.PATH_FILESTAT_GET
    | Rights.FD_FILESTAT_GET
)
FILE_READONLY_RIGHTS = (
    Rights.FD_READ | Rights.FD_SEEK | Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_SYNC
    | Rights.FD_TELL | Rights.FD_ADVISE | Rights.FD_FILESTAT_GET | Rights.POLL_FD_READWRITE
)
# stdio are streams, one direction each (as wasmtime reports them): no seek,
# no tell, so wasi-libc's isatty() depends on the filetype alone.
STDIN_RIGHTS = Rights.FD_READ | Rights.FD_FILESTAT_GET | Rights.POLL_FD_READWRITE
STDOUT_RIGHTS = Rights.FD_WRITE | Rights.FD_FILESTAT_GET | Rights.POLL_FD_READWRITE
# A guest asking for any of these on path_open wants the file open for reading
# or for writing; the broker opens the host file accordingly (as wasmtime does).
# Plain ints: every path_open tests them (in the child and the broker), and an
# IntFlag operand sends `&` through enum's Python-level __rand__.
READ_INTENT = int(Rights.FD_READ | Rights.FD_READDIR)
WRITE_INTENT = int(
    Rights.FD_DATASYNC | Rights.FD_WRITE | Rights.FD_ALLOCATE | Rights.FD_FILESTAT_SET_SIZE
)
# The rights an open mode grants or withholds (wasi-libc asks for all others
# whatever the mode). One missing because of the mode is answered as the kernel
# answers the call (EBADF for a write to a read-only file), not ENOTCAPABLE.
ACCESS_MODE_RIGHTS = READ_INTENT | WRITE_INTENT


class Filetype(IntEnum):
    UNKNOWN = 0
    BLOCK_DEVICE = 1
    CHARACTER_DEVICE = 2
    DIRECTORY = 3
    REGULAR_FILE = 4
    SOCKET_DGRAM = 5
    SOCKET_STREAM = 6
    SYMBOLIC_LINK = 7


def filetype_of_mode(mode: int) -> Filetype:
    """The WASI filetype for a host `st_mode` (FIFOs are UNKNOWN: WASI has no type for them)."""
    if _stat.S_ISREG(mode):
        return Filetype.REGULAR_FILE
    if _stat.S_ISDIR(mode):
        return Filetype.DIRECTORY
    if _stat.S_ISCHR(mode):
        return Filetype.CHARACTER_DEVICE
    if _stat.S_ISBLK(mode):
        return Filetype.BLOCK_DEVICE
    if _stat.S_ISLNK(mode):
        return Filetype.SYMBOLIC_LINK
    if _stat.S_ISSOCK(mode):
        return Filetype.SOCKET_STREAM
    return Filetype.UNKNOWN


U64_MAX = (1 << 64) - 1
# The largest WASI timestamp (u64 ns since 1970): 2554-07-21.
TIMESTAMP_MAX = U64_MAX


def timestamp_of(ns: int) -> int:
    """A host time (ns since 1970, any sign or size) as a WASI timestamp.

    Before 1970 is 0, as wasmtime reports a time WASI cannot carry (it drops
    it, then fills 0); past 2554 is the largest timestamp (wasmtime fails the
    whole stat with EOVERFLOW there; a listing that works is worth more).
    """
    return 0 if ns < 0 else min(ns, TIMESTAMP_MAX)


def filestat_of(st: _os.stat_result) -> tuple[int, int, int, int, int, int, int, int]:
    """(dev, ino, filetype, nlink, size, atim, mtim, ctim) of a host stat, each
    within its WASI u64 field, whatever the host file system reports."""
    return (_u64(st.st_dev), _u64(st.st_ino), filetype_of_mode(st.st_mode), _u64(st.st_nlink),
            _u64(st.st_size), timestamp_of(st.st_atime_ns), timestamp_of(st.st_mtime_ns),
            timestamp_of(st.st_ctime_ns))


def _u64(value: int) -> int:
    return min(max(value, 0), U64_MAX)


class Fdflags(IntFlag):
    APPEND = 1 << 0
    DSYNC = 1 << 1
    NONBLOCK = 1 << 2
    RSYNC = 1 << 3
    SYNC = 1 << 4


class Oflags(IntFlag):
    CREAT = 1 << 0
    DIRECTORY = 1 << 1
    EXCL = 1 << 2
    TRUNC = 1 << 3


class Lookupflags(IntFlag):
    SYMLINK_FOLLOW = 1 << 0


# Every bit each flag set defines, as plain ints (what a mask test on a hot path
# wants): any other bit is EINVAL from a guest, a protocol violation from a child.
ALL_FDFLAGS = int(Fdflags.APPEND | Fdflags.DSYNC | Fdflags.NONBLOCK | Fdflags.RSYNC | Fdflags.SYNC)
ALL_OFLAGS = int(Oflags.CREAT | Oflags.DIRECTORY | Oflags.EXCL | Oflags.TRUNC)
ALL_LOOKUPFLAGS = int(Lookupflags.SYMLINK_FOLLOW)


class Fstflags(IntFlag):
    ATIM = 1 << 0
    ATIM_NOW = 1 << 1
    MTIM = 1 << 2
    MTIM_NOW = 1 << 3


ALL_FSTFLAGS = int(Fstflags.ATIM | Fstflags.ATIM_NOW | Fstflags.MTIM | Fstflags.MTIM_NOW)


def fstflags_conflict(fstflags: int) -> bool:
    """True when fstflags asks for a time and for "now" for the same stamp (EINVAL)."""
    return bool((fstflags & Fstflags.ATIM and fstflags & Fstflags.ATIM_NOW)
                or (fstflags & Fstflags.MTIM and fstflags & Fstflags.MTIM_NOW))


def times_for(old_atime_ns: int, old_mtime_ns: int, atim: int, mtim: int,
              fstflags: int) -> tuple[int, int]:
    """The (atime, mtime) in ns that fstflags asks for, keeping the stamps it leaves alone."""
    now = _time.time_ns()
    a = atim if fstflags & Fstflags.ATIM else now if fstflags & Fstflags.ATIM_NOW else old_atime_ns
    m = mtim if fstflags & Fstflags.MTIM else now if fstflags & Fstflags.MTIM_NOW else old_mtime_ns
    return a, m


class Clockid(IntEnum):
    REALTIME = 0
    MONOTONIC = 1
    PROCESS_CPUTIME_ID = 2
    THREAD_CPUTIME_ID = 3


class Advice(IntEnum):
    NORMAL = 0
    SEQUENTIAL = 1
    RANDOM = 2
    WILLNEED = 3
    DONTNEED = 4
    NOREUSE = 5


class Eventtype(IntEnum):
    CLOCK = 0
    FD_READ = 1
    FD_WRITE = 2


class Subclockflags(IntFlag):
    ABSTIME = 1 << 0


class Eventrwflags(IntFlag):
    FD_READWRITE_HANGUP = 1 << 0


class Riflags(IntFlag):
    RECV_PEEK = 1 << 0
    RECV_WAITALL = 1 << 1


class Roflags(IntFlag):
    RECV_DATA_TRUNCATED = 1 << 0


class Sdflags(IntFlag):
    RD = 1 << 0
    WR = 1 << 1


class Preopentype(IntEnum):
    DIR = 0


# The largest path a guest may hand over, in bytes (Linux PATH_MAX).
PATH_MAX = 4096
# proc_exit statuses at or above this are not passed through (as in wasmtime).
EXIT_STATUS_LIMIT = 126
