"""The wire format between a child and its broker, defined once for both sides.

Transport: one AF_UNIX SOCK_SEQPACKET socket per child, so every message keeps
its boundaries. A message is

    u16 op | fixed fields (struct, little-endian) | per blob: u32 length, bytes

Requests travel child -> parent; each has a reply class with the same op. The
parent decodes every request with `decode_request`, which checks the op, the
exact length, every blob length and every field (flags against their allowed
masks, paths for NUL bytes, UTF-8 and PATH_MAX) before a handler sees it.
Anything malformed is a `ProtocolError`: the broker ends that child.

The start of a run (`Start`) travels the other way, with the setup blob and the
module passed as file descriptors (SCM_RIGHTS), so nothing untrusted is read
before the child is locked down and no size limit applies to argv or env.
"""

from __future__ import annotations

import array
import operator
import os
import socket
import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Callable, ClassVar

from .wasi import ALL_FSTFLAGS, PATH_MAX, Fdflags, Lookupflags, Oflags

# Large enough for two maximal paths or one readdir chunk; bigger is a violation.
MAX_MESSAGE = 64 * 1024
# The most a single readdir reply carries; the child asks again for more.
READDIR_CHUNK = 32 * 1024
# The most descriptors one message carries (`Spawn`: broker, stdio, violation pipe, two cgroups).
MAX_FDS = 7
# The largest compiled artifact the supervisor will take into its cache.
MAX_ARTIFACT = 1 << 31

_HEADER = struct.Struct("<H")
_BLOB_LEN = struct.Struct("<I")
_CMSG_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


class ProtocolError(Exception):
    """A message that does not follow this protocol: the peer is broken or hostile."""


class Op(IntEnum):
    START = 1
    RESULT = 2
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
    COMPILED = 30
    SANDBOX_REPORT = 31


def _check_path(name: str, value: bytes) -> None:
    if not value:
        return  # an empty path is the guest's mistake: the broker answers ENOENT
    if len(value) > PATH_MAX:
        raise ProtocolError(f"{name}: longer than {PATH_MAX} bytes")
    if b"\0" in value:
        raise ProtocolError(f"{name}: contains a NUL byte")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{name}: not UTF-8") from exc


def _check_flags(name: str, value: int, allowed: int) -> None:
    if value & ~allowed:
        raise ProtocolError(f"{name}: unknown bits {value & ~allowed:#x}")


class Message:
    """Base of every message: a frozen dataclass plus its wire layout.

    Subclasses declare `OP`, `FIXED` (the struct of the leading int fields, in
    declaration order) and `BLOBS` (names of trailing bytes fields).
    """

    OP: ClassVar[Op]
    FIXED: ClassVar[struct.Struct]
    BLOBS: ClassVar[tuple[str, ...]] = ()
    PATHS: ClassVar[tuple[str, ...]] = ()  # blobs that are guest paths
    FDS: ClassVar[int] = 0  # descriptors that travel with it (SCM_RIGHTS); any other count is a violation

    def encode(self) -> bytes:
        layout = _LAYOUTS.get(type(self)) or _layout(type(self))
        head = layout.head.pack(self.OP, *layout.ints(self))
        if not self.BLOBS:
            return head
        parts = [head]
        for name in self.BLOBS:
            blob = getattr(self, name)
            parts.append(_BLOB_LEN.pack(len(blob)))
            parts.append(blob)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, data: bytes | memoryview, offset: int):
        try:
            ints = cls.FIXED.unpack_from(data, offset)
        except struct.error as exc:
            raise ProtocolError(f"{cls.__name__}: truncated fixed part") from exc
        offset += cls.FIXED.size
        if cls.BLOBS:
            blobs = []
            end = len(data)
            for name in cls.BLOBS:
                if offset + _BLOB_LEN.size > end:
                    raise ProtocolError(f"{cls.__name__}.{name}: truncated length")
                (length,) = _BLOB_LEN.unpack_from(data, offset)
                offset += _BLOB_LEN.size
                if offset + length > end:
                    raise ProtocolError(f"{cls.__name__}.{name}: length {length} past the end")
                blobs.append(bytes(data[offset:offset + length]))
                offset += length
            ints = (*ints, *blobs)
        if offset != len(data):
            raise ProtocolError(f"{cls.__name__}: {len(data) - offset} trailing bytes")
        message = cls(*ints)  # fields are declared ints first, then blobs (checked by _layout)
        message.validate()
        return message

    def validate(self) -> None:
        for name in self.PATHS:
            _check_path(f"{type(self).__name__}.{name}", getattr(self, name))


