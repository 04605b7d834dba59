"""The broker channel: one child and its broker session, over the child's socket.

Requests travel child -> parent; the session decodes each with
`decode_request`, which checks the op, the exact length, every blob length
and every field (flags against the WASI masks, paths against the WASI path
rule, sizes against their bounds) before a handler sees it. Anything
malformed is a `ProtocolError`: the session ends that child.

Every reply has one shape: a head of the op it answers and a WASI errno,

    u16 op | u16 errno | body (the request's reply record, only when errno is 0)

so an error is four bytes whatever was asked, and the child turns a non-zero
errno into `WasiErrno` in one place (`decode_reply`).

The child's notices travel on the same socket with ops of their own:
`SandboxReport` (after lockdown), `Compiled` (answered with an errno-only
reply) and `Result` (its last word).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from ..wasi import ALL_FSTFLAGS, ALL_FDFLAGS, ALL_LOOKUPFLAGS, ALL_OFLAGS, Errno, WasiErrno
from .transport import Channel, Message, ProtocolError, Reply, record

# The most a single readdir reply carries; the child asks again for more.
READDIR_CHUNK = 32 * 1024
# The largest compiled artifact the supervisor will take into its cache.
MAX_ARTIFACT = 1 << 31
# The longest sandbox report (one "layer: reason" line per layer not applied).
MAX_SANDBOX_REPORT = 4096


class BrokerOp(IntEnum):
    # From 10: the setup channel's Start (op 1) shares this socket.
    PATH_OPEN = 10
    PATH_FILESTAT_GET = 11
    PATH_FILESTAT_SET_TIMES = 12
    PATH_CREATE_DIRECTORY = 13
    PATH_REMOVE_DIRECTORY = 14
    PATH_UNLINK_FILE = 15
    PATH_RENAME = 16
    PATH_LINK = 17
    PATH_SYMLINK = 18
    PATH_READLINK = 19
    FD_READDIR = 20
    DIR_FILESTAT_GET = 21
    DIR_FILESTAT_SET_TIMES = 22
    DIR_CLOSE = 23
    DIR_SYNC = 24
    FD_FILESTAT_SET_TIMES = 25
    # the child's notices
    COMPILED = 30
    SANDBOX_REPORT = 31
    RESULT = 32


# --- requests (child -> parent) ---------------------------------------------------


@record
class _DirPathRequest(Message):
    """A request that names only a path under a directory handle."""

    FIXED = struct.Struct("<I")
    BLOBS = ("path",)
    PATHS = ("path",)
    dir: int
    path: bytes


@record
class _DirRequest(Message):
    """A request about a directory handle itself."""

    FIXED = struct.Struct("<I")
    dir: int


@record
class PathOpen(Message):
    OP = BrokerOp.PATH_OPEN
    FIXED = struct.Struct("<IIHHQQ")
    BLOBS = ("path",)
    PATHS = ("path",)
    FLAGS = (("lookupflags", ALL_LOOKUPFLAGS), ("oflags", ALL_OFLAGS), ("fdflags", ALL_FDFLAGS))
    dir: int
    lookupflags: int
    oflags: int
    fdflags: int
    rights_base: int
    rights_inheriting: int
    path: bytes


@record
class PathFilestatGet(Message):
    OP = BrokerOp.PATH_FILESTAT_GET
    FIXED = struct.Struct("<II")
    BLOBS = ("path",)
    PATHS = ("path",)
    FLAGS = (("lookupflags", ALL_LOOKUPFLAGS),)
    dir: int
    lookupflags: int
    path: bytes


@record
class PathFilestatSetTimes(Message):
    OP = BrokerOp.PATH_FILESTAT_SET_TIMES
    FIXED = struct.Struct("<IIQQH")
    BLOBS = ("path",)
    PATHS = ("path",)
    FLAGS = (("lookupflags", ALL_LOOKUPFLAGS), ("fstflags", ALL_FSTFLAGS))
    dir: int
    lookupflags: int
    atim: int
    mtim: int
    fstflags: int
    path: bytes


@record
class PathCreateDirectory(_DirPathRequest):
    OP = BrokerOp.PATH_CREATE_DIRECTORY


@record
class PathRemoveDirectory(_DirPathRequest):
    OP = BrokerOp.PATH_REMOVE_DIRECTORY


@record
class PathUnlinkFile(_DirPathRequest):
    OP = BrokerOp.PATH_UNLINK_FILE


@record
class PathReadlink(_DirPathRequest):
    OP = BrokerOp.PATH_READLINK


@record
class PathRename(Message):
    OP = BrokerOp.PATH_RENAME
    FIXED = struct.Struct("<II")
    BLOBS = ("old_path", "new_path")
    PATHS = ("old_path", "new_path")
    old_dir: int
    new_dir: int
    old_path: bytes
    new_path: bytes


@record
class PathLink(Message):
    OP = BrokerOp.PATH_LINK
    FIXED = struct.Struct("<III")
    BLOBS = ("old_path", "new_path")
    PATHS = ("old_path", "new_path")
    FLAGS = (("lookupflags", ALL_LOOKUPFLAGS),)
    old_dir: int
    lookupflags: int
    new_dir: int
    old_path: bytes
    new_path: bytes


@record
class PathSymlink(Message):
    OP = BrokerOp.PATH_SYMLINK
    FIXED = struct.Struct("<I")
    BLOBS = ("target", "path")
    PATHS = ("target", "path")
    dir: int
    target: bytes
    path: bytes


@record
class FdReaddir(Message):
    OP = BrokerOp.FD_READDIR
    FIXED = struct.Struct("<IQI")
    RANGES = (("max_bytes", 1, READDIR_CHUNK),)
    dir: int
    cookie: int
    max_bytes: int


@record
class DirFilestatGet(_DirRequest):
    OP = BrokerOp.DIR_FILESTAT_GET


@record
class DirClose(_DirRequest):
    OP = BrokerOp.DIR_CLOSE


@record
class DirSync(_DirRequest):
    OP = BrokerOp.DIR_SYNC


@record
class DirFilestatSetTimes(Message):
    OP = BrokerOp.DIR_FILESTAT_SET_TIMES
    FIXED = struct.Struct("<IQQH")
    FLAGS = (("fstflags", ALL_FSTFLAGS),)
    dir: int
    atim: int
    mtim: int
    fstflags: int


@record
class FdFilestatSetTimes(Message):
    """Re-time a donated file; the file itself travels with the request.

    The child may not call futimens itself (its filter refuses utimensat):
    the broker decides from what the descriptor is, so a read-only grant stays
    un-retimable even for native code in the child.
    """

    OP = BrokerOp.FD_FILESTAT_SET_TIMES
    FIXED = struct.Struct("<QQH")
    FDS = 1
    FLAGS = (("fstflags", ALL_FSTFLAGS),)
    atim: int
    mtim: int
    fstflags: int


# --- the child's notices (child -> parent) -------------------------------------------


class ChildOutcome(IntEnum):
    """How the child says its module ended (the supervisor's `results.Outcome` is built from it)."""

    EXIT = 0  # proc_exit or a return from _start; code is the status
    TRAP = 1  # message is the trap text with its wasm backtrace
    ERROR = 2  # the module could not be loaded, linked or started; message says why
    INVOKED = 3  # --invoke finished; results were printed to stdout
    LIMIT = 4  # a limit the child enforces was hit; message names it (fuel, cpu_time)


@record
class Compiled(Message):
    """The module compiled: the compile deadline no longer applies.

    Answered with an errno-only reply; the child runs no guest code before
    that, so an artifact it wrote is taken before the guest could touch it.
    """

    OP = BrokerOp.COMPILED
    FIXED = struct.Struct("<Q")
    RANGES = (("artifact_size", 0, MAX_ARTIFACT),)
    artifact_size: int  # bytes of serialized module written to the artifact fd (0: none)


@record
class Result(Message):
    """The child's last word: how the module ended (no reply)."""

    OP = BrokerOp.RESULT
    FIXED = struct.Struct("<BiQQ")
    BLOBS = ("message",)
    RANGES = (("outcome", min(ChildOutcome), max(ChildOutcome)),)  # its values are contiguous
    outcome: int  # a ChildOutcome
    code: int
    bytes_read: int  # through fd_read/fd_pread, all descriptors
    bytes_written: int  # through fd_write/fd_pwrite, all descriptors
    message: bytes


@record
class SandboxReport(Message):
    """Sent by the child once, after lockdown and before any untrusted byte is read:
    the layers it could not apply, one "name: reason" line each (empty: all applied). No reply."""

    OP = BrokerOp.SANDBOX_REPORT
    FIXED = struct.Struct("<x")
    BLOBS = ("missing",)
    RANGES = (("missing", 0, MAX_SANDBOX_REPORT),)
    missing: bytes


REQUESTS = Channel("broker", (
    PathOpen, PathFilestatGet, PathFilestatSetTimes, PathCreateDirectory,
    PathRemoveDirectory, PathUnlinkFile, PathRename, PathLink, PathSymlink,
    PathReadlink, FdReaddir, DirFilestatGet, DirFilestatSetTimes, DirClose,
    DirSync, FdFilestatSetTimes, Result, Compiled, SandboxReport,
))
# Decode and validate one child -> parent message, or raise ProtocolError.
decode_request = REQUESTS.decode


# --- replies (parent -> child) ---------------------------------------------------------

REPLY_HEAD = struct.Struct("<" + Reply.HEAD)  # the op answered, a WASI errno (0: the body follows)
_ERRNOS = frozenset(int(e) for e in Errno if e)


class FileKind(IntEnum):
    DONATED = 0  # a host fd travels with the reply; the child owns it now
    DIRECTORY = 1  # the parent keeps the directory; the child gets a handle


@record
class OpenReply(Reply):
    """Answers PathOpen."""

    FIXED = struct.Struct("<BIB")
    kind: int
    handle: int
    filetype: int


@record
class StatReply(Reply):
    """Answers PathFilestatGet and DirFilestatGet: a filestat, each field within WASI's u64."""

    FIXED = struct.Struct("<QQBQQQQQ")
    dev: int
    ino: int
    filetype: int
    nlink: int
    size: int
    atim: int
    mtim: int
    ctim: int


@record
class BytesReply(Reply):
    """Answers PathReadlink (the target) and FdReaddir (dirents, already in WASI layout)."""

    FIXED = struct.Struct("<")
    BLOBS = ("data",)
    data: bytes


def encode_reply(op: int, errno: int, body: Reply | None = None) -> bytes:
    """The reply to a request of `op`: `body` when errno is 0, the head alone otherwise."""
    if errno or body is None:
        return REPLY_HEAD.pack(op, errno)
    return body.encode_reply(op)


def reply_errno(data: bytes) -> int:
    """The errno of a reply (0: success), after checking its head."""
    if len(data) < REPLY_HEAD.size:
        raise ProtocolError("reply shorter than its head")
    _, errno = REPLY_HEAD.unpack_from(data, 0)
    if errno and (errno not in _ERRNOS or len(data) != REPLY_HEAD.size):
        raise ProtocolError(f"error reply with errno {errno} of {len(data)} bytes")
    return errno


def decode_reply(request: Message, body: type[Reply] | None, data: bytes) -> Reply | None:
    """The body of the reply to `request` (None when it has none); WasiErrno for an error reply.

    The child trusts its broker, yet a reply to another op is a ProtocolError,
    never taken for this one's.
    """
    if len(data) < REPLY_HEAD.size:
        raise ProtocolError("reply shorter than its head")
    op, errno = REPLY_HEAD.unpack_from(data, 0)
    if op != request.OP:
        raise ProtocolError(f"a reply to op {op} for a {type(request).__name__}")
    if errno:
        raise WasiErrno(reply_errno(data))
    if body is None:
        if len(data) != REPLY_HEAD.size:
            raise ProtocolError(f"{type(request).__name__}: a reply with a body")
        return None
    return body.decode_body(data, REPLY_HEAD.size)