@dataclass(frozen=True)
class _Layout:
    head: struct.Struct  # the op and the fixed fields, packed in one call
    ints: Callable[[Message], tuple]  # the fixed fields' values, in order


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type[Message]) -> _Layout:
    """Made once per message class: precompiled structs, no per-field work per message."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    int_names = [n for n in names if n not in cls.BLOBS]
    if names != int_names + list(cls.BLOBS):
        raise TypeError(f"{cls.__name__}: blob fields must come last, in BLOBS order")
    getter = operator.attrgetter(*int_names) if int_names else (lambda m: ())
    ints = getter if len(int_names) != 1 else (lambda m: (getter(m),))
    layout = _Layout(struct.Struct("<H" + cls.FIXED.format.lstrip("<")), ints)
    _LAYOUTS[cls] = layout
    return layout


# --- requests (child -> parent) -------------------------------------------

_LOOKUP = int(Lookupflags.SYMLINK_FOLLOW)
_OFLAGS = int(Oflags.CREAT | Oflags.DIRECTORY | Oflags.EXCL | Oflags.TRUNC)
_FDFLAGS = int(Fdflags.APPEND | Fdflags.DSYNC | Fdflags.NONBLOCK | Fdflags.RSYNC | Fdflags.SYNC)


@dataclass(frozen=True, slots=True)
class _DirPathRequest(Message):
    """A request that names only a path under a directory handle."""

    FIXED = struct.Struct("<I")
    BLOBS = ("path",)
    PATHS = ("path",)
    dir: int
    path: bytes


@dataclass(frozen=True, slots=True)
class _DirRequest(Message):
    """A request about a directory handle itself."""

    FIXED = struct.Struct("<I")
    dir: int


@dataclass(frozen=True, slots=True)
class PathOpen(Message):
    OP = Op.PATH_OPEN
    FIXED = struct.Struct("<IIHHQQ")
    BLOBS = ("path",)
    PATHS = ("path",)
    dir: int
    lookupflags: int
    oflags: int
    fdflags: int
    rights_base: int
    rights_inheriting: int
    path: bytes

    def validate(self) -> None:
        Message.validate(self)
        _check_flags("PathOpen.lookupflags", self.lookupflags, _LOOKUP)
        _check_flags("PathOpen.oflags", self.oflags, _OFLAGS)
        _check_flags("PathOpen.fdflags", self.fdflags, _FDFLAGS)


@dataclass(frozen=True, slots=True)
class PathFilestatGet(Message):
    OP = Op.PATH_FILESTAT_GET
    FIXED = struct.Struct("<II")
    BLOBS = ("path",)
    PATHS = ("path",)
    dir: int
    lookupflags: int
    path: bytes

    def validate(self) -> None:
        Message.validate(self)
        _check_flags("PathFilestatGet.lookupflags", self.lookupflags, _LOOKUP)


@dataclass(frozen=True, slots=True)
class PathFilestatSetTimes(Message):
    OP = Op.PATH_FILESTAT_SET_TIMES
    FIXED = struct.Struct("<IIQQH")
    BLOBS = ("path",)
    PATHS = ("path",)
    dir: int
    lookupflags: int
    atim: int
    mtim: int
    fstflags: int
    path: bytes

    def validate(self) -> None:
        Message.validate(self)
        _check_flags("PathFilestatSetTimes.lookupflags", self.lookupflags, _LOOKUP)
        _check_flags("PathFilestatSetTimes.fstflags", self.fstflags, ALL_FSTFLAGS)


@dataclass(frozen=True, slots=True)
class PathCreateDirectory(_DirPathRequest):
    OP = Op.PATH_CREATE_DIRECTORY


@dataclass(frozen=True, slots=True)
class PathRemoveDirectory(_DirPathRequest):
    OP = Op.PATH_REMOVE_DIRECTORY


@dataclass(frozen=True, slots=True)
class PathUnlinkFile(_DirPathRequest):
    OP = Op.PATH_UNLINK_FILE


@dataclass(frozen=True, slots=True)
class PathRename(Message):
    OP = Op.PATH_RENAME
    FIXED = struct.Struct("<II")
    BLOBS = ("old_path", "new_path")
    PATHS = ("old_path", "new_path")
    old_dir: int
    new_dir: int
    old_path: bytes
    new_path: bytes


@dataclass(frozen=True, slots=True)
class PathLink(Message):
    OP = Op.PATH_LINK
    FIXED = struct.Struct("<III")
    BLOBS = ("old_path", "new_path")
    PATHS = ("old_path", "new_path")
    old_dir: int
    lookupflags: int
    new_dir: int
    old_path: bytes
    new_path: bytes

    def validate(self) -> None:
        Message.validate(self)
        _check_flags("PathLink.lookupflags", self.lookupflags, _LOOKUP)


@dataclass(frozen=True, slots=True)
class PathSymlink(Message):
    OP = Op.PATH_SYMLINK
    FIXED = struct.Struct("<I")
    BLOBS = ("target", "path")
    PATHS = ("target", "path")
    dir: int
    target: bytes
    path: bytes


@dataclass(frozen=True, slots=True)
class PathReadlink(_DirPathRequest):
    OP = Op.PATH_READLINK


@dataclass(frozen=True, slots=True)
class FdReaddir(Message):
    OP = Op.FD_READDIR
    FIXED = struct.Struct("<IQI")
    dir: int
    cookie: int
    max_bytes: int

    def validate(self) -> None:
        if not 0 < self.max_bytes <= READDIR_CHUNK:
            raise ProtocolError(f"FdReaddir.max_bytes: {self.max_bytes} not in 1..{READDIR_CHUNK}")


@dataclass(frozen=True, slots=True)
class DirFilestatGet(_DirRequest):
    OP = Op.DIR_FILESTAT_GET


@dataclass(frozen=True, slots=True)
class DirFilestatSetTimes(Message):
    OP = Op.DIR_FILESTAT_SET_TIMES
    FIXED = struct.Struct("<IQQH")
    dir: int
    atim: int
    mtim: int
    fstflags: int

    def validate(self) -> None:
        _check_flags("DirFilestatSetTimes.fstflags", self.fstflags, ALL_FSTFLAGS)


@dataclass(frozen=True, slots=True)
class FdFilestatSetTimes(Message):
    """Re-time a donated file; the file itself travels with the request.

    The child may not call futimens itself (its filter refuses utimensat):
    the broker decides from what the descriptor is, so a read-only grant stays
    un-retimable even for native code in the child.
    """

    OP = Op.FD_FILESTAT_SET_TIMES
    FIXED = struct.Struct("<QQH")
    FDS = 1
    atim: int
    mtim: int
    fstflags: int

    def validate(self) -> None:
        _check_flags("FdFilestatSetTimes.fstflags", self.fstflags, ALL_FSTFLAGS)


@dataclass(frozen=True, slots=True)
class DirClose(_DirRequest):
    OP = Op.DIR_CLOSE


@dataclass(frozen=True, slots=True)
class DirSync(_DirRequest):
    OP = Op.DIR_SYNC


class Outcome(IntEnum):
    EXIT = 0  # proc_exit or a return from _start; code is the status
    TRAP = 1  # message is the trap text with its wasm backtrace
    ERROR = 2  # the module could not be loaded, linked or started; message says why
    INVOKED = 3  # --invoke finished; results were printed to stdout
    LIMIT = 4  # a limit the child enforces was hit; message names it (fuel, cpu_time)


@dataclass(frozen=True, slots=True)
class Compiled(Message):
    """The module compiled: the compile deadline no longer applies.

    Answered with an errno-only Reply; the child runs no guest code before
    that, so an artifact it wrote is taken before the guest could touch it.
    """

    OP = Op.COMPILED
    FIXED = struct.Struct("<Q")
    artifact_size: int  # bytes of serialized module written to the artifact fd (0: none)

    def validate(self) -> None:
        if self.artifact_size > MAX_ARTIFACT:
            raise ProtocolError(f"Compiled.artifact_size: {self.artifact_size} exceeds {MAX_ARTIFACT}")


@dataclass(frozen=True, slots=True)
class Result(Message):
    """The child's last word: how the module ended."""

    OP = Op.RESULT
    FIXED = struct.Struct("<BiQQ")
    BLOBS = ("message",)
    outcome: int
    code: int
    bytes_read: int  # through fd_read/fd_pread, all descriptors
    bytes_written: int  # through fd_write/fd_pwrite, all descriptors
    message: bytes

    def validate(self) -> None:
        if self.outcome not in Outcome._value2member_map_:
            raise ProtocolError(f"Result.outcome: unknown value {self.outcome}")


@dataclass(frozen=True, slots=True)
class SandboxReport(Message):
    """Sent by the child once, after lockdown and before any untrusted byte is read:
    the layers it could not apply, one "name: reason" line each (empty: all applied)."""

    OP = Op.SANDBOX_REPORT
    FIXED = struct.Struct("<x")
    BLOBS = ("missing",)
    missing: bytes

    def validate(self) -> None:
        if len(self.missing) > 4096:
            raise ProtocolError("SandboxReport.missing: longer than 4096 bytes")


REQUESTS: dict[int, type[Message]] = {
    cls.OP: cls
    for cls in (
        PathOpen, PathFilestatGet, PathFilestatSetTimes, PathCreateDirectory,
        PathRemoveDirectory, PathUnlinkFile, PathRename, PathLink, PathSymlink,
        PathReadlink, FdReaddir, DirFilestatGet, DirFilestatSetTimes, DirClose,
        DirSync, FdFilestatSetTimes, Result, Compiled, SandboxReport,
    )
}


def decode_request(data: bytes | memoryview) -> Message:
    """Decode and validate one child -> parent message, or raise ProtocolError."""
    if len(data) < _HEADER.size:
        raise ProtocolError("message shorter than its header")
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    (op,) = _HEADER.unpack_from(data, 0)
    cls = REQUESTS.get(op)
    if cls is None:
        raise ProtocolError(f"unknown op {op}")
    return cls.decode_body(data, _HEADER.size)


# --- replies (parent -> child) --------------------------------------------
# Every reply starts with a u16 WASI errno; the rest is meaningful only when
# it is 0. Replies share their request's op.


class FileKind(IntEnum):
    DONATED = 0  # a host fd travels with the reply; the child owns it now
    DIRECTORY = 1  # the parent keeps the directory; the child gets a handle


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """A reply that carries nothing but an errno."""

    OP = Op.DIR_CLOSE  # shared by all errno-only replies; the op is not checked
    FIXED = struct.Struct("<H")
    errno: int


@dataclass(frozen=True, slots=True)
class OpenReply(Message):
    OP = Op.PATH_OPEN
    FIXED = struct.Struct("<HBIB")
    errno: int
    kind: int
    handle: int
    filetype: int


@dataclass(frozen=True, slots=True)
class StatReply(Message):
    OP = Op.PATH_FILESTAT_GET
    FIXED = struct.Struct("<HQQBQQQQQ")
    errno: int
    dev: int
    ino: int
    filetype: int
    nlink: int
    size: int
    atim: int
    mtim: int
    ctim: int


@dataclass(frozen=True, slots=True)
class BytesReply(Message):
    """readlink's target or a chunk of readdir's dirents, already in WASI layout."""

    OP = Op.PATH_READLINK
    FIXED = struct.Struct("<H")
    BLOBS = ("data",)
    errno: int
    data: bytes


def decode_reply(cls: type[Message], data: bytes) -> Message:
    """Decode a reply of the expected class (the child trusts its broker)."""
    if len(data) < _HEADER.size:
        raise ProtocolError("reply shorter than its header")
    return cls.decode_body(data, _HEADER.size)


# --- the start of a run (parent -> child, once) ----------------------------


class ArtifactMode(IntEnum):
    NONE = 0  # compile, keep nothing
    LOAD = 1  # a third fd holds a verified artifact: deserialize it instead of compiling
    PRODUCE = 2  # a third fd is a sink: write the serialized module there after compiling


@dataclass(frozen=True, slots=True)
class Start(Message):
    """Sent with the encoded `Setup` and the module file as fds, plus an artifact fd per `artifact`."""

    OP = Op.START
    FIXED = struct.Struct("<B")
    artifact: int


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def int(self, value: int) -> None:
        self.parts.append(struct.pack("<q", value))

    def blob(self, value: bytes) -> None:
        self.parts.append(_BLOB_LEN.pack(len(value)))
        self.parts.append(value)

    def blobs(self, values: list[bytes] | tuple[bytes, ...]) -> None:
        self.int(len(values))
        for value in values:
            self.blob(value)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def int(self) -> int:
        (value,) = struct.unpack_from("<q", self.data, self.offset)
        self.offset += 8
        return value

    def blob(self) -> bytes:
        (length,) = _BLOB_LEN.unpack_from(self.data, self.offset)
        self.offset += 4
        value = self.data[self.offset:self.offset + length]
        if len(value) != length:
            raise ProtocolError("setup blob truncated")
        self.offset += length
        return value

    def blobs(self) -> list[bytes]:
        return [self.blob() for _ in range(self.int())]


@dataclass(frozen=True)
class Setup:
    """Everything a child needs to run its module, besides the module itself."""

    module_name: bytes  # argv[0] and the name in messages
    is_wat: bool
    args: tuple[bytes, ...]
    env: tuple[bytes, ...]  # NAME=VALUE
    preopen_names: tuple[bytes, ...]  # preopen i has broker handle i
    preopen_readonly: tuple[bool, ...]
    invoke: bytes = b""  # export to call instead of _start
    invoke_args: tuple[bytes, ...] = ()
    memory_limit: int = -1  # bytes, -1 = none
    table_limit: int = -1
    fuel: int = -1  # -1 = unlimited; 0 = none at all (the first instruction traps, as in wasmtime)
    open_files: int = -1
    file_size: int = -1
    cpu_time_ms: int = 0  # 0 = unlimited
    disk: int = -1  # bytes written to files, -1 = none
    engine: tuple[bytes, ...] = ()  # engine.EngineOptions.encode()

    def encode(self) -> bytes:
        w = _Writer()
        w.blob(self.module_name)
        w.int(int(self.is_wat))
        w.blobs(self.args)
        w.blobs(self.env)
        w.blobs(self.preopen_names)
        w.blob(bytes(int(r) for r in self.preopen_readonly))
        w.blob(self.invoke)
        w.blobs(self.invoke_args)
        for value in (self.memory_limit, self.table_limit, self.fuel, self.open_files, self.file_size,
                      self.cpu_time_ms, self.disk):
            w.int(value)
        w.blobs(self.engine)
        return b"".join(w.parts)

    @classmethod
    def decode(cls, data: bytes) -> "Setup":
        r = _Reader(data)
        try:
            return cls(
                module_name=r.blob(),
                is_wat=bool(r.int()),
                args=tuple(r.blobs()),
                env=tuple(r.blobs()),
                preopen_names=tuple(r.blobs()),
                preopen_readonly=tuple(bool(b) for b in r.blob()),
                invoke=r.blob(),
                invoke_args=tuple(r.blobs()),
                memory_limit=r.int(),
                table_limit=r.int(),
                fuel=r.int(),
                open_files=r.int(),
                file_size=r.int(),
                cpu_time_ms=r.int(),
                disk=r.int(),
                engine=tuple(r.blobs()),
            )
        except struct.error as exc:
            raise ProtocolError("setup truncated") from exc


# --- blocking transport (the child's side) --------------------------------


def send(sock: socket.socket, message: Message, fds: tuple[int, ...] = ()) -> None:
    data = message.encode()
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it; b"" when the peer is gone."""
    data, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE, _CMSG_SPACE)
    fds = unpack_fds(ancdata)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            _close(fd)
        raise ProtocolError("message or its descriptors were truncated")
    return data, fds


def unpack_fds(ancdata) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    return fds


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


RECV_CMSG_SPACE = _CMSG_SPACE


# --- the fork server's control channel (supervisor <-> fork server) ----------
# Both ends are trusted; the messages are still decoded strictly.


@dataclass(frozen=True, slots=True)
class Spawn(Message):
    """Fork a child. Sent with five fds: broker socket, stdin, stdout, stderr, violation pipe,
    then the `cgroup.procs` of each cgroup the child joins (none, one or two)."""

    OP = Op.START  # the control channel has its own numbering space
    FIXED = struct.Struct("<Qqqdqq")
    BLOBS = ("require",)
    run_id: int
    file_size: int  # RLIMIT_FSIZE, -1: leave
    open_files: int  # RLIMIT_NOFILE, -1: leave
    cpu_time: float  # RLIMIT_CPU seconds, 0: leave
    threads: int  # RLIMIT_NPROC in the child's user namespace, -1: leave
    host_uid: int  # the host uid (and gid) the child runs as before lockdown, -1: the server's
    require: bytes  # comma-separated sandbox layers that must be applied


@dataclass(frozen=True, slots=True)
class Spawned(Message):
    """The child exists. Sent with its pidfd (or no fd when the fork failed)."""

    OP = Op.RESULT
    FIXED = struct.Struct("<Qi")
    BLOBS = ("error",)
    run_id: int
    pid: int
    error: bytes


@dataclass(frozen=True, slots=True)
class Exited(Message):
    """A child ended; status is the raw wait status."""

    OP = Op.PATH_OPEN
    FIXED = struct.Struct("<iiQQQ")
    pid: int
    status: int
    user_us: int  # CPU time in user mode, microseconds (wait4's rusage)
    system_us: int
    max_rss_kib: int


CONTROL_TO_SERVER: dict[int, type[Message]] = {Spawn.OP: Spawn}
CONTROL_FROM_SERVER: dict[int, type[Message]] = {Spawned.OP: Spawned, Exited.OP: Exited}


def decode_control(data: bytes, table: dict[int, type[Message]]) -> Message:
    if len(data) < _HEADER.size:
        raise ProtocolError("control message shorter than its header")
    (op,) = _HEADER.unpack_from(data, 0)
    cls = table.get(op)
    if cls is None:
        raise ProtocolError(f"unknown control op {op}")
    return cls.decode_body(data, _HEADER.size)
